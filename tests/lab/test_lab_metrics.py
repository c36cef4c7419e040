"""The Prometheus text endpoint's body, rendered from snapshots."""

from __future__ import annotations

import re

from gpuspawner.lab import metrics

LINE = re.compile(
    r'^(# (HELP|TYPE) \w+ .+|\w+(\{(\w+="([^"\\]|\\.)*",?)*\})? -?[0-9.e+-]+)$'
)


def _gpu(**overrides):
    gpu = {
        "uuid": "GPU-a", "name": "NVIDIA H100", "index": 0, "mig_parent_uuid": None,
        "memory": {"used": 1024, "total": 4096, "reserved": 0},
        "utilization": {"gpu": 37, "memory": 5}, "temperature_c": 45, "power_w": 312.5,
        "power_limit_w": 700.0, "processes": [{"pid": 1, "name": "python", "used_memory": 1}],
        "other_processes": {"count": 2, "used_memory": None}, "lost": False,
    }
    gpu.update(overrides)
    return gpu


def test_every_line_is_valid_exposition_format():
    snapshot = {"available": True, "gpus": [_gpu(), _gpu(uuid="MIG-b", utilization=None,
                                                          name='odd "name"\\x')]}
    text = metrics.render(snapshot, samples_total=7, last_cost=0.0012)
    assert text.endswith("\n")
    for line in text.splitlines():
        assert LINE.match(line), line
    assert 'gpuspawner_gpu_utilization_ratio{uuid="GPU-a"} 0.37' in text
    assert 'gpuspawner_gpu_utilization_ratio{uuid="MIG-b"}' not in text  # no sample, no line
    assert 'name="odd \\"name\\"\\\\x"' in text
    assert 'gpuspawner_gpu_processes{uuid="GPU-a"} 3' in text
    assert "gpuspawner_sampler_samples_total 7" in text
    assert "gpuspawner_gpu_available 1" in text


def test_no_gpu():
    text = metrics.render({"available": False, "gpus": []}, 1, 0.0)
    assert "gpuspawner_gpus 0" in text and "gpuspawner_gpu_available 0" in text
    assert "gpuspawner_gpu_memory_used_bytes" not in text
