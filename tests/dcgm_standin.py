"""A stand-in for NVIDIA's DCGM exporter: its metric names and label set, values a test sets.

Serves ``/metrics`` in Prometheus' text format as dcgm-exporter does on a Kubernetes node
(one series per GPU, labelled ``gpu``, ``UUID``, ``pci_bus_id``, ``device``, ``modelName``,
``Hostname``, ``DCGM_FI_DRIVER_VERSION`` and, for a GPU allocated to a pod, ``container``,
``namespace`` and ``pod``), for the GPUs listed in a JSON state file it rereads at every
scrape::

    [{"uuid": "GPU-…", "util": 0, "pod": "jupyter-ann", "namespace": "hub"}, ...]

(``gpu`` defaults to the entry's position, ``model`` to an A100; ``mig_instance`` makes
the series a MIG instance's, labelled ``GPU_I_ID`` and ``GPU_I_PROFILE`` (``mig_profile``)
as dcgm-exporter labels one). A test rewrites the file
(:func:`write_state`) to change what the next scrape sees. Run as a process::

    python tests/dcgm_standin.py --port 9400 --state gpus.json [--hostname node-a]
"""

import argparse
import json
import os
import tempfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

DRIVER = "550.54.15"
MODEL = "NVIDIA A100-SXM4-80GB"
# name, type, help, the entry's key (a number) or a fixed value
METRICS = [
    ("DCGM_FI_DEV_GPU_UTIL", "gauge", "GPU utilization (in %).", "util"),
    ("DCGM_FI_DEV_MEM_COPY_UTIL", "gauge", "Memory utilization (in %).", "mem_util"),
    ("DCGM_FI_DEV_FB_USED", "gauge", "Framebuffer memory used (in MiB).", "fb_used"),
    ("DCGM_FI_DEV_FB_FREE", "gauge", "Framebuffer memory free (in MiB).", "fb_free"),
    ("DCGM_FI_DEV_GPU_TEMP", "gauge", "GPU temperature (in C).", "temp"),
    ("DCGM_FI_DEV_POWER_USAGE", "gauge", "Power draw (in W).", "power"),
]
DEFAULTS = {"util": 0, "mem_util": 0, "fb_used": 0, "fb_free": 81050, "temp": 35, "power": 60.5}


def write_state(path: Path, gpus: list[dict]) -> None:
    """Replace the exporter's GPUs at once (a scrape never reads half a file)."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".")
    with os.fdopen(fd, "w") as f:
        json.dump(gpus, f)
    os.replace(tmp, path)


def _escape(value) -> str:
    return str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def render(gpus: list[dict], hostname: str) -> str:
    """The exporter's /metrics page for ``gpus``."""
    lines = []
    for name, kind, text, key in METRICS:
        lines.append("# HELP %s %s" % (name, text))
        lines.append("# TYPE %s %s" % (name, kind))
        for position, gpu in enumerate(gpus):
            index = gpu.get("gpu", position)
            labels = {
                "gpu": index,
                "UUID": gpu["uuid"],
                "pci_bus_id": "00000000:%02X:00.0" % (0x10 + int(index)),
                "device": "nvidia%s" % index,
                "modelName": gpu.get("model", MODEL),
                "Hostname": hostname,
                "DCGM_FI_DRIVER_VERSION": DRIVER,
            }
            if "mig_instance" in gpu:
                labels.update(
                    GPU_I_PROFILE=gpu.get("mig_profile", "1g.10gb"), GPU_I_ID=gpu["mig_instance"]
                )
            if gpu.get("pod"):
                labels.update(
                    container=gpu.get("container", "notebook"),
                    namespace=gpu.get("namespace", "default"),
                    pod=gpu["pod"],
                )
            body = ",".join('%s="%s"' % (k, _escape(v)) for k, v in labels.items())
            lines.append("%s{%s} %s" % (name, body, gpu.get(key, DEFAULTS[key])))
    return "\n".join(lines) + "\n"


def serve(port: int, state: Path, hostname: str) -> None:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            if self.path != "/metrics":
                self.send_error(404)
                return
            try:
                gpus = json.loads(state.read_text())
            except (OSError, ValueError):
                gpus = []
            body = render(gpus, hostname).encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--state", type=Path, required=True)
    parser.add_argument("--hostname", default="gpu-node")
    args = parser.parse_args()
    serve(args.port, args.state, args.hostname)
