"""GPU-idle culling: which GPU servers had idle GPUs too long, and where utilisation comes from.

:class:`IdleTracker` is the policy, pure: fed samples of each server's GPUs, it says
which servers have been idle (every GPU below the threshold) for the timeout. A GPU
whose utilisation is unknown counts as busy, so a missing reading never culls a
training run. The admin service's loop feeds it and stops what it names.

Sources are pluggable (:func:`utilisation_source`): :class:`NvmlUtilisation` samples the
GPUs of the host it runs on (the Docker host); :class:`FileUtilisation` reads a JSON
object {"GPU-…": percent} that an exporter writes (and that tests control);
:class:`gpuspawner.usage.prometheus.PrometheusUtilisation` asks a Prometheus server for
DCGM exporter's ``DCGM_FI_DEV_GPU_UTIL``, as clusters expose it. Every source
(:class:`gpuspawner.usage.utilisation.UtilisationSource`) says once (a warning) that a
GPU's utilisation is unknown or that the source cannot be read, then only at debug level
until it is known again: the service samples every 30 s.
"""

import json
from collections.abc import Hashable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from .prometheus import PrometheusUtilisation, check_prometheus_url
from .utilisation import UtilisationSource

__all__ = [
    "FileUtilisation",
    "IdleTracker",
    "NvmlUtilisation",
    "PrometheusUtilisation",
    "UtilisationSource",
    "check_utilisation_source",
    "utilisation_source",
]

SOURCES = "'nvml', 'file:/path' or 'prometheus:<url>'"


@dataclass
class IdleTracker:
    """Since when each server's GPUs have been idle."""

    threshold: float  # percent
    timeout: timedelta
    idle_since: dict[Hashable, datetime] = field(default_factory=dict)

    def is_idle(self, readings: Mapping[str, float | None]) -> bool:
        """Idle: at least one GPU, and every one of them known and below the threshold."""
        return bool(readings) and all(
            value is not None and value < self.threshold for value in readings.values()
        )

    def observe(self, key: Hashable, readings: Mapping[str, float | None], now: datetime) -> None:
        if self.is_idle(readings):
            self.idle_since.setdefault(key, now)
        else:
            self.idle_since.pop(key, None)

    def keep_only(self, keys: Iterable[Hashable]) -> None:
        """Forget servers that no longer hold GPUs."""
        keys = set(keys)
        for key in list(self.idle_since):
            if key not in keys:
                del self.idle_since[key]

    def due(self, now: datetime) -> list[Hashable]:
        """Servers idle for at least the timeout."""
        return sorted(
            (k for k, since in self.idle_since.items() if now - since >= self.timeout), key=str
        )


class FileUtilisation(UtilisationSource):
    """Utilisation from a JSON file {"GPU-…": percent}; unknown GPUs, unreadable files: None."""

    def __init__(self, path: str):
        super().__init__()
        self.path = Path(path)

    def sample(self, uuids: Iterable[str]) -> dict[str, float | None]:
        uuids = list(uuids)
        what = "GPU utilisation file %s" % self.path
        try:
            values = json.loads(self.path.read_text())
        except (OSError, ValueError) as e:
            self.unreadable(what, str(e))
            return {uuid: None for uuid in uuids}
        self.readable(what)
        if not isinstance(values, dict):
            values = {}
        numbers = {
            uuid: float(value)
            for uuid, value in values.items()
            if isinstance(value, (int, float)) and not isinstance(value, bool)
        }
        return self.readings(uuids, numbers, "not a number in %s" % self.path)


class NvmlUtilisation(UtilisationSource):
    """Utilisation of this host's GPUs through NVML (not supported on MIG instances: None)."""

    def sample(self, uuids: Iterable[str]) -> dict[str, float | None]:
        from .. import nvml

        result = {}
        lost = set()
        for uuid in uuids:
            try:
                reading = nvml.read_gpu(uuid, with_processes=False)
            except nvml.NvmlUnavailable as e:
                self.unknown(uuid, str(e))
                result[uuid] = None
                continue
            if reading.lost:
                lost.add(uuid)
            value = None if reading.utilization_gpu is None else float(reading.utilization_gpu)
            if value is None:
                self.unknown(uuid, "lost" if reading.lost else "NVML reports none")
            else:
                self.known(uuid)
            result[uuid] = value
        self.lost = lost
        return result


def check_utilisation_source(spec: str) -> None:
    """Raise ValueError with a sentence for a ``gpu_utilisation_source`` no source reads."""
    if spec == "nvml":
        return
    if spec.startswith("file:") and spec.removeprefix("file:"):
        return
    if spec.startswith("prometheus:"):
        check_prometheus_url(spec.removeprefix("prometheus:"))
        return
    raise ValueError("gpu_utilisation_source must be %s, not %r" % (SOURCES, spec))


def utilisation_source(spec: str, namespace: str = "") -> UtilisationSource:
    """'nvml', 'file:/path' or 'prometheus:<url>' -> a source with .sample(uuids).

    ``namespace``: the Kubernetes namespace of the hub's pods, which a Prometheus source
    matches with a pod's name (empty: a pod name found in one namespace only).
    """
    check_utilisation_source(spec)
    if spec == "nvml":
        return NvmlUtilisation()
    if spec.startswith("file:"):
        return FileUtilisation(spec.removeprefix("file:"))
    return PrometheusUtilisation(spec.removeprefix("prometheus:"), namespace=namespace)
