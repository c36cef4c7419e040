"""One shared GPU sampler per server: a thread that reads NVML and caches a snapshot.

The sampler starts on the first request, samples every ``interval`` seconds
in its own thread (NVML calls block, and the process query costs
milliseconds), and stops by itself after ``idle_timeout`` seconds without a
request. REST handlers serve the cached snapshot, already encoded as JSON.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import json
import os
import threading
import time
from collections.abc import Mapping
from typing import Any

from traitlets import Bool, Float, Int, default
from traitlets.config import LoggingConfigurable

from .. import nvml
from .processes import attribute, in_container
from .visible import (
    GpuEnvironment,
    allocated_gpus,
    idle_state,
    reason_for_none,
    reason_not_visible,
    reason_without_gpu,
    select_visible,
)

#: The name of a given GPU that NVML reported lost before it could be named.
UNKNOWN_NAME = "GPU (name unknown)"


def _gpu_json(gpu: nvml.NvmlGpu, reading: nvml.GpuReading | None, procs: dict) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "uuid": gpu.uuid,
        "name": gpu.name,
        "index": gpu.index,
        "mig_parent_uuid": gpu.mig_parent_uuid,
        "memory": {"used": None, "total": gpu.memory_total, "reserved": None},
        "utilization": None,
        "temperature_c": None,
        "power_w": None,
        "power_limit_w": None,
        "whole_gpu_fields": ["temperature", "power"] if gpu.mig_parent_uuid else [],
        "unsupported": [],
        "errors": {},
        "lost": False,
    }
    entry.update(procs)
    if reading is None:
        return entry
    entry["memory"] = {
        "used": reading.memory_used,
        "total": reading.memory_total if reading.memory_total is not None else gpu.memory_total,
        "reserved": reading.memory_reserved,
    }
    if reading.utilization_gpu is not None:
        entry["utilization"] = {
            "gpu": reading.utilization_gpu,
            "memory": reading.utilization_memory,
        }
    entry["temperature_c"] = reading.temperature_c
    entry["power_w"] = reading.power_w
    entry["power_limit_w"] = reading.power_limit_w
    entry["unsupported"] = list(reading.unsupported)
    entry["errors"] = dict(reading.errors)
    entry["lost"] = reading.lost
    return entry


class GpuSampler(LoggingConfigurable):
    """Samples this server's GPUs in a background thread and caches the result."""

    interval = Float(
        2.0,
        min=0.2,
        help="""Seconds between two samples of the GPUs while someone is looking.""",
    ).tag(config=True)

    idle_timeout = Float(
        60.0,
        min=0.0,
        help="""Stop sampling after this many seconds without a request; the next
        request starts the sampler again.""",
    ).tag(config=True)

    history_length = Int(
        150,
        min=0,
        help="""How many samples per GPU to keep for the history chart.""",
    ).tag(config=True)

    rediscover_interval = Float(
        30.0,
        min=0.0,
        help="""Seconds between two enumerations of the GPUs (and after a GPU is lost).""",
    ).tag(config=True)

    host_pids = Bool(
        help="""Whether this server shares the host's PID namespace, so that the PIDs
        NVML reports can be matched to this user's processes. Inside a container
        they cannot, and processes are only counted. The default is a guess from
        container markers (/.dockerenv, KUBERNETES_SERVICE_HOST, /proc/1/cgroup).""",
    ).tag(config=True)

    @default("host_pids")
    def _default_host_pids(self) -> bool:
        return not in_container(self._environ)

    def __init__(self, environ: Mapping[str, str] | None = None, **kwargs: Any) -> None:
        self._environ = dict(os.environ if environ is None else environ)
        super().__init__(**kwargs)
        self.gpu_env = GpuEnvironment.from_environ(self._environ)
        self._uid = os.getuid()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_request = 0.0
        self._waiters: list[concurrent.futures.Future] = []
        self._snapshot: dict[str, Any] | None = None
        self._snapshot_json = b""
        self._snapshot_at = 0.0
        self._visible: list[nvml.NvmlGpu] | None = None
        self._discovered: list[nvml.NvmlGpu] = []
        self._driver: dict[str, str] | None = None
        self._discovered_at = 0.0
        self._history: dict[str, collections.deque] = {}
        # when the GPUs were last seen in use (at first: when this server started), for the
        # GPU-idle warning: idle counts from there, as the hub's cull counts at the latest
        self._last_busy = time.time()
        self.samples = 0
        self.last_cost = 0.0
        self.total_cost = 0.0

    # -- what the handlers call -------------------------------------------------

    @property
    def running(self) -> bool:
        thread = self._thread
        return thread is not None and thread.is_alive()

    async def snapshot_json(self, timeout: float = 10.0) -> bytes:
        """The latest snapshot as JSON, waiting for a fresh one if the sampler was idle."""
        await self._fresh(timeout)
        return self._snapshot_json

    async def snapshot(self, timeout: float = 10.0) -> dict[str, Any]:
        """The latest snapshot as a dict (do not modify it)."""
        await self._fresh(timeout)
        assert self._snapshot is not None
        return self._snapshot

    def history(self) -> dict[str, Any]:
        """Recent samples per GPU: ``[time, utilisation %, memory used, memory total]``."""
        with self._lock:
            series = {uuid: list(points) for uuid, points in self._history.items()}
        return {"interval": self.interval, "gpus": series}

    def stop(self) -> None:
        """Stop the thread (server shutdown); a later request starts it again."""
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=self.interval + 5)

    async def _fresh(self, timeout: float) -> None:
        max_age = self.interval * 2 + 1
        with self._lock:
            self._last_request = time.monotonic()
            fresh = self._snapshot is not None and time.monotonic() - self._snapshot_at <= max_age
            waiter = None
            if not fresh:
                waiter = concurrent.futures.Future()
                self._waiters.append(waiter)
            self._ensure_thread()
        if waiter is None:
            return
        try:
            await asyncio.wait_for(asyncio.wrap_future(waiter), timeout)
        except asyncio.TimeoutError:
            if self._snapshot is None:
                raise
            self.log.warning("No fresh GPU sample within %.1f s; serving an older one", timeout)

    def _ensure_thread(self) -> None:
        # called with self._lock held
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="gpuspawner-sampler", daemon=True)
        self._thread.start()
        self.log.debug("GPU sampler started (every %.1f s)", self.interval)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.sample_once()
            except Exception:
                self.log.exception("GPU sample failed")
            with self._lock:
                if time.monotonic() - self._last_request > self.idle_timeout:
                    self._thread = None
                    self.log.debug("GPU sampler idle for %.0f s; stopping", self.idle_timeout)
                    return
            self._stop.wait(self.interval)
        with self._lock:
            self._thread = None

    # -- sampling ----------------------------------------------------------------

    def sample_once(self) -> dict[str, Any]:
        """Take one sample now (in the calling thread), publish it and return it."""
        started = time.perf_counter()
        snapshot = self._take()
        cost = time.perf_counter() - started
        self.samples += 1
        self.last_cost = cost
        self.total_cost += cost
        snapshot["sampler"] = {
            "cost_ms": round(cost * 1000, 3),
            "samples": self.samples,
            "interval": self.interval,
        }
        encoded = json.dumps(snapshot, separators=(",", ":")).encode()
        with self._lock:
            self._snapshot = snapshot
            self._snapshot_json = encoded
            self._snapshot_at = time.monotonic()
            self._record_history(snapshot)
            waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)
        return snapshot

    def _record_history(self, snapshot: dict[str, Any]) -> None:
        if self.history_length <= 0:
            return
        for gpu in snapshot["gpus"]:
            points = self._history.get(gpu["uuid"])
            if points is None:
                points = self._history[gpu["uuid"]] = collections.deque(
                    maxlen=self.history_length
                )
            util = gpu["utilization"]["gpu"] if gpu["utilization"] else None
            points.append(
                [round(snapshot["timestamp"], 3), util, gpu["memory"]["used"],
                 gpu["memory"]["total"]]
            )
        current = {gpu["uuid"] for gpu in snapshot["gpus"]}
        for uuid in list(self._history):
            if uuid not in current:
                del self._history[uuid]

    def _discover(self) -> None:
        known = {gpu.uuid: gpu for gpu in self._visible or ()}
        self._discovered = nvml.discover_gpus()
        visible = select_visible(self._discovered, self.gpu_env)
        # A GPU of this server that enumeration now leaves out (it fell off the bus, or
        # fails) keeps its card, so the panel says what happened instead of showing one
        # GPU fewer; so does a given GPU that NVML reports as lost from the start.
        shown = {gpu.uuid for gpu in visible}
        for uuid in list(known) + list(self.gpu_env.gpu_uuids or ()):
            if uuid in shown:
                continue
            gpu = known.get(uuid)
            if gpu is None and self._reported_lost(uuid):
                gpu = nvml.NvmlGpu(uuid=uuid, name=UNKNOWN_NAME, memory_total=0, index=len(visible))
            if gpu is not None:
                visible.append(gpu)
                shown.add(uuid)
        self._visible = visible
        version, cuda = nvml.driver_info()
        self._driver = {"version": version, "cuda": "%d.%d" % cuda}
        self._discovered_at = time.monotonic()
        self.log.info(
            "GPUs of this server: %s",
            ", ".join("%s (%s)" % (g.name, g.uuid) for g in self._visible) or "none",
        )

    @staticmethod
    def _reported_lost(uuid: str) -> bool:
        try:
            return nvml.read_gpu(uuid, with_processes=False).lost
        except nvml.NvmlUnavailable:
            return False

    def _take(self) -> dict[str, Any]:
        env = self.gpu_env
        snapshot: dict[str, Any] = {
            "timestamp": time.time(),
            "available": False,
            "reason": None,
            "driver": None,
            "gpu_limit": env.gpu_limit,
            "allocated_not_visible": None,
            "deadline": env.deadline_json(),
            "budget": env.budget_json(),
            "usage_url": env.usage_url,
            "idle": None,
            "gpus": [],
        }
        reason = reason_without_gpu(env)
        if reason is not None:
            snapshot["reason"] = reason
            return snapshot
        allocated = allocated_gpus(env)
        try:
            stale = time.monotonic() - self._discovered_at > self.rediscover_interval
            if self._visible is None or stale:
                self._discover()
        except nvml.NvmlUnavailable as e:
            self._visible = None
            snapshot["reason"] = str(e)
            if allocated is not None:
                snapshot["reason"] = reason_not_visible(allocated, str(e), driver_reached=False)
                snapshot["allocated_not_visible"] = allocated
            return snapshot
        assert self._visible is not None
        snapshot["driver"] = self._driver
        if not self._visible:
            snapshot["reason"] = reason_for_none(self._discovered, env)
            if allocated is not None:
                listed = "it" if allocated["count"] == 1 else "them"
                snapshot["reason"] = reason_not_visible(
                    allocated, "the NVIDIA driver here does not list %s." % listed,
                    driver_reached=True,
                )
                snapshot["allocated_not_visible"] = allocated
            return snapshot
        for gpu in self._visible:
            snapshot["gpus"].append(self._read(gpu))
        snapshot["available"] = True
        snapshot["idle"] = self._idle(snapshot)
        return snapshot

    def _idle(self, snapshot: dict[str, Any]) -> dict[str, Any] | None:
        """The GPU-idle cull ahead, as the hub judges it: every GPU known and below the
        threshold (a GPU whose utilisation is unknown, such as a MIG instance, is busy)."""
        env = self.gpu_env
        if not env.idle_timeout:
            return None
        threshold = env.idle_threshold if env.idle_threshold is not None else 5.0
        now = snapshot["timestamp"]
        readings = [g["utilization"]["gpu"] if g["utilization"] else None
                    for g in snapshot["gpus"]]  # fmt: skip
        idle = bool(readings) and all(r is not None and r < threshold for r in readings)
        if not idle:
            self._last_busy = now
            return None
        return idle_state(env, self._last_busy, now)

    def _read(self, gpu: nvml.NvmlGpu) -> dict[str, Any]:
        try:
            reading = nvml.read_gpu(gpu.uuid)
        except nvml.NvmlUnavailable as e:
            self._discovered_at = 0.0  # enumerate again next time
            entry = _gpu_json(gpu, None, attribute(None, self.host_pids, self._uid).as_json())
            entry["errors"] = {"gpu": str(e)}
            return entry
        if reading.lost:
            self.log.error("GPU %s (%s) is lost", gpu.uuid, gpu.name)
            self._discovered_at = 0.0
        procs = attribute(reading.processes, self.host_pids, self._uid).as_json()
        return _gpu_json(gpu, reading, procs)
