"""The environment that tells a server which GPUs it holds: the one writer of it.

Environment variables are the only contract between the hub and the container (the lab
extension and the "verify CUDA" cell read them). :func:`gpu_env` writes all of them, for
every backend; :func:`lock_visible_devices` applies the same rule again to an engine
object's final environment, so no admin extra or image default can widen it.

========================== ===================================================
``GPU_LIMIT``              how many GPUs this server holds
``GPUSPAWNER_GPU_UUIDS``   their UUIDs (empty when none, or when the engine picks them)
``NVIDIA_VISIBLE_DEVICES`` the UUIDs; ``void`` without GPUs; unset where the device plugin
                           sets it (Kubernetes)
``NVIDIA_DRIVER_CAPABILITIES`` ``compute,utility`` with GPUs
``GPUSPAWNER_GPU_RESOURCE`` the extended resource, where the engine picks the devices
``GPUSPAWNER_NO_GPU_REASON`` why there is no GPU, for a server without one
``GPUSPAWNER_GPU_SHARED_BY`` for a slot of a shared GPU: how many servers may hold that
                           GPU at once (its memory is not isolated unless MPS limits it)
``GPUSPAWNER_GPU_SHARE_MODE`` for a slot: ``time-sliced`` or ``mps``
``CUDA_MPS_ACTIVE_THREAD_PERCENTAGE`` ``mps`` mode: the slot's share of the GPU's SMs
                           (100/N, rounded down), as NVIDIA's MPS client reads it
``CUDA_MPS_PINNED_DEVICE_MEM_LIMIT`` ``mps`` mode: ``0=<MiB/N>M``, the memory the slot's
                           server may allocate on its device (ordinal 0: it sees one GPU);
                           left out where the GPU's memory is not known
========================== ===================================================
"""

from collections.abc import Mapping, Sequence

from ..policy.inventory import Gpu

VISIBLE = "NVIDIA_VISIBLE_DEVICES"
NO_DEVICES = "void"


def gpu_env(
    gpus: Sequence[Gpu],
    no_gpu_reason: str,
    *,
    engine_picks_devices: bool = False,
    share_mode: str = "time-sliced",
) -> dict:
    """The GPU variables of a server holding ``gpus``.

    ``engine_picks_devices``: the devices are the device plugin's to name (Kubernetes); the
    hub says how many and which resource, never which UUIDs. ``share_mode``: how a slot of a
    shared GPU shares it, "time-sliced" or "mps" (CUDA MPS limits per server).
    """
    env = {"GPU_LIMIT": str(len(gpus))}
    if not gpus:
        env.update({"GPUSPAWNER_GPU_UUIDS": "", VISIBLE: NO_DEVICES})
        env["GPUSPAWNER_NO_GPU_REASON"] = no_gpu_reason
        return env
    env["NVIDIA_DRIVER_CAPABILITIES"] = "compute,utility"
    if engine_picks_devices:
        env["GPUSPAWNER_GPU_RESOURCE"] = gpus[0].resource
    else:
        uuids = ",".join(gpu.uuid for gpu in gpus)
        env.update({"GPUSPAWNER_GPU_UUIDS": uuids, VISIBLE: uuids})
    env.update(slot_env(gpus, share_mode))
    return env


def slot_env(gpus: Sequence[Gpu], share_mode: str) -> dict:
    """The variables of a slot of a shared GPU (none for whole GPUs)."""
    if len(gpus) != 1 or not gpus[0].is_shared:
        return {}
    gpu = gpus[0]
    env = {"GPUSPAWNER_GPU_SHARED_BY": str(gpu.shared_by), "GPUSPAWNER_GPU_SHARE_MODE": share_mode}
    if share_mode == "mps":
        env["CUDA_MPS_ACTIVE_THREAD_PERCENTAGE"] = str(100 // gpu.shared_by)
        if gpu.memory_mib:
            env["CUDA_MPS_PINNED_DEVICE_MEM_LIMIT"] = "0=%dM" % (gpu.memory_mib // gpu.shared_by)
    return env


def lock_visible_devices(env: Mapping[str, str], gpu_count: int) -> dict:
    """``env`` with NVIDIA_VISIBLE_DEVICES as :func:`gpu_env` rules it where the engine picks
    the devices: unset with GPUs (the device plugin's value must win), ``void`` without (an
    image or a default nvidia runtime must not hand every GPU to a CPU-only server)."""
    locked = dict(env)
    if gpu_count:
        locked.pop(VISIBLE, None)
    else:
        locked[VISIBLE] = NO_DEVICES
    return locked
