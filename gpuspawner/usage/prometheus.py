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
            self.unreadable(self.what, str(e))
            return {uuid: None for uuid in uuids}
        self.readable(self.what)
        values = match_readings(uuids, series, self.namespace)
        return self.readings(uuids, values, "no %s series matches it" % self.metric)
