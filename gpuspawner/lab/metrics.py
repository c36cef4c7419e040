"""The sampler's snapshot in the Prometheus text exposition format (version 0.0.4)."""

from __future__ import annotations

from typing import Any

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# name, help, type, function of a GPU entry giving the value (None: no sample)
_GPU_METRICS: list[tuple[str, str, str, Any]] = [
    (
        "gpuspawner_gpu_utilization_ratio",
        "Fraction of time a kernel ran on the GPU over the last sample period.",
        "gauge",
        lambda g: None if not g["utilization"] else g["utilization"]["gpu"] / 100.0,
    ),
    (
        "gpuspawner_gpu_memory_used_bytes",
        "GPU memory in use (memory info v2: excludes driver-reserved memory).",
        "gauge",
        lambda g: g["memory"]["used"],
    ),
    (
        "gpuspawner_gpu_memory_total_bytes",
        "GPU memory in total.",
        "gauge",
        lambda g: g["memory"]["total"],
    ),
    (
        "gpuspawner_gpu_temperature_celsius",
        "GPU temperature (the whole GPU's for a MIG instance).",
        "gauge",
        lambda g: g["temperature_c"],
    ),
    (
        "gpuspawner_gpu_power_watts",
        "GPU power draw (the whole GPU's for a MIG instance).",
        "gauge",
        lambda g: g["power_w"],
    ),
    (
        "gpuspawner_gpu_power_limit_watts",
        "Enforced GPU power limit.",
        "gauge",
        lambda g: g["power_limit_w"],
    ),
    (
        "gpuspawner_gpu_processes",
        "Processes using the GPU (this user's and others').",
        "gauge",
        lambda g: len(g.get("processes") or []) + (g.get("other_processes") or {}).get("count", 0),
    ),
    (
        "gpuspawner_gpu_lost",
        "1 when NVML reports the GPU as lost (fallen off the bus).",
        "gauge",
        lambda g: 1 if g["lost"] else 0,
    ),
]


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(labels: dict[str, str]) -> str:
    return ",".join('%s="%s"' % (k, _escape(v)) for k, v in labels.items())


def _number(value: float) -> str:
    if isinstance(value, bool):
        value = int(value)
    if isinstance(value, int):
        return str(value)
    return repr(float(value))


def render(snapshot: dict[str, Any], samples_total: int, last_cost: float) -> str:
    """Prometheus text for one snapshot plus the sampler's own counters."""
    lines = [
        "# HELP gpuspawner_gpus GPUs (or MIG instances) given to this server and seen by NVML.",
        "# TYPE gpuspawner_gpus gauge",
        "gpuspawner_gpus %d" % len(snapshot["gpus"]),
        "# HELP gpuspawner_gpu_available 1 when this server has at least one usable GPU.",
        "# TYPE gpuspawner_gpu_available gauge",
        "gpuspawner_gpu_available %d" % (1 if snapshot["available"] else 0),
    ]
    info = "# HELP gpuspawner_gpu_info GPU identity; the value is always 1."
    lines += [info, "# TYPE gpuspawner_gpu_info gauge"]
    for gpu in snapshot["gpus"]:
        labels = {
            "uuid": gpu["uuid"],
            "name": gpu["name"],
            "index": str(gpu["index"]),
            "mig_parent_uuid": gpu["mig_parent_uuid"] or "",
        }
        lines.append("gpuspawner_gpu_info{%s} 1" % _labels(labels))
    for name, help_text, kind, value_of in _GPU_METRICS:
        values = [(gpu, value_of(gpu)) for gpu in snapshot["gpus"]]
        values = [(gpu, v) for gpu, v in values if v is not None]
        if not values:
            continue
        lines += ["# HELP %s %s" % (name, help_text), "# TYPE %s %s" % (name, kind)]
        for gpu, value in values:
            lines.append("%s{%s} %s" % (name, _labels({"uuid": gpu["uuid"]}), _number(value)))
    lines += [
        "# HELP gpuspawner_sampler_samples_total Samples taken since the server started.",
        "# TYPE gpuspawner_sampler_samples_total counter",
        "gpuspawner_sampler_samples_total %d" % samples_total,
        "# HELP gpuspawner_sampler_last_sample_seconds Time the last sample took.",
        "# TYPE gpuspawner_sampler_last_sample_seconds gauge",
        "gpuspawner_sampler_last_sample_seconds %s" % _number(float(last_cost)),
    ]
    return "\n".join(lines) + "\n"
