"""What this server adds to the container DockerSpawner builds (pure, no I/O).

DockerSpawner's ``create_object`` builds the ``create_container`` keyword arguments from
its own settings (image, command, ``volume_binds``, ``links``, memory and CPU limits with
the admin's ``cpu_period``, ports, network) merged with the admin's
``extra_create_kwargs`` / ``extra_host_config``. :func:`extend_create_kwargs` takes those
as they are and adds this server's part: the workspace volume, the GPUs, the labels that
record who holds them, the unprivileged user and the GPU environment. Last it applies
:data:`LOCKED_HOST_CONFIG` (in the engine API's names), so no admin extra can undo it.
"""

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

# what every GPU server gets, whatever DockerSpawner or the admin's extras say (API names)
LOCKED_HOST_CONFIG = {
    "Privileged": False,
    "CapDrop": ["ALL"],
    "SecurityOpt": ["no-new-privileges"],
    "AutoRemove": False,  # the spawner removes a stopped container itself, after reading it
}
GPU_MODES = ("device-request", "runtime-env")


@dataclass(frozen=True)
class ProfileLimits:
    """What a course profile sets on its container: limits in bytes and cores, and volumes
    as (source, path, read_only), ``{group}`` already filled in."""

    cpu_limit: float | None = None
    mem_limit: int | None = None
    shm_size: int | None = None
    volumes: tuple[tuple[str, str, bool], ...] = ()


@dataclass(frozen=True)
class ContainerRequest:
    """This server's part of its container."""

    labels: Mapping[str, str]
    gpu_env: Mapping[str, str]  # the GPU variables (lifecycle/env.py), over any admin extra
    workspace_volume: str
    workspace_path: str
    user: str = "1000"
    gpu_uuids: tuple[str, ...] = ()
    # "device-request": a DeviceRequest naming the GPUs (Docker 19.03+ with the NVIDIA
    # Container Toolkit); "runtime-env": only NVIDIA_VISIBLE_DEVICES, for hosts whose
    # default runtime is nvidia.
    gpu_mode: str = "device-request"
    shm_size: str = "2g"  # unless the admin's extra_host_config sets shm_size
    # a course profile's (policy/profiles.py), over DockerSpawner's and the admin's extras
    profile: ProfileLimits | None = None
    locked_host_config: Mapping = field(default_factory=lambda: dict(LOCKED_HOST_CONFIG))


def profile_host_config(host: dict, profile: ProfileLimits) -> dict:
    """``host`` (API names) with the profile's limits and volumes: NanoCpus replaces the
    CPU period and quota (the engine refuses both), Memory the memory limit (a swap
    limit below it is raised to it), ShmSize the /dev/shm size; a profile's volume
    replaces a bind at the same path."""
    host = dict(host)
    if profile.cpu_limit is not None:
        host.pop("CpuPeriod", None)
        host.pop("CpuQuota", None)
        host["NanoCpus"] = int(round(profile.cpu_limit * 1e9))
    if profile.mem_limit is not None:
        host["Memory"] = profile.mem_limit
        swap = host.get("MemorySwap")
        if isinstance(swap, int) and 0 < swap < profile.mem_limit:
            host["MemorySwap"] = profile.mem_limit
    if profile.shm_size is not None:
        host["ShmSize"] = profile.shm_size
    paths = {path for _, path, _ in profile.volumes}
    binds = [b for b in host.get("Binds") or () if (b.split(":") + [""])[1] not in paths]
    binds += ["%s:%s:%s" % (src, path, "ro" if ro else "rw") for src, path, ro in profile.volumes]
    host["Binds"] = binds
    return host


def device_requests(gpu_uuids: tuple[str, ...], gpu_mode: str) -> list[dict]:
    """The DeviceRequest (API form) that hands exactly these GPUs to the container."""
    if not gpu_uuids or gpu_mode != "device-request":
        return []
    return [
        {
            "Driver": "nvidia",
            "Count": 0,
            "DeviceIDs": list(gpu_uuids),
            "Capabilities": [["gpu"]],
            "Options": {},
        }
    ]


def size_bytes(size: str | int) -> int:
    """Docker's sizes ('2g', '512m', '1024k', '1000000') in bytes; the suffixes are binary."""
    if isinstance(size, int):
        return size
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([bkmg]?)b?\s*", str(size), re.IGNORECASE)
    if match is None:
        raise ValueError("%r is not a size such as '2g'." % (size,))
    power = "bkmg".index(match.group(2).lower() or "b")
    return int(float(match.group(1)) * 1024**power)


def _environment(value) -> dict:
    """``environment`` as a dict, whether DockerSpawner/the admin gave a dict or "K=V" lines."""
    if isinstance(value, Mapping):
        return dict(value)
    return dict(line.split("=", 1) if "=" in line else (line, "") for line in value or ())


def extend_create_kwargs(parent: Mapping, request: ContainerRequest) -> dict:
    """DockerSpawner's ``create_container`` kwargs with this server's part added."""
    create = dict(parent)
    create["environment"] = {**_environment(parent.get("environment")), **request.gpu_env}
    create["labels"] = {**dict(parent.get("labels") or {}), **request.labels}
    create["user"] = request.user
    paths = {request.workspace_path}
    if request.profile is not None:
        paths |= {path for _, path, _ in request.profile.volumes}
    create["volumes"] = sorted(set(parent.get("volumes") or ()) | paths)
    host = dict(parent.get("host_config") or {})
    workspace = "%s:%s:rw" % (request.workspace_volume, request.workspace_path)
    host["Binds"] = [b for b in host.get("Binds") or () if b != workspace] + [workspace]
    host.setdefault("ShmSize", size_bytes(request.shm_size))
    if request.profile is not None:
        host = profile_host_config(host, request.profile)
    # the GPUs are the allocator's to give, never DockerSpawner's or the admin's extras
    host["DeviceRequests"] = device_requests(request.gpu_uuids, request.gpu_mode)
    host.update({key: value for key, value in request.locked_host_config.items()})
    create["host_config"] = host
    return create
