"""Which GPUs belong to this server: pure functions over NVML's list and the environment.

NVML ignores ``CUDA_VISIBLE_DEVICES`` and, outside a container, sees every GPU
of the machine. The spawner tells the server what it was given through the
environment, and that is the only contract between hub and container:

``NVIDIA_VISIBLE_DEVICES``
    comma-separated GPU or MIG UUIDs, ``void``/``none`` for none; absent or
    ``all`` outside the hub (a laptop).
``GPU_LIMIT``
    how many GPUs the server was given (``0`` for none).
``GPUSPAWNER_GPU_UUIDS``
    the given UUIDs again (empty when none).
``GPUSPAWNER_NO_GPU_REASON``
    with ``GPU_LIMIT=0``, the sentence saying why.
``GPUSPAWNER_GPU_DEADLINE``
    ISO-8601 time (UTC) at which the hub stops this GPU server at the latest
    (budget spent plus grace, or maximum age); absent when no limit applies.
``GPUSPAWNER_GPU_DEADLINE_REASON``
    the sentence saying which limit that is.
``GPUSPAWNER_BUDGET_HOURS``, ``GPUSPAWNER_BUDGET_USED_HOURS``, ``GPUSPAWNER_BUDGET_PERIOD``,
``GPUSPAWNER_BUDGET_RESETS_AT``, ``GPUSPAWNER_BUDGET_READ_AT``
    the user's GPU-hour budget, what was used of it when the server started (and when that
    was), the period ("week") and when it resets; absent without a budget.
``GPUSPAWNER_USAGE_URL``
    the path of the user's usage page on the hub.
``GPUSPAWNER_GPU_IDLE_TIMEOUT``, ``GPUSPAWNER_GPU_IDLE_THRESHOLD``, ``GPUSPAWNER_GPU_IDLE_WARNING``
    GPU-idle culling: seconds of GPU use below the threshold (percent) after which the hub
    stops this server, and how many seconds before that JupyterLab warns.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone

from ..nvml import NvmlGpu

_UUID = re.compile(r"^(GPU|MIG)-", re.IGNORECASE)

NO_GPU_GIVEN = "No GPU was given to this server."


def _tokens(value: str) -> list[str]:
    return [t.strip() for t in value.split(",") if t.strip()]


def _deadline_or_none(value: str | None) -> datetime | None:
    """An aware UTC datetime from ISO-8601 (a naive one is taken as UTC); None when unreadable."""
    if value is None or not value.strip():
        return None
    try:
        moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc)


def _float_or_none(value: str | None) -> float | None:
    if value is None or not value.strip():
        return None
    try:
        number = float(value.strip())
    except ValueError:
        return None
    return number if number == number and abs(number) != float("inf") else None


def _int_or_none(value: str | None) -> int | None:
    if value is None or not value.strip():
        return None
    try:
        return int(value.strip())
    except ValueError:
        return None


@dataclass(frozen=True)
class GpuEnvironment:
    """What the environment says about this server's GPUs (None: not set)."""

    nvidia_visible_devices: str | None = None
    cuda_visible_devices: str | None = None
    gpu_limit: int | None = None
    gpu_uuids: tuple[str, ...] | None = None
    no_gpu_reason: str | None = None
    deadline: datetime | None = None
    deadline_reason: str | None = None
    budget_hours: float | None = None
    budget_used_hours: float | None = None
    budget_period: str | None = None
    budget_resets_at: datetime | None = None
    budget_read_at: datetime | None = None
    usage_url: str | None = None
    idle_timeout: float | None = None
    idle_threshold: float | None = None
    idle_warning: float | None = None

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> GpuEnvironment:
        uuids = environ.get("GPUSPAWNER_GPU_UUIDS")
        return cls(
            nvidia_visible_devices=environ.get("NVIDIA_VISIBLE_DEVICES"),
            cuda_visible_devices=environ.get("CUDA_VISIBLE_DEVICES"),
            gpu_limit=_int_or_none(environ.get("GPU_LIMIT")),
            gpu_uuids=None if uuids is None else tuple(_tokens(uuids)),
            no_gpu_reason=(environ.get("GPUSPAWNER_NO_GPU_REASON") or "").strip() or None,
            deadline=_deadline_or_none(environ.get("GPUSPAWNER_GPU_DEADLINE")),
            deadline_reason=(environ.get("GPUSPAWNER_GPU_DEADLINE_REASON") or "").strip() or None,
            budget_hours=_float_or_none(environ.get("GPUSPAWNER_BUDGET_HOURS")),
            budget_used_hours=_float_or_none(environ.get("GPUSPAWNER_BUDGET_USED_HOURS")),
            budget_period=(environ.get("GPUSPAWNER_BUDGET_PERIOD") or "").strip() or None,
            budget_resets_at=_deadline_or_none(environ.get("GPUSPAWNER_BUDGET_RESETS_AT")),
            budget_read_at=_deadline_or_none(environ.get("GPUSPAWNER_BUDGET_READ_AT")),
            usage_url=(environ.get("GPUSPAWNER_USAGE_URL") or "").strip() or None,
            idle_timeout=_float_or_none(environ.get("GPUSPAWNER_GPU_IDLE_TIMEOUT")),
            idle_threshold=_float_or_none(environ.get("GPUSPAWNER_GPU_IDLE_THRESHOLD")),
            idle_warning=_float_or_none(environ.get("GPUSPAWNER_GPU_IDLE_WARNING")),
        )

    def budget_json(self) -> dict | None:
        """The budget as the hub found it when this server started; None without one."""
        if self.budget_hours is None or self.budget_used_hours is None or self.budget_hours < 0:
            return None
        left = max(self.budget_hours - self.budget_used_hours, 0.0)
        period = self.budget_period or "period"
        return {
            "hours": self.budget_hours,
            "used_hours": self.budget_used_hours,
            "left_hours": round(left, 4),
            "period": period,
            "resets_at": self.budget_resets_at.isoformat(timespec="seconds")
            if self.budget_resets_at else None,
            "read_at": self.budget_read_at.isoformat(timespec="seconds")
            if self.budget_read_at else None,
            "text": budget_text(left, self.budget_hours, period),
        }  # fmt: skip

    def deadline_json(self) -> dict[str, str | None] | None:
        """``{"at": "2026-11-25T14:32:00+00:00", "reason": "..."}``, or None when no deadline."""
        if self.deadline is None:
            return None
        return {
            "at": self.deadline.isoformat(timespec="seconds"),
            "reason": self.deadline_reason,
        }


