"""The Docker container for one server, built from a dataclass with no I/O.

:func:`container_spec` returns the keyword arguments of docker-py's
``APIClient.create_container`` with ``host_config`` as a plain dict (the keyword
arguments of ``create_host_config``), so a test compares dicts and the spawner
passes them through.
"""

from dataclasses import dataclass, field

from ..policy.merge import deep_merge

# what every GPU server gets, whatever the admin's extra_host_config says
LOCKED_HOST_CONFIG = {
    "privileged": False,
    "cap_drop": ["ALL"],
    "security_opt": ["no-new-privileges"],
}
GPU_MODES = ("device-request", "runtime-env")


@dataclass(frozen=True)
class ContainerRequest:
    """Everything the container of one server depends on."""

    name: str
    image: str
    command: list[str]
    env: dict[str, str]
    labels: dict[str, str]
    port: int
    workspace_volume: str
    workspace_path: str
    user: str = "1000"
    gpu_uuids: tuple[str, ...] = ()
    # "device-request": a DeviceRequest naming the GPUs (Docker 19.03+ with the NVIDIA
    # Container Toolkit); "runtime-env": only NVIDIA_VISIBLE_DEVICES, for hosts whose
    # default runtime is nvidia.
    gpu_mode: str = "device-request"
    shm_size: str = "2g"
    mem_limit: int | None = None
    cpu_limit: float | None = None
    host_ip: str = "127.0.0.1"
    use_internal_ip: bool = False
    network_name: str = "bridge"
    binds: dict[str, dict] = field(default_factory=dict)  # DockerSpawner.volume_binds
    mounts: list = field(default_factory=list)  # DockerSpawner.mount_binds
    extra_create_kwargs: dict = field(default_factory=dict)
    extra_host_config: dict = field(default_factory=dict)



def device_requests(gpu_uuids: tuple[str, ...], gpu_mode: str) -> list[dict]:
    """The DeviceRequest that hands exactly these GPUs to the container."""
    if not gpu_uuids or gpu_mode != "device-request":
        return []
    return [{"Driver": "nvidia", "DeviceIDs": list(gpu_uuids), "Capabilities": [["gpu"]]}]


def container_spec(request: ContainerRequest) -> dict:
    """``create_container`` kwargs for one server's container."""
    binds = dict(request.binds)
    binds[request.workspace_volume] = {"bind": request.workspace_path, "mode": "rw"}
    host_config = {
        "binds": binds,
        "mounts": list(request.mounts),
        "shm_size": request.shm_size,
        "network_mode": request.network_name,
        "auto_remove": False,
        "device_requests": device_requests(request.gpu_uuids, request.gpu_mode),
    }
    if not request.use_internal_ip:
        host_config["port_bindings"] = {request.port: (request.host_ip,)}
    if request.mem_limit is not None:
        host_config["mem_limit"] = request.mem_limit
    if request.cpu_limit is not None:
        host_config["cpu_period"] = 100_000
        host_config["cpu_quota"] = int(request.cpu_limit * 100_000)
    host_config = deep_merge(deep_merge(host_config, request.extra_host_config), LOCKED_HOST_CONFIG)
    # the GPUs are the allocator's to give, never the admin's extras
    host_config["device_requests"] = device_requests(request.gpu_uuids, request.gpu_mode)

    create = {
        "image": request.image,
        "name": request.name,
        "command": list(request.command),
        "environment": dict(request.env),
        "labels": dict(request.labels),
        "ports": ["%d/tcp" % request.port],
        "volumes": sorted(bind["bind"] for bind in binds.values()),
    }
    create = deep_merge(create, request.extra_create_kwargs)
    create["user"] = request.user
    create["environment"] = dict(request.env)
    create["labels"] = dict(request.labels)
    create["host_config"] = host_config
    return create
