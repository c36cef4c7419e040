"""GPU utilisation from Prometheus, the way clusters expose it: DCGM exporter's gauge.

``gpu_utilisation_source = "prometheus:http://prometheus.monitoring:9090"`` makes the
admin service ask that server, once per pass, for ``DCGM_FI_DEV_GPU_UTIL`` (an instant
query on ``/api/v1/query``). DCGM exporter publishes one series per GPU, labelled with
the GPU's ``UUID`` (and its index ``gpu``) and, on Kubernetes, the ``pod``, ``namespace``
and ``container`` it is allocated to. A Prometheus that scrapes the exporter without
``honor_labels`` keeps the exporter's own pod in ``pod`` and renames the workload's to
``exported_pod`` / ``exported_namespace``; both are read.

A server's GPU is matched (:func:`match_readings`):

- by UUID: a GPU the ledger names ``GPU-…`` (the Docker backend; a Kubernetes pod whose
  device the device plugin named). A time-sliced replica ``GPU-…::N`` is its GPU.
- by pod and namespace: a Kubernetes GPU the ledger names after its pod,
  ``<pod>/<resource>#<i>`` (:func:`gpuspawner.kube.holdings.pod_gpus`): the i-th of the
  pod's GPUs in the exporter's order. Without a namespace, a pod name found in more than
  one namespace matches nothing.

A GPU without a series, and every GPU while Prometheus cannot be read, is unknown: it
counts as busy, so nothing is culled on a missing reading.

The same series say which device each pod really got (:func:`assign_devices`): the admin
service records a Kubernetes interval's GPU UUID and type (the series' ``modelName`` as GPU
feature discovery names the product, :func:`gpuspawner.kube.holdings.gpu_type`) in the
ledger once it is known, so GPU-type weights apply and utilisation is matched by UUID. Only
what the series say without doubt is assigned: a pod whose series name exactly as many GPUs
as it holds, each with a UUID. A MIG slice is never assigned (its series carry the parent
GPU's UUID and say which instance only by ``GPU_I_ID``), nor a pod two namespaces have when
no namespace is given.
"""

import http.client
import json
import math
import re
import urllib.error
import urllib.request
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from urllib.parse import urlencode, urlsplit

from ..kube.holdings import gpu_type
from ..kube.nodes import MIG_RESOURCE_PREFIX
from .utilisation import UtilisationSource

METRIC = "DCGM_FI_DEV_GPU_UTIL"
TIMEOUT_SECONDS = 10.0
POD_GPU = re.compile(r"^(?P<pod>[^/]+)/(?P<resource>.+)#(?P<index>\d+)$")


@dataclass(frozen=True)
class Series:
    """One GPU's latest utilisation as Prometheus holds it."""

    uuid: str
    gpu: str  # the GPU's index on its node
    pod: str
    namespace: str
    value: float | None
    model: str = ""  # modelName, as NVML names the GPU ("NVIDIA A100-SXM4-80GB")
    mig_instance: str = ""  # GPU_I_ID: the series is of a MIG instance of the GPU

    @classmethod
    def from_result(cls, result: Mapping) -> "Series":
        labels = result.get("metric") or {}
        try:
            value = float(result["value"][1])
        except (KeyError, IndexError, TypeError, ValueError):
            value = None
        if value is not None and not math.isfinite(value):
            value = None
        return cls(
            uuid=labels.get("UUID") or labels.get("uuid") or "",
            gpu=labels.get("gpu", ""),
            pod=labels.get("exported_pod") or labels.get("pod") or "",
            namespace=labels.get("exported_namespace") or labels.get("namespace") or "",
            value=value,
            model=labels.get("modelName", ""),
            mig_instance=labels.get("GPU_I_ID", ""),
        )


def check_prometheus_url(url: str) -> None:
    """Raise ValueError with a sentence unless ``url`` is an http(s) URL of a server."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(
            "gpu_utilisation_source 'prometheus:<url>' needs the Prometheus server's http(s)"
            " URL, e.g. 'prometheus:http://prometheus.monitoring:9090', not %r" % url
        )


def _busiest(values: Iterable[float | None]) -> float | None:
    return max((v for v in values if v is not None), default=None)


def _device_order(device: tuple[str, str]) -> tuple:
    """(UUID, index) in the exporter's order: by the GPU's index on its node."""
    uuid, gpu = device
    return (int(gpu) if gpu.isdigit() else math.inf, gpu, uuid)


def match_readings(
    keys: Iterable[str], series: Iterable[Series], namespace: str = ""
) -> dict[str, float | None]:
    """Each ledger GPU key's utilisation from the series (pure); None where none matches.

    Several series of one GPU (scraped twice, a GPU shared by time-slicing) read as the
    busiest of them.
    """
    of_uuid: dict[str, list[float | None]] = {}
    of_pod: dict[tuple[str, str], dict[tuple[str, str], list[Series]]] = {}
    for s in series:
        if s.uuid:
            of_uuid.setdefault(s.uuid, []).append(s.value)
        if s.pod:
            gpus = of_pod.setdefault((s.namespace, s.pod), {})
            gpus.setdefault((s.uuid, s.gpu), []).append(s)
    by_uuid = {uuid: _busiest(values) for uuid, values in of_uuid.items()}
    by_pod = {
        place: [_busiest(s.value for s in gpus[d]) for d in sorted(gpus, key=_device_order)]
        for place, gpus in of_pod.items()
    }
    result: dict[str, float | None] = {}
    for key in keys:
        pod_gpu = POD_GPU.match(key)
        if pod_gpu is None:
            result[key] = by_uuid.get(key.split("::", 1)[0])
            continue
        pod, index = pod_gpu.group("pod"), int(pod_gpu.group("index"))
        if namespace:
            places = [(namespace, pod)] if (namespace, pod) in by_pod else []
        else:
            places = [place for place in by_pod if place[1] == pod]
        if len(places) != 1:
            result[key] = None  # not exported, or ambiguous across namespaces
            continue
        values = by_pod[places[0]]
        result[key] = values[index] if index < len(values) else None
    return result


@dataclass(frozen=True)
class Device:
    """The device a pod's GPU really is: its UUID and its type (None where not exported)."""

    uuid: str
    gpu_type: str | None