def _figure(hours: float) -> str:
    return ("%.1f" % hours).rstrip("0").rstrip(".")


def budget_text(left: float, hours: float, period: str) -> str:
    """"7.5 of 10 GPU-hours left this week (at start)"."""
    when = {"day": "today", "week": "this week", "month": "this month"}.get(period, "this period")
    return "%s of %s GPU-hours left %s (at start)" % (_figure(left), _figure(hours), when)


def idle_state(
    env: GpuEnvironment, idle_since: float | None, now: float
) -> dict[str, object] | None:
    """When the hub's GPU-idle cull stops this server, for JupyterLab's warning: None when the
    hub does not cull idle GPUs or the GPUs are in use; times are seconds since the epoch."""
    if not env.idle_timeout or env.idle_timeout <= 0 or idle_since is None:
        return None
    stops_at = idle_since + env.idle_timeout
    warning = env.idle_warning if env.idle_warning is not None else 300.0
    return {
        "since": round(idle_since, 3),
        "stops_at": round(stops_at, 3),
        "timeout_s": env.idle_timeout,
        "warning_s": max(warning, 0.0),
        "threshold": env.idle_threshold if env.idle_threshold is not None else 5.0,
        "near": warning > 0 and stops_at - now <= warning,
    }


def reason_without_gpu(env: GpuEnvironment) -> str | None:
    """The reason this server has no GPU when the environment alone says so, else None."""
    if env.gpu_limit is not None and env.gpu_limit <= 0:
        return env.no_gpu_reason or NO_GPU_GIVEN
    nvd = env.nvidia_visible_devices
    if nvd is not None and nvd.strip().lower() in ("void", "none", ""):
        return env.no_gpu_reason or NO_GPU_GIVEN
    cvd = env.cuda_visible_devices
    if cvd is not None and (not cvd.strip() or cvd.strip().startswith("-")):
        return "CUDA_VISIBLE_DEVICES hides every GPU from this server's programs."
    return None


def _matches(gpu: NvmlGpu, token: str) -> bool:
    """A UUID token names this device, or its MIG parent (which gives all its instances)."""
    token = token.lower()
    return gpu.uuid.lower() == token or (gpu.mig_parent_uuid or "").lower() == token


def _filter_uuids(gpus: Sequence[NvmlGpu], tokens: Sequence[str]) -> list[NvmlGpu]:
    return [g for g in gpus if any(_matches(g, t) for t in tokens)]


