"""GPU-idle culling: which GPU servers had idle GPUs too long, and where utilisation comes from.

:class:`IdleTracker` is the policy, pure: fed samples of each server's GPUs, it says
which servers have been idle (every GPU below the threshold) for the timeout. A GPU
whose utilisation is unknown counts as busy, so a missing reading never culls a
training run. The admin service's loop feeds it and stops what it names.

Sources are pluggable: :class:`NvmlUtilisation` samples the GPUs of the host it runs
on (the Docker host); :class:`FileUtilisation` reads a JSON object {"GPU-…": percent}
that an exporter writes (and that tests control).
"""

import json
import logging
from collections.abc import Hashable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

log = logging.getLogger(__name__)


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


class FileUtilisation:
    """Utilisation from a JSON file {"GPU-…": percent}; unknown GPUs, unreadable files: None."""

    def __init__(self, path: str):
        self.path = Path(path)
        self.lost: set[str] = set()  # a file cannot tell

    def sample(self, uuids: Iterable[str]) -> dict[str, float | None]:
        try:
            values = json.loads(self.path.read_text())
        except (OSError, ValueError) as e:
            log.warning(
                "GPU utilisation file %s unreadable (%s): no GPU counts as idle", self.path, e
            )
            values = {}
        result = {}
        for uuid in uuids:
            value = values.get(uuid) if isinstance(values, dict) else None
            result[uuid] = (
                float(value)
                if isinstance(value, (int, float)) and not isinstance(value, bool)
                else None
            )
        return result


class NvmlUtilisation:
    """Utilisation of this host's GPUs through NVML (not supported on MIG instances: None).

    ``lost`` holds the GPUs the last sample found lost (fallen off the bus).
    """

    def __init__(self):
        self.lost: set[str] = set()
        self._unreadable: set[str] = set()  # GPUs already warned about

    def sample(self, uuids: Iterable[str]) -> dict[str, float | None]:
        from .. import nvml

        result = {}
        lost = set()
        for uuid in uuids:
            try:
                reading = nvml.read_gpu(uuid, with_processes=False)
            except nvml.NvmlUnavailable as e:
                level = logging.DEBUG if uuid in self._unreadable else logging.WARNING
                log.log(level, "No GPU utilisation for %s (%s): it counts as busy", uuid, e)
                self._unreadable.add(uuid)
                result[uuid] = None
                continue
            self._unreadable.discard(uuid)
            if reading.lost:
                lost.add(uuid)
            result[uuid] = (
                None if reading.utilization_gpu is None else float(reading.utilization_gpu)
            )
        self.lost = lost
        return result


def utilisation_source(spec: str):
    """'nvml' or 'file:/path' -> a source with .sample(uuids)."""
    if spec == "nvml":
        return NvmlUtilisation()
    if spec.startswith("file:"):
        return FileUtilisation(spec.removeprefix("file:"))
    raise ValueError("gpu_utilisation_source must be 'nvml' or 'file:/path', not %r" % spec)