def product_of(model: str) -> str:
    """NVML's model name as GPU feature discovery labels the node's product (spaces become
    hyphens: "NVIDIA A100-SXM4-80GB" -> "NVIDIA-A100-SXM4-80GB")."""
    return "-".join(model.split())


def _places(pod: str, namespace: str, by_pod: Mapping) -> list[tuple[str, str]]:
    if namespace:
        return [(namespace, pod)] if (namespace, pod) in by_pod else []
    return [place for place in by_pod if place[1] == pod]


def assign_devices(
    keys: Iterable[str], series: Iterable[Series], namespace: str = ""
) -> dict[str, Device]:
    """The device of each ledger GPU named after its pod (``<pod>/<resource>#<i>``) whose
    series say it without doubt (pure); keys they do not say are left out.

    A pod's GPUs are assigned only when its series name as many distinct GPUs as the keys
    name for that pod, each with a UUID and none a MIG instance, and the pod is found in one
    namespace; the i-th GPU is the i-th in the exporter's order (its index on the node).
    """
    by_pod: dict[tuple[str, str], dict[tuple[str, str], Series]] = {}
    for s in series:
        if s.pod:
            by_pod.setdefault((s.namespace, s.pod), {}).setdefault((s.uuid, s.gpu), s)
    wanted: dict[str, list[tuple[str, str, int]]] = {}
    for key in keys:
        pod_gpu = POD_GPU.match(key)
        if pod_gpu is not None:
            wanted.setdefault(pod_gpu.group("pod"), []).append(
                (key, pod_gpu.group("resource"), int(pod_gpu.group("index")))
            )
    result: dict[str, Device] = {}
    for pod, gpus in wanted.items():
        places = _places(pod, namespace, by_pod)
        if len(places) != 1:
            continue  # not exported, or ambiguous across namespaces
        exported = by_pod[places[0]]
        devices = [exported[d] for d in sorted(exported, key=_device_order)]
        if (
            len(devices) != len(gpus)
            or len({d.uuid for d in devices}) != len(devices)
            or any(not d.uuid or d.mig_instance for d in devices)
        ):
            continue  # a GPU not (yet) exported, or one more than the pod holds, or MIG
        for key, resource, index in gpus:
            if resource.startswith(MIG_RESOURCE_PREFIX) or index >= len(devices):
                continue
            device = devices[index]
            kind = gpu_type(product_of(device.model), resource) if device.model else None
            result[key] = Device(device.uuid, kind)
    return result


class PrometheusUtilisation(UtilisationSource):
    """GPU utilisation from the Prometheus server at ``url`` (see the module's docstring)."""

    def __init__(
        self,
        url: str,
        namespace: str = "",
        metric: str = METRIC,
        timeout: float = TIMEOUT_SECONDS,
    ):
        super().__init__()
        check_prometheus_url(url)
        self.url = url.rstrip("/")
        self.namespace = namespace
        self.metric = metric
        self.timeout = timeout
        self.last_series: list[Series] | None = None  # the latest sample's; None: unreadable

    @property
    def what(self) -> str:
        return "Prometheus at %s (%s)" % (self.url, self.metric)

    def query(self) -> list[Series]:
        """The metric's series now; raises OSError or ValueError when Prometheus cannot say."""
        address = "%s/api/v1/query?%s" % (self.url, urlencode({"query": self.metric}))
        try:
            with urllib.request.urlopen(address, timeout=self.timeout) as response:
                body = json.loads(response.read())
        except urllib.error.HTTPError as e:
            raise OSError("HTTP %d: %s" % (e.code, e.read(300).decode(errors="replace"))) from e
        if not isinstance(body, dict) or body.get("status") != "success":
            raise ValueError("answer %.200r" % (body,))
        data = body.get("data") or {}
        if data.get("resultType") != "vector":
            raise ValueError("a %r, not an instant vector" % data.get("resultType"))
        return [Series.from_result(result) for result in data.get("result") or ()]

    def sample(self, uuids: Iterable[str]) -> dict[str, float | None]:
        uuids = list(uuids)
        try:
            series = self.query()
        except (OSError, ValueError, http.client.HTTPException) as e:
            self.last_series = None
            self.unreadable(self.what, str(e))
            return {uuid: None for uuid in uuids}
        self.last_series = series
        self.readable(self.what)
        values = match_readings(uuids, series, self.namespace)
        return self.readings(uuids, values, "no %s series matches it" % self.metric)

    def devices(self, keys: Iterable[str]) -> dict[str, Device]:
        """The devices of ``keys`` as the latest sample's series say (:func:`assign_devices`);
        none before a sample or while Prometheus cannot be read."""
        if self.last_series is None:
            return {}
        return assign_devices(keys, self.last_series, self.namespace)
