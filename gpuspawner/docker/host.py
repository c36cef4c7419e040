"""What this hub's Docker host can do: the GPUs it can attach and the images it can start.

Read at hub start (:func:`gpuspawner.config.check_config` logs it) and again at each resync
of the GPU holdings, so the spawn form offers only what can work:

- GPUs: the inventory (declared, or found with NVML) and, in the "device-request" mode,
  whether the engine can attach GPUs at all. The engine says so only when asked to: a GPU
  DeviceRequest is accepted at ``create`` and refused at ``start`` ("could not select device
  driver") by an engine without NVIDIA's device driver (the NVIDIA Container Toolkit's hook
  on dockerd's PATH when it started). :func:`probe_gpu_attach` starts one throw-away
  container asking for no device (``NVIDIA_VISIBLE_DEVICES=void``, no network) to find out.
- Images: whether each catalog image is on this host; if not, whether the first start pulls
  it (its registry answers for it) or it cannot be pulled from here (then it is not offered).

The decisions (:func:`gpu_support_from`, :func:`image_status`) are pure; the two readers
take a docker ``APIClient`` and block, so async callers run them in a thread.
"""

import secrets
from dataclasses import dataclass

from docker.errors import APIError, NotFound
from docker.types import DeviceRequest

from .pull import classify_pull_error, registry_of

LABEL_PROBE = "gpuspawner.probe"
NO_DEVICE_DRIVER = "could not select device driver"
PULLING_POLICIES = ("ifnotpresent", "always")


@dataclass(frozen=True)
class GpuSupport:
    """Whether the engine can attach GPUs to containers; ``attachable`` None: not known."""

    attachable: bool | None
    detail: str  # what the engine said, or why it is not known
    runtimes: tuple[str, ...] = ()

    def reason(self) -> str:
        """Why GPUs are not offered, for the form and the API (only when not attachable)."""
        return (
            "This hub's Docker engine cannot attach GPUs to servers: it has no NVIDIA device"
            " driver (the NVIDIA Container Toolkit is not set up for Docker), so servers run"
            " on the CPU only. Ask an admin."
        )

    def log_text(self) -> str:
        runtimes = ", ".join(self.runtimes) or "none listed"
        if self.attachable:
            return "the engine can attach GPUs (runtimes: %s)" % runtimes
        if self.attachable is None:
            return "cannot tell whether the engine can attach GPUs: %s (runtimes: %s)" % (
                self.detail,
                runtimes,
            )
        return (
            "the engine cannot attach GPUs: GPUs are not offered; install the NVIDIA Container"
            " Toolkit and restart dockerd (Docker said: %s; runtimes: %s)" % (self.detail, runtimes)
        )


def gpu_support_from(error_text: str | None, runtimes=()) -> GpuSupport:
    """The probe's outcome: ``error_text`` None when its container started."""
    runtimes = tuple(sorted(runtimes))
    if error_text is None:
        return GpuSupport(True, "a container asking for GPUs started", runtimes)
    if NO_DEVICE_DRIVER in error_text:
        return GpuSupport(False, error_text.strip(), runtimes)
    return GpuSupport(None, error_text.strip(), runtimes)


def probe_gpu_attach(client, image: str, prefix: str) -> GpuSupport:
    """Start one container that asks the engine for GPUs (and gets none): the answer says
    whether the engine has NVIDIA's device driver. Removed at once, whatever happens."""
    try:
        runtimes = tuple((client.info().get("Runtimes") or {}).keys())
    except APIError:
        runtimes = ()
    host_config = client.create_host_config(
        device_requests=[DeviceRequest(driver="nvidia", count=0, capabilities=[["gpu"]])],
        network_mode="none",
        cap_drop=["ALL"],
        security_opt=["no-new-privileges"],
    )
    name = "%s-gpu-probe-%s" % (prefix, secrets.token_hex(4))
    try:
        container = client.create_container(
            image,
            command=["true"],
            entrypoint=[],
            name=name,
            user="65534",
            environment={"NVIDIA_VISIBLE_DEVICES": "void"},
            labels={LABEL_PROBE: "gpu"},
            host_config=host_config,
        )
    except APIError as e:
        return GpuSupport(None, "the probe container could not be created: %s" % said(e), runtimes)
    try:
        client.start(container["Id"])
        error = None
    except APIError as e:
        error = said(e)
    finally:
        try:
            client.remove_container(container["Id"], force=True)
        except APIError:
            pass
    return gpu_support_from(error, runtimes)


def said(error: Exception) -> str:
    return str(getattr(error, "explanation", "") or error)


# --- images ---


@dataclass(frozen=True)
class ImageStatus:
    """One catalog image on this host: present, pulled at its first start, or never startable."""

    key: str
    present: bool
    startable: bool
    note: str  # what the form says next to it
    problem: str = ""  # why it is not offered (when not startable)


def image_status(
    key: str,
    display_name: str,
    image: str,
    *,
    present: bool,
    pull_policy: str,
    registry_error: str | None = None,
) -> ImageStatus:
    """What the form says of an image: ``registry_error`` is what the engine said when asked
    for the image's manifest (None: the registry has it; only read when it is not present)."""
    if present:
        return ImageStatus(key, True, True, "on this host")
    registry = registry_of(image)
    if pull_policy.lower() not in PULLING_POLICIES:
        problem = (
            "The image %s of %r is not on this Docker host, and this hub does not pull images"
            " (pull_policy %r). Ask an admin to pull or build it."
            % (image, display_name, pull_policy)
        )
        return ImageStatus(key, False, False, "not on this host", problem)
    if registry_error is None:
        return ImageStatus(
            key, False, True, "not on this host yet: the first start pulls it from %s" % registry
        )
    kind = classify_pull_error(registry_error)
    if kind == "other":  # the registry answered something else: let the pull say what
        return ImageStatus(
            key,
            False,
            True,
            "not on this host yet: the first start tries to pull it from %s" % registry,
        )
    why = {
        "unreachable": "the registry %s cannot be reached from here" % registry,
        "missing": "the registry %s does not have it" % registry,
        "denied": "this host lacks the credentials for the registry %s" % registry,
    }[kind]
    problem = (
        "The image %s of %r is not on this Docker host and cannot be pulled: %s (Docker said: %s)."
        " Ask an admin to pull or build it."
        % (image, display_name, why, registry_error.strip().rstrip("."))
    )
    return ImageStatus(key, False, False, "not on this host, and %s" % why, problem)


def read_image_status(client, catalog, pull_policy: str) -> dict[str, ImageStatus]:
    """Each catalog image's status on the engine behind ``client`` (asks registries only for
    images that are not here and may be pulled)."""
    statuses = {}
    for image in catalog:
        try:
            client.inspect_image(image.image)
            present = True
        except NotFound:
            present = False
        error = None
        if not present and pull_policy.lower() in PULLING_POLICIES:
            try:
                client.inspect_distribution(image.image)
            except APIError as e:
                error = said(e)
        statuses[image.key] = image_status(
            image.key,
            image.display_name,
            image.image,
            present=present,
            pull_policy=pull_policy,
            registry_error=error,
        )
    return statuses
