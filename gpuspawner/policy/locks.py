"""What an admin's extra engine settings may not do to a server (pure).

``extra_host_config`` (Docker) and ``extra_container_config``/``extra_pod_config`` (and the
containers in ``extra_containers``/``init_containers``) on Kubernetes are passed to the engine.
Some of their keys would hand a server GPUs behind the allocator's back or give it privileges
over the host or other users' servers. Each function returns one sentence per such key; the
spawner refuses them (a start-up error for a static setting, a refused spawn for a callable
one) unless the admin sets ``allow_unsafe_host_config`` / ``allow_unsafe_pod_config``.

What is enforced whatever the setting (the spec builders' locks): Docker: not privileged,
all capabilities dropped, no-new-privileges, the DeviceRequest is the allocator's; Kubernetes:
not privileged, no privilege escalation, non-root, all capabilities dropped, GPU resources
and NVIDIA_VISIBLE_DEVICES are the spawner's.
"""

from collections.abc import Iterable, Mapping

HOST_NAMESPACES = ("pid_mode", "ipc_mode", "network_mode", "userns_mode", "uts_mode", "cgroupns")
NVIDIA_DEVICE_PREFIX = "/dev/nvidia"
UNDOING_SECURITY_OPTS = (
    "no-new-privileges:false",
    "no-new-privileges=false",
    "seccomp=unconfined",
    "seccomp:unconfined",
    "apparmor=unconfined",
    "apparmor:unconfined",
    "label=disable",
    "label:disable",
    "systempaths=unconfined",
)
GPU_ENV = ("NVIDIA_VISIBLE_DEVICES", "CUDA_VISIBLE_DEVICES", "NVIDIA_DRIVER_CAPABILITIES")
GPU_RESOURCE_PREFIXES = ("nvidia.com/", "amd.com/", "gpu.intel.com/")


def _device_paths(device) -> list[str]:
    """Host and container paths of a Docker device mapping ('host[:container[:perms]]' or dict)."""
    if isinstance(device, Mapping):
        return [str(device.get(k, "")) for k in ("PathOnHost", "PathInContainer")]
    return str(device).split(":")[:2]


def host_config_violations(extra: Mapping) -> list[str]:
    """What in a Docker ``extra_host_config`` gives a server more than the allocator and the
    locks allow, one sentence per key."""
    found = []
    if extra.get("privileged"):
        found.append("privileged: a privileged container sees every GPU and device of the host")
    if extra.get("cap_add"):
        found.append(
            "cap_add %s: servers run with all capabilities dropped" % list(extra["cap_add"])
        )
    for key in HOST_NAMESPACES:
        value = str(extra.get(key) or "")
        if value == "host" or value.startswith("container:"):
            found.append("%s %r: servers do not share the host's or another container's "
                         "namespaces" % (key, value))  # fmt: skip
    nvidia = [d for d in extra.get("devices") or () if any(
        p.startswith(NVIDIA_DEVICE_PREFIX) for p in _device_paths(d))]  # fmt: skip
    if nvidia:
        found.append("devices %s: GPUs are handed out by the allocator, by UUID" % nvidia)
    if extra.get("device_requests"):
        found.append("device_requests: GPUs are handed out by the allocator, by UUID")
    if extra.get("device_cgroup_rules"):
        found.append("device_cgroup_rules: servers get no device access beyond their GPUs")
    if extra.get("runtime"):
        found.append(
            "runtime %r: the runtime decides which GPUs a container sees" % extra["runtime"]
        )
    undoing = [o for o in extra.get("security_opt") or () if str(o).replace(" ", "").lower()
               in UNDOING_SECURITY_OPTS]  # fmt: skip
    if undoing:
        found.append("security_opt %s: servers keep no-new-privileges, seccomp and AppArmor"
                     % undoing)  # fmt: skip
    if extra.get("volumes_from"):
        found.append("volumes_from: a server would mount another container's volumes")
    return found


def _is_gpu_resource(name: str) -> bool:
    return str(name).startswith(GPU_RESOURCE_PREFIXES)


def container_violations(container: Mapping, where: str) -> list[str]:
    """What in a Kubernetes container (or ``extra_container_config``) is not allowed."""
    found = []
    security = container.get("securityContext") or {}
    if security.get("privileged"):
        found.append("%s securityContext.privileged" % where)
    if security.get("allowPrivilegeEscalation"):
        found.append("%s securityContext.allowPrivilegeEscalation" % where)
    if security.get("runAsUser") == 0 or security.get("runAsNonRoot") is False:
        found.append("%s securityContext runs as root" % where)
    if (security.get("capabilities") or {}).get("add"):
        found.append("%s securityContext.capabilities.add %s"
                     % (where, list(security["capabilities"]["add"])))  # fmt: skip
    resources = container.get("resources") or {}
    gpus = sorted({name for kind in ("limits", "requests") for name in resources.get(kind) or {}
                   if _is_gpu_resource(name)})  # fmt: skip
    if gpus:
        found.append("%s resources %s: GPUs are the spawner's to ask for" % (where, gpus))
    env = [e.get("name") for e in container.get("env") or () if isinstance(e, Mapping)]
    if any(name in GPU_ENV for name in env):
        found.append("%s env %s: which GPUs a server sees is the spawner's to say"
                     % (where, [n for n in env if n in GPU_ENV]))  # fmt: skip
    return found


def init_container_violations(container: Mapping, where: str) -> list[str]:
    """What in a Kubernetes init container is not allowed: GPU resources and the GPU
    environment. Its privileges are not judged: an init container runs the admin's image
    and command to completion before the server starts, no user code (z2jh's
    block-cloud-metadata runs iptables as root, privileged, with NET_ADMIN)."""
    judged = {key: container[key] for key in ("resources", "env") if key in container}
    return container_violations(judged, where)


def pod_violations(
    extra_container_config: Mapping,
    extra_pod_config: Mapping,
    extra_containers: Iterable[Mapping] = (),
    init_containers: Iterable[Mapping] = (),
) -> list[str]:
    """What in the Kubernetes extras gives a server more than the spawner and the locks allow."""
    found = container_violations(extra_container_config or {}, "extra_container_config")
    pod = extra_pod_config or {}
    for key in ("hostPID", "hostIPC", "hostNetwork"):
        if pod.get(key):
            found.append("extra_pod_config.%s: servers do not share the node's namespaces" % key)
    security = pod.get("securityContext") or {}
    if security.get("runAsUser") == 0 or security.get("runAsNonRoot") is False:
        found.append("extra_pod_config.securityContext runs as root")
    host_paths = [v.get("name") for v in pod.get("volumes") or ()
                  if isinstance(v, Mapping) and "hostPath" in v]  # fmt: skip
    if host_paths:
        found.append("extra_pod_config.volumes %s: hostPath volumes reach the node's files"
                     % host_paths)  # fmt: skip
    for key in ("containers", "initContainers", "ephemeralContainers"):
        for container in pod.get(key) or ():
            found += container_violations(container, "extra_pod_config.%s" % key)
    for where, containers in (("extra_containers", extra_containers),
                              ("init_containers", init_containers)):  # fmt: skip
        for container in containers or ():
            found += container_violations(container, where)
    return found


def refusal(setting_names: str, opt_out: str, violations: list[str]) -> str:
    """The sentence an admin reads for locked keys."""
    return (
        "%s may not: %s. Remove these keys, or set %s = True to run servers that may "
        "escape the GPU allocation and the host's protections." % (
            setting_names, "; ".join(violations), opt_out)
    )  # fmt: skip
