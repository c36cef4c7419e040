"""Benchmark of the JupyterLab GPU status extension.

1. REST latency of ``GET <base_url>/gpuspawner/api/gpus`` (and ``metrics``)
   served from the sampler's cache, by a real Jupyter server over loopback
   with keep-alive: p50 / p99 in milliseconds.
2. The sampler's cost per sample (``GpuSampler.sample_once``): wall and CPU
   milliseconds, and the CPU share that costs at the default interval.

On a machine without an NVIDIA driver the sampler measures its no-driver
path; on a GPU machine, the real NVML reads of every visible GPU.

``--simulated 1,8`` measures both through pynvml's real ctypes path against the
simulated NVML (tools/gpuhost, built by scripts/setup-gpuhost.sh), once per GPU
count, each in a fresh process that sees exactly that many GPUs (as a container
given them would), and prints each against the no-driver path measured in the
same run as the baseline.

    python benchmarks/lab_bench.py [--requests 2000] [--samples 500] [--simulated 1,8]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from gpuspawner.lab.sampler import GpuSampler  # noqa: E402


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(tmp: Path, token: str, port: int, base_url: str) -> subprocess.Popen:
    config = tmp / "config" / "jupyter_server_config.d"
    config.mkdir(parents=True)
    shutil.copy(REPO / "jupyter-config" / "server-config" / "gpuspawner.json", config)
    env = dict(os.environ, JUPYTER_CONFIG_DIR=str(tmp / "config"),
               JUPYTER_RUNTIME_DIR=str(tmp / "runtime"), JUPYTER_DATA_DIR=str(tmp / "data"),
               PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    command = [sys.executable, "-m", "jupyter_server", "--no-browser", "--allow-root",
               "--ip=127.0.0.1", "--port=%d" % port, "--ServerApp.port_retries=0",
               "--IdentityProvider.token=%s" % token, "--ServerApp.base_url=%s" % base_url,
               "--ServerApp.root_dir=%s" % tmp, "--log-level=WARN"]
    return subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL,
                            stderr=open(tmp / "server.log", "wb"))


def bench_rest(requests: int) -> dict[str, dict[str, float]]:
    token, port, base_url = secrets.token_hex(16), free_port(), "/user/bench/"
    headers = {"Authorization": "token %s" % token}
    with tempfile.TemporaryDirectory() as tmp:
        server = start_server(Path(tmp), token, port, base_url)
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            deadline = time.monotonic() + 60
            while True:
                try:
                    conn.request("GET", base_url + "gpuspawner/api/gpus", headers=headers)
                    response = conn.getresponse()
                    response.read()
                    if response.status == 200:
                        break
                except OSError:
                    conn.close()
                    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
                if time.monotonic() > deadline or server.poll() is not None:
                    raise SystemExit("the server did not start: %s" % (Path(tmp) / "server.log"))
                time.sleep(0.2)
            results = {}
            for path in ("gpuspawner/api/gpus", "gpuspawner/metrics"):
                timings = []
                for _ in range(requests):
                    started = time.perf_counter()
                    conn.request("GET", base_url + path, headers=headers)
                    response = conn.getresponse()
                    body = response.read()
                    timings.append((time.perf_counter() - started) * 1000)
                    assert response.status == 200, (response.status, body[:200])
                results[path] = {
                    "p50_ms": percentile(timings, 50),
                    "p99_ms": percentile(timings, 99),
                    "mean_ms": statistics.fmean(timings),
                    "bytes": len(body),
                }
            conn.close()
        finally:
            server.terminate()
            server.wait(timeout=15)
    return results


def bench_sampler(samples: int) -> dict[str, float]:
    sampler = GpuSampler(environ=dict(os.environ))
    snapshot = sampler.sample_once()  # discovery and NVML init happen here, not in the loop
    wall, cpu = [], []
    for _ in range(samples):
        started, started_cpu = time.perf_counter(), time.thread_time()
        sampler.sample_once()
        cpu.append((time.thread_time() - started_cpu) * 1000)
        wall.append((time.perf_counter() - started) * 1000)
    interval = sampler.interval
    return {
        "gpus": len(snapshot["gpus"]),
        "reason": snapshot["reason"],
        "wall_p50_ms": percentile(wall, 50),
        "wall_p99_ms": percentile(wall, 99),
        "cpu_mean_ms": statistics.fmean(cpu),
        "interval_s": interval,
        "cpu_percent_at_interval": statistics.fmean(cpu) / (interval * 1000) * 100,
    }


def simulated_env(host, count: int, tmp: Path) -> dict[str, str]:
    """A process seeing exactly the first ``count`` GPUs of ``host``, as in a container."""
    uuids = host.allocatable()[:count]
    visible = tmp / ("visible-%d" % count)
    visible.write_text("\n".join(uuids) + "\n")
    env = dict(os.environ, **host.env())
    env.update(SIMNVML_VISIBLE=str(visible), NVIDIA_VISIBLE_DEVICES=",".join(uuids),
               GPUSPAWNER_GPU_UUIDS=",".join(uuids), GPU_LIMIT=str(count))
    return env


def measure_in_child(env: dict[str, str], args) -> dict:
    command = [sys.executable, __file__, "--json", "--requests", str(args.requests),
               "--samples", str(args.samples)]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=1800)
    if done.returncode != 0:
        raise SystemExit("benchmark child failed:\n" + done.stderr[-3000:])
    return json.loads(done.stdout)


def bench_simulated(counts: list[int], args) -> None:
    """Each GPU count against the simulated NVML, and the no-driver path as the baseline."""
    sys.path.insert(0, str(REPO / "tools" / "gpuhost"))
    import simstate

    name = "bench-%s" % secrets.token_hex(4)
    host = simstate.SimHost.create(name, simstate.default_inventory(name, count=max(counts),
                                                                    mig_index=None))
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for uuid in host.allocatable():
                host.update(uuid, util_gpu=37, memory_used=12 * simstate.GIB)
            simulated_only = ("LD_LIBRARY_PATH", "SIMNVML_STATE", "NVIDIA_VISIBLE_DEVICES")
            baseline_env = {k: v for k, v in os.environ.items() if k not in simulated_only}
            runs = [("no driver (baseline)", measure_in_child(baseline_env, args))]
            for count in counts:
                result = measure_in_child(simulated_env(host, count, Path(tmp)), args)
                if result["sampler"]["gpus"] != count:
                    raise SystemExit(
                        "expected %d GPUs, the sampler saw %r" % (count, result["sampler"]))
                runs.append(("%d simulated GPU%s" % (count, "" if count == 1 else "s"), result))
    finally:
        host.remove()
    base = runs[0][1]
    print("machine: %d CPUs, python %s; %d requests per route, %d samples"
          % (os.cpu_count(), sys.version.split()[0], args.requests, args.samples))
    print("%-22s %12s %12s %14s %14s %12s" % ("", "sample p50", "sample CPU", "api/gpus p50",
                                              "api/gpus p99", "metrics p99"))
    for label, result in runs:
        sampler, rest = result["sampler"], result["rest"]
        gpus, metrics = rest["gpuspawner/api/gpus"], rest["gpuspawner/metrics"]
        print("%-22s %9.4f ms %9.4f ms %11.3f ms %11.3f ms %9.3f ms"
              % (label, sampler["wall_p50_ms"], sampler["cpu_mean_ms"], gpus["p50_ms"],
                 gpus["p99_ms"], metrics["p99_ms"]))
    for label, result in runs[1:]:
        print("%s vs baseline: sample CPU x%.1f, api/gpus p99 x%.2f, %.4f%% of one core at %.1f s"
              % (label, result["sampler"]["cpu_mean_ms"] / base["sampler"]["cpu_mean_ms"],
                 result["rest"]["gpuspawner/api/gpus"]["p99_ms"]
                 / base["rest"]["gpuspawner/api/gpus"]["p99_ms"],
                 result["sampler"]["cpu_percent_at_interval"], result["sampler"]["interval_s"]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000, help="requests per route")
    parser.add_argument("--samples", type=int, default=500, help="sampler samples")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--simulated", metavar="COUNTS",
                        help="GPU counts to measure against the simulated NVML, e.g. 1,8")
    args = parser.parse_args()
    if args.simulated:
        bench_simulated([int(n) for n in args.simulated.split(",")], args)
        return
    rest = bench_rest(args.requests)
    sampler = bench_sampler(args.samples)
    if args.json:
        print(json.dumps({"rest": rest, "sampler": sampler}, indent=2))
        return
    print("machine: %d CPUs, python %s" % (os.cpu_count(), sys.version.split()[0]))
    for path, r in rest.items():
        print("REST GET %-22s p50 %.3f ms  p99 %.3f ms  mean %.3f ms  (%d requests, %d bytes)"
              % (path, r["p50_ms"], r["p99_ms"], r["mean_ms"], args.requests, r["bytes"]))
    what = "%d GPU(s)" % sampler["gpus"] if sampler["gpus"] else "no GPU: %s" % sampler["reason"]
    print("sampler: %s" % what)
    print("sampler per sample: wall p50 %.4f ms  p99 %.4f ms  CPU mean %.4f ms  "
          "= %.4f%% of one core at the %.1f s interval (%d samples)"
          % (sampler["wall_p50_ms"], sampler["wall_p99_ms"], sampler["cpu_mean_ms"],
             sampler["cpu_percent_at_interval"], sampler["interval_s"], args.samples))


if __name__ == "__main__":
    main()
