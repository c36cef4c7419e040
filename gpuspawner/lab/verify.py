"""The "Verify CUDA" notebook cell: one source, served to the front end.

JupyterLab's "Verify CUDA" command fetches :data:`VERIFY_CELL` from
``GET <base_url>/gpuspawner/api/verify-code``, inserts it below the active
cell and runs it. The cell needs nothing but the kernel's own Python (and
PyTorch and nvidia-ml-py, if installed). It first asks the driver through NVML
which GPUs this server has (driver version, names), then checks PyTorch, and
ends with one line starting ``VERDICT:``:

- ``VERDICT: OK`` -- CUDA works on every visible GPU (warnings may follow);
- ``VERDICT: NO TORCH`` -- PyTorch is not installed in this kernel (the line
  still says which GPUs the driver, through NVML, sees);
- ``VERDICT: NO CUDA DEVICE`` -- PyTorch sees no GPU (CPU-only build, or no GPU given);
- ``VERDICT: PROBLEM`` -- a GPU is there but a check failed.
"""

from __future__ import annotations

VERIFY_CELL = r'''# Verify CUDA: does this session have a GPU, and does PyTorch use it?
def _gpuspawner_verify_cuda():
    import importlib.util
    import os
    import socket
    import subprocess
    import sys
    import tempfile
    import time

    def say(text=""):
        print(text, flush=True)

    given_reason = os.environ.get("GPUSPAWNER_NO_GPU_REASON", "").strip()
    gpu_limit = os.environ.get("GPU_LIMIT", "").strip()
    visible = os.environ.get("NVIDIA_VISIBLE_DEVICES", "")
    no_gpu_given = gpu_limit == "0" or bool(given_reason) or visible.strip().lower() in (
        "void", "none")

    def text(value):
        return value.decode() if isinstance(value, bytes) else str(value)

    def nvml_gpus():
        """The driver's view: (driver, CUDA, [(name, uuid)], [unreadable], problem or None)."""
        if importlib.util.find_spec("pynvml") is None:
            return None, None, [], [], "nvidia-ml-py is not installed in this kernel"
        import pynvml

        try:
            pynvml.nvmlInit()
        except pynvml.NVMLError as e:
            return None, None, [], [], "NVML cannot be used here (%s)" % e
        given = [t.strip() for t in (os.environ.get("GPUSPAWNER_GPU_UUIDS") or visible).split(",")
                 if t.strip()[:4] in ("GPU-", "MIG-")]
        found, unreadable = [], []
        try:
            driver = text(pynvml.nvmlSystemGetDriverVersion())
            cuda = pynvml.nvmlSystemGetCudaDriverVersion_v2()
            cuda = "%d.%d" % (cuda // 1000, cuda % 1000 // 10)
            for index in range(pynvml.nvmlDeviceGetCount()):
                try:
                    handle = pynvml.nvmlDeviceGetHandleByIndex(index)
                    uuid = text(pynvml.nvmlDeviceGetUUID(handle))
                    devices = [(handle, uuid)]
                    try:
                        mig_on = pynvml.nvmlDeviceGetMigMode(handle)[0] == 1
                    except pynvml.NVMLError:
                        mig_on = False
                    if mig_on:
                        devices = []
                        for slot in range(pynvml.nvmlDeviceGetMaxMigDeviceCount(handle)):
                            try:
                                mig = pynvml.nvmlDeviceGetMigDeviceHandleByIndex(handle, slot)
                            except pynvml.NVMLError:
                                continue
                            devices.append((mig, text(pynvml.nvmlDeviceGetUUID(mig))))
                    for device, device_uuid in devices:
                        if given and device_uuid not in given and uuid not in given:
                            continue
                        found.append((text(pynvml.nvmlDeviceGetName(device)), device_uuid))
                except pynvml.NVMLError as e:
                    unreadable.append("GPU %d: NVML cannot read it (%s)" % (index, e))
        except pynvml.NVMLError as e:
            return None, None, found, unreadable, "NVML cannot be queried (%s)" % e
        finally:
            try:
                pynvml.nvmlShutdown()
            except pynvml.NVMLError:
                pass
        return driver, cuda, found, unreadable, None

    driver, driver_cuda, nvml_seen, nvml_unreadable, nvml_problem = nvml_gpus()
    if nvml_problem is None:
        say("NVIDIA driver %s (supports CUDA up to %s); NVML sees %d GPU%s:" % (
            driver, driver_cuda, len(nvml_seen), "" if len(nvml_seen) == 1 else "s"))
        for name, uuid in nvml_seen:
            say("  %s (%s)" % (name, uuid))
        for line in nvml_unreadable:
            say("  %s" % line)
    elif not no_gpu_given:
        say("NVML: %s." % nvml_problem)
    seen_text = "NVML sees %s (%s; driver %s)" % (
        "the GPU" if len(nvml_seen) == 1 else "%d GPUs" % len(nvml_seen),
        ", ".join(name for name, _ in nvml_seen), driver) if nvml_seen else ""

    # a hub's server: its image is what the hub's catalog offers (and it may reach no package
    # index), so the way to PyTorch is another image from that catalog, not pip
    hub_server = bool(os.environ.get("JUPYTERHUB_API_URL"))
    pick_image = ("pick a PyTorch image from the hub's catalog: stop this server (File > Hub "
                  "Control Panel) and start it again with that image (if the catalog has none, "
                  "ask the hub's admin for one)")

    if importlib.util.find_spec("torch") is None:
        say("PyTorch is not installed in this kernel (%s)." % sys.executable)
        if no_gpu_given and not nvml_seen:
            say("This server has no GPU either: %s" % (given_reason or "GPU_LIMIT is 0."))
        seen = "%s, but PyTorch is not installed in this kernel: " % seen_text if nvml_seen else ""
        if hub_server:
            say("VERDICT: NO TORCH - %sthis server's image has no PyTorch; %s." % (
                seen, pick_image))
        else:
            say("VERDICT: NO TORCH - %sinstall a CUDA build of PyTorch into this environment "
                "(pip install torch) or switch to a kernel that has it, then run this cell again."
                % seen)
        return

    import torch

    say("torch        %s" % torch.__version__)
    say("CUDA build   %s" % (torch.version.cuda or "none: this is a CPU-only build of PyTorch"))
    if torch.version.cuda is None:
        say("VERDICT: NO CUDA DEVICE - this PyTorch is a CPU-only build; %s." % (
            pick_image.replace("a PyTorch image", "an image with a CUDA build of PyTorch")
            if hub_server else "install a CUDA build of PyTorch to use a GPU"))
        return
    cudnn = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
    say("cuDNN        %s" % (cudnn or "not available"))
    try:
        nccl = torch.cuda.nccl.version()
        nccl = ".".join(str(part) for part in nccl) if isinstance(nccl, tuple) else nccl
    except Exception as e:
        nccl = "not available (%s)" % e
    say("NCCL         %s" % nccl)

    if not torch.cuda.is_available():
        if nvml_seen:
            say("VERDICT: NO CUDA DEVICE - %s, but PyTorch cannot use it (CUDA %s build, "
                "driver %s supports CUDA up to %s). Restart the kernel; if it persists, use an "
                "image whose CUDA the driver supports." % (
                    seen_text, torch.version.cuda, driver, driver_cuda))
        elif no_gpu_given:
            why = given_reason or "no GPU was given to this server."
            say("VERDICT: NO CUDA DEVICE - %s Start a server with a GPU to use CUDA." % why)
        else:
            say("VERDICT: NO CUDA DEVICE - PyTorch sees no GPU although one may have been "
                "requested (NVIDIA_VISIBLE_DEVICES=%r). Check the GPU panel for the driver's "
                "view and restart the server if it persists." % visible)
        return

    count = torch.cuda.device_count()
    say("GPUs         %d" % count)
    for i in range(count):
        props = torch.cuda.get_device_properties(i)
        say("  cuda:%d     %s, %.1f GiB, compute capability %d.%d, %d SMs" % (
            i, props.name, props.total_memory / 2**30, props.major, props.minor,
            props.multi_processor_count))

    problems, warnings = [], []
    for i in range(count):
        device = torch.device("cuda", i)
        major, _minor = torch.cuda.get_device_capability(i)
        dtype = torch.bfloat16 if major >= 8 else torch.float16
        try:
            n, iterations = 4096, 20
            a = torch.randn(n, n, device=device, dtype=dtype)
            b = torch.randn(n, n, device=device, dtype=dtype)
            for _ in range(3):
                a @ b
            torch.cuda.synchronize(device)
            started = time.perf_counter()
            for _ in range(iterations):
                c = a @ b
            torch.cuda.synchronize(device)
            elapsed = time.perf_counter() - started
            if not torch.isfinite(c.float()).all():
                problems.append("matmul on cuda:%d gave non-finite numbers" % i)
            say("matmul       cuda:%d %dx%d %s: %.1f TFLOP/s" % (
                i, n, n, str(dtype).replace("torch.", ""), 2 * n**3 * iterations / elapsed / 1e12))
            del a, b, c
        except Exception as e:
            problems.append("matmul on cuda:%d failed: %s: %s" % (
                i, type(e).__name__, str(e).splitlines()[0] if str(e) else ""))

    try:
        def f(x):
            return torch.sin(x) * torch.cos(x) + x

        x = torch.randn(4096, device="cuda:0")
        started = time.perf_counter()
        y = torch.compile(f)(x)
        torch.cuda.synchronize()
        if torch.allclose(y, f(x), atol=1e-5):
            say("torch.compile OK (%.1f s to compile and run)" % (time.perf_counter() - started))
        else:
            warnings.append("torch.compile gave a different result from eager mode")
    except Exception as e:
        warnings.append("torch.compile failed: %s: %s" % (
            type(e).__name__, str(e).splitlines()[0] if str(e) else ""))

    if count >= 2:
        script = (
            "import sys, time, torch, torch.distributed as dist, torch.multiprocessing as mp\n"
            "def work(rank, port):\n"
            "    torch.cuda.set_device(rank)\n"
            "    dist.init_process_group('nccl', init_method='tcp://127.0.0.1:%d' % port,\n"
            "                            rank=rank, world_size=2)\n"
            "    t = torch.full((64 << 20,), float(rank + 1), device='cuda')\n"
            "    dist.all_reduce(t); torch.cuda.synchronize()\n"
            "    ok = bool((t == 3.0).all())\n"
            "    started = time.perf_counter()\n"
            "    for _ in range(5): dist.all_reduce(t)\n"
            "    torch.cuda.synchronize(); elapsed = (time.perf_counter() - started) / 5\n"
            "    if rank == 0:\n"
            "        print('OK' if ok else 'WRONG', '%.1f' % (t.numel() * 4 / elapsed / 1e9))\n"
            "    dist.destroy_process_group()\n"
            "if __name__ == '__main__':\n"
            "    mp.spawn(work, args=(int(sys.argv[1]),), nprocs=2)\n"
        )
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as fh:
            fh.write(script)
        try:
            run = subprocess.run([sys.executable, fh.name, str(port)], capture_output=True,
                                 text=True, timeout=300)
            words = (run.stdout.strip().splitlines() or [""])[-1].split()
            if run.returncode == 0 and words[:1] == ["OK"]:
                say("NCCL         all-reduce on cuda:0 and cuda:1 OK, %s GB/s" % words[1])
            else:
                tail = (run.stderr.strip().splitlines() or ["no output"])[-1]
                problems.append("NCCL all-reduce on two GPUs failed: %s" % tail)
        except subprocess.TimeoutExpired:
            problems.append("NCCL all-reduce on two GPUs did not finish in 300 s")
        finally:
            os.unlink(fh.name)

    for warning in warnings:
        say("warning: %s" % warning)
    if problems:
        say("VERDICT: PROBLEM - " + "; ".join(problems))
    else:
        say("VERDICT: OK - CUDA works on %d GPU%s%s." % (
            count, "" if count == 1 else "s", " (with warnings above)" if warnings else ""))


_gpuspawner_verify_cuda()
del _gpuspawner_verify_cuda
'''


def cell_source() -> str:
    """The code of the "Verify CUDA" cell."""
    return VERIFY_CELL