def _apply_cuda_visible(gpus: Sequence[NvmlGpu], value: str) -> list[NvmlGpu]:
    """CUDA's rules: UUIDs (or unique prefixes) or indices, stopping at the first bad token.

    Indices count the devices left so far in NVML (PCI bus) order, which is
    CUDA's order with ``CUDA_DEVICE_ORDER=PCI_BUS_ID``.
    """
    ordered = sorted(gpus, key=lambda g: (g.index, g.uuid))
    chosen: list[NvmlGpu] = []
    for token in _tokens(value):
        if _UUID.match(token):
            hits = [g for g in ordered if g.uuid.lower().startswith(token.lower())]
            hits = hits or [g for g in ordered if _matches(g, token)]
            if not hits:
                break
            picked = hits if all(g.mig_parent_uuid for g in hits) else hits[:1]
        else:
            index = _int_or_none(token)
            if index is None or index < 0 or index >= len(ordered):
                break
            picked = [ordered[index]]
        chosen.extend(g for g in picked if g not in chosen)
    return chosen


def select_visible(gpus: Sequence[NvmlGpu], env: GpuEnvironment) -> list[NvmlGpu]:
    """The subset of NVML's devices that this server was given, in NVML order.

    Host indices in ``NVIDIA_VISIBLE_DEVICES`` cannot be matched (NVML inside
    a container renumbers the devices it sees, and the runtime has already
    hidden the rest), so only UUID tokens filter. ``GPU_LIMIT`` caps the count
    only when no UUID told us which GPUs they are.
    """
    if reason_without_gpu(env) is not None:
        return []
    chosen = list(gpus)
    named_by_uuid = False
    nvd = env.nvidia_visible_devices
    if nvd is not None and nvd.strip().lower() != "all":
        uuid_tokens = [t for t in _tokens(nvd) if _UUID.match(t)]
        if uuid_tokens:
            chosen = _filter_uuids(chosen, uuid_tokens)
            named_by_uuid = True
    if env.gpu_uuids:
        chosen = _filter_uuids(chosen, env.gpu_uuids)
        named_by_uuid = True
    if env.cuda_visible_devices is not None:
        chosen = _apply_cuda_visible(chosen, env.cuda_visible_devices)
    if env.gpu_limit is not None and not named_by_uuid:
        chosen = chosen[: env.gpu_limit]
    return chosen


def allocated_gpus(env: GpuEnvironment) -> dict | None:
    """What the hub says it allocated to this server, ``{"count": 1, "uuids": [...]}``
    (``uuids`` empty where the engine picks the devices); None when it allocated none, or
    outside a hub (no ``GPU_LIMIT`` and no UUIDs named)."""
    if reason_without_gpu(env) is not None:
        return None
    uuids = list(env.gpu_uuids or ()) or [
        t for t in _tokens(env.nvidia_visible_devices or "") if _UUID.match(t)
    ]
    count = env.gpu_limit if env.gpu_limit is not None else len(uuids)
    if count <= 0:
        return None
    return {"count": count, "uuids": uuids}


def reason_not_visible(allocated: dict, problem: str, driver_reached: bool) -> str:
    """Why a server that holds GPUs shows none: the hub allocated them (so they count as this
    server's), ``problem`` is what NVML says here; without a reachable driver the engine did
    not pass them into the container."""
    count, uuids = allocated["count"], allocated["uuids"]
    if uuids:
        what = ", ".join(uuids)
    else:
        what = "1 GPU" if count == 1 else "%d GPUs" % count
    verb = "it is" if count == 1 else "they are"
    sentence = "The hub allocated %s to this server, but %s not visible here: %s" % (
        what, verb, problem[:1].lower() + problem[1:] if problem[1:2].islower() else problem)
    if not driver_reached:
        sentence += (
            " The container engine started this server without passing the GPU in (on Docker,"
            ' gpu_mode "runtime-env" needs the engine\'s default runtime to be nvidia; "device-'
            'request" needs the NVIDIA Container Toolkit). Tell the hub\'s admin.'
        )
    return sentence


def reason_for_none(gpus: Sequence[NvmlGpu], env: GpuEnvironment) -> str:
    """Explain an empty selection, given what NVML saw and what the environment says."""
    reason = reason_without_gpu(env)
    if reason is not None:
        return reason
    if not gpus:
        return "The NVIDIA driver is loaded but reports no GPU on this machine."
    given = env.gpu_uuids or tuple(
        t for t in _tokens(env.nvidia_visible_devices or "") if _UUID.match(t)
    )
    if given:
        return "The GPU given to this server (%s) is not visible to the NVIDIA driver." % (
            ", ".join(given)
        )
    return "None of the GPUs on this machine is visible to this server."
