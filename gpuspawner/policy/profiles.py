"""Course profiles: named bundles of image, GPUs, size, volumes and environment (pure).

Admins write them as a dict keyed by what users pick, in the order the form shows them::

    c.GPUDockerSpawner.profiles = {
        "cs231n-lab": {
            "display_name": "CS231n lab session",
            "description": "A slot of a shared T4, for the weekly labs.",
            "image": "pytorch-2.9",          # a key of the image catalog
            "shared": True,                   # a slot of a shared GPU (one GPU's share)
            "gpu_type": "T4",
            "cpu_limit": 2, "mem_limit": "8G", "shm_size": "1G",
            "volumes": [
                {"source": "cs231n-data", "path": "/data/cs231n"},  # read-only
                {"source": "cs231n-scratch-{group}", "path": "/scratch", "read_only": False},
            ],
            "environment": {"COURSE": "cs231n"},
            "gpu_max_age": 3 * 3600, "gpu_idle_timeout": 1800,
            "groups": ["cs231n"],
        },
    }

A profile decides what a spawn gets: a user picks a profile, never its image or GPU count.
``gpus`` whole GPUs (of ``gpu_type``, matched in the GPU's name, e.g. "A100"), or a MIG
slice (``mig``: a MIG profile such as "1g.10gb"; on Docker the MIG instances whose name
holds it, as NVML names them, "NVIDIA A100-SXM4-40GB MIG 1g.10gb"; on Kubernetes the
resource ``nvidia.com/mig-1g.10gb``), or with ``shared`` one slot of a shared GPU (see
``Gpu.shared_by``). A volume's ``source`` is a Docker named volume or an absolute host
path, or a Kubernetes PersistentVolumeClaim; volumes are read-only unless ``read_only`` is
false, and a writable one must be per group: its source holds ``{group}``, the first of
the profile's groups (in the order written) the user is in.

Everything here is pure: :func:`parse_profiles` raises :class:`ConfigError` with a sentence.
"""

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from ..errors import ConfigError, check_fields
from .catalog import KEY_PATTERN, CatalogImage

FIELDS = {
    "display_name", "description", "image", "gpus", "gpu_type", "mig", "shared",
    "cpu_limit", "mem_limit", "shm_size", "volumes", "environment", "gpu_max_age",
    "gpu_idle_timeout", "groups",
}  # fmt: skip
VOLUME_FIELDS = {"source", "path", "read_only"}
GROUP_PLACEHOLDER = "{group}"
MIG_PATTERN = re.compile(r"^[1-8]g\.[0-9]+gb$")
SIZE_PATTERN = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(i?)b?\s*$", re.IGNORECASE)
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
VOLUME_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")  # Docker volumes; PVC names fit it
MOUNT_PATH = re.compile(r"^/[^\s:]*$")
# where a profile's volume may not go: the system, and the user's workspace is its own mount
RESERVED_PATHS = ("/", "/bin", "/dev", "/etc", "/lib", "/proc", "/sbin", "/sys", "/usr")


@dataclass(frozen=True)
class ProfileVolume:
    """A volume a profile mounts: a course dataset (read-only) or a group's scratch."""

    source: str  # Docker: a named volume or an absolute host path; Kubernetes: a PVC name
    path: str  # where it is mounted in the server
    read_only: bool = True

    @property
    def per_group(self) -> bool:
        return GROUP_PLACEHOLDER in self.source

    @property
    def is_host_path(self) -> bool:
        return self.source.startswith("/")

    def source_for(self, group: str) -> str:
        """The source with ``{group}`` replaced by the user's group."""
        return self.source.replace(GROUP_PLACEHOLDER, group)


@dataclass(frozen=True)
class Profile:
    """One course profile users may pick."""

    key: str
    display_name: str
    description: str = ""
    image: str = ""  # a catalog key; empty: the user's default image
    gpus: int = 0  # whole GPUs, or 1 with ``shared`` (a slot) or ``mig`` (a slice)
    gpu_type: str = ""  # only GPUs whose name holds it ("A100", "T4"); empty: any
    mig: str = ""  # a MIG profile ("1g.10gb"): a MIG slice instead of whole GPUs
    shared: bool = False  # a slot of a shared GPU
    cpu_limit: float | None = None  # cores
    mem_limit: int | None = None  # bytes
    shm_size: int | None = None  # bytes of /dev/shm; None: the spawner's shm_size
    volumes: tuple[ProfileVolume, ...] = ()
    environment: Mapping[str, str] = field(default_factory=dict)
    gpu_max_age: float | None = None  # seconds; None: the spawner's gpu_max_age
    gpu_idle_timeout: float | None = None  # seconds; None: the spawner's gpu_idle_timeout
    groups: tuple[str, ...] = ()  # who may pick it (in the order written); empty: everyone

    def allowed_for(self, user_groups: Iterable[str]) -> bool:
        """Whether a member of ``user_groups`` may pick this profile (no groups: everyone)."""
        return not self.groups or not set(self.groups).isdisjoint(user_groups)

    @property
    def choice_gpu_type(self) -> str:
        """What the GPUs' names must hold (``SpawnChoice.gpu_type``): the MIG profile for a
        MIG slice, else ``gpu_type``."""
        return self.mig or self.gpu_type

    @property
    def holds_gpu(self) -> bool:
        return self.gpus > 0

    def scratch_group(self, user_groups: Iterable[str]) -> str:
        """The group a per-group volume is named for: the first of the profile's groups the
        user is in ("" when the profile has no groups or the user is in none)."""
        user_groups = set(user_groups)
        return next((g for g in self.groups if g in user_groups), "")

    def mounts_for(self, user_groups: Iterable[str]) -> tuple[ProfileVolume, ...]:
        """The volumes of a member of ``user_groups``, their ``{group}`` filled in."""
        group = self.scratch_group(user_groups)
        return tuple(
            ProfileVolume(v.source_for(group), v.path, v.read_only) for v in self.volumes
        )

    def kind_text(self) -> str:
        """What the profile holds, in words: 'a shared T4 slot', '1 A100', 'a MIG 1g.10gb
        slice', 'no GPU'."""
        if not self.gpus:
            return "no GPU"
        if self.mig:
            return "a MIG %s slice" % self.mig
        kind = self.gpu_type or "GPU"
        if self.shared:
            return "a slot of a shared %s" % kind
        if self.gpu_type:
            return "1 %s" % kind if self.gpus == 1 else "%d %s GPUs" % (self.gpus, kind)
        return "1 GPU" if self.gpus == 1 else "%d GPUs" % self.gpus


def parse_size(where: str, name: str, value) -> int | None:
    """A size ('8G', '512M', '8Gi', '1.5g', a number of bytes) in bytes; suffixes are binary."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise ConfigError("%s: %r must be a size such as '8G', not %r." % (where, name, value))
    if isinstance(value, int):
        number, power = value, 0
    else:
        match = SIZE_PATTERN.match(value) if isinstance(value, str) else None
        if match is None:
            raise ConfigError(
                "%s: %r must be a size such as '8G' or '512M', not %r." % (where, name, value)
            )
        number, power = float(match.group(1)), " kmgt".index(match.group(2).lower() or " ")
    size = int(number * 1024**power)
    if size <= 0:
        raise ConfigError("%s: %r must be more than 0, not %r." % (where, name, value))
    return size


def _seconds(where: str, name: str, value) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise ConfigError(
            "%s: %r must be a number of seconds, 0 or more (0: none), not %r."
            % (where, name, value)
        )
    return float(value)


def _text(where: str, entry: Mapping, name: str) -> str:
    value = entry.get(name, "")
    if not isinstance(value, str):
        raise ConfigError("%s: %r must be text, not %r." % (where, name, value))
    return value


def _volume(where: str, entry) -> ProfileVolume:
    if not isinstance(entry, Mapping):
        raise ConfigError(
            "%s must be a dict such as {'source': 'course-data', 'path': '/data'}, not %r."
            % (where, entry)
        )
    check_fields(where, entry, VOLUME_FIELDS)
    source, path = entry.get("source"), entry.get("path")
    if not isinstance(source, str) or not source:
        raise ConfigError(
            "%s needs a 'source': a volume (or claim) name, or an absolute host path." % where
        )
    named = source.replace(GROUP_PLACEHOLDER, "group")
    if not (VOLUME_NAME.match(named) or MOUNT_PATH.match(named)) or source.count("{") != (
        source.count(GROUP_PLACEHOLDER)
    ):
        raise ConfigError(
            "%s: source %r is neither a volume name (letters, digits, '_', '.', '-'; {group}"
            " for the user's group) nor an absolute host path." % (where, source)
        )
    if not isinstance(path, str) or not MOUNT_PATH.match(path) or "/.." in path + "/":
        raise ConfigError(
            "%s: 'path' must be an absolute path in the server such as '/data/course',"
            " not %r." % (where, path)
        )
    path = path.rstrip("/") or "/"
    if path in RESERVED_PATHS or path == "/dev/shm":
        raise ConfigError("%s: a volume cannot be mounted at %s." % (where, path))
    read_only = entry.get("read_only", True)
    if not isinstance(read_only, bool):
        raise ConfigError("%s: 'read_only' must be true or false, not %r." % (where, read_only))
    if not read_only and GROUP_PLACEHOLDER not in source:
        raise ConfigError(
            "%s: a writable volume must be per group: put {group} in its source (e.g."
            " 'scratch-{group}'), or make it read_only." % where
        )
    return ProfileVolume(source=source, path=path, read_only=read_only)


def _entry(key, entry, catalog_keys: set[str]) -> Profile:
    where = "profiles[%r]" % (key,)
    if not isinstance(key, str) or not KEY_PATTERN.match(key):
        raise ConfigError(
            "%s: a profile key must be 1-63 lower-case letters, digits, '.', '_' or '-',"
            " starting with a letter or digit." % where
        )
    if not isinstance(entry, Mapping):
        raise ConfigError("%s must be a dict of the profile's settings." % where)
    check_fields(where, entry, FIELDS)
    display_name = _text(where, entry, "display_name") or key
    description = _text(where, entry, "description")
    image = _text(where, entry, "image")
    if image and image not in catalog_keys:
        raise ConfigError(
            "%s: image %r is not a key of the image catalog (images); the keys are: %s."
            % (where, image, ", ".join(sorted(catalog_keys)))
        )
    shared = entry.get("shared", False)
    if not isinstance(shared, bool):
        raise ConfigError("%s: 'shared' must be true or false, not %r." % (where, shared))
    gpu_type = _text(where, entry, "gpu_type").strip()
    mig = _text(where, entry, "mig").strip()
    if mig and not MIG_PATTERN.match(mig):
        raise ConfigError(
            "%s: 'mig' must be a MIG profile such as '1g.10gb', not %r." % (where, mig)
        )
    gpus = entry.get("gpus", 1 if shared or mig else 0)
    if isinstance(gpus, bool) or not isinstance(gpus, int) or gpus < 0:
        raise ConfigError("%s: 'gpus' must be a whole number, 0 or more, not %r." % (where, gpus))
    if shared and mig:
        raise ConfigError("%s: a profile is either 'shared' or a 'mig' slice, not both." % where)
    if mig and gpu_type:
        raise ConfigError(
            "%s: give 'mig' or 'gpu_type', not both: the MIG profile %r names the slice."
            % (where, mig)
        )
    if (shared or mig) and gpus != 1:
        raise ConfigError(
            "%s: a %s profile holds 1 %s, not %d ('gpus')."
            % (where, "shared" if shared else "MIG", "slot" if shared else "slice", gpus)
        )
    if gpu_type and not gpus:
        raise ConfigError(
            "%s: 'gpu_type' %r needs 'gpus' (1 or more) or 'shared'." % (where, gpu_type)
        )
    cpu_limit = entry.get("cpu_limit")
    if cpu_limit is not None and (
        isinstance(cpu_limit, bool) or not isinstance(cpu_limit, (int, float)) or cpu_limit <= 0
    ):
        raise ConfigError(
            "%s: 'cpu_limit' must be a number of cores more than 0, such as 2 or 0.5, not %r."
            % (where, cpu_limit)
        )
    volumes_entry = entry.get("volumes", ())
    if isinstance(volumes_entry, (str, bytes, Mapping)) or not isinstance(
        volumes_entry, Sequence
    ):
        raise ConfigError("%s: 'volumes' must be a list of {'source', 'path'} dicts." % where)
    volumes = tuple(
        _volume("%s['volumes'][%d]" % (where, i), v) for i, v in enumerate(volumes_entry)
    )
    paths = [v.path for v in volumes]
    for path in paths:
        if paths.count(path) > 1:
            raise ConfigError("%s: two volumes are mounted at %s." % (where, path))
    environment = entry.get("environment", {})
    if not isinstance(environment, Mapping) or not all(
        isinstance(k, str) and ENV_NAME.match(k) and isinstance(v, str)
        for k, v in environment.items()
    ):
        raise ConfigError(
            "%s: 'environment' must map variable names (letters, digits, '_') to text,"
            " e.g. {'COURSE': 'cs231n'}." % where
        )
    groups = entry.get("groups", ())
    if isinstance(groups, str) or not isinstance(groups, Sequence) or not all(
        isinstance(g, str) and g for g in groups
    ):
        raise ConfigError("%s: 'groups' must be a list of group names." % where)
    if any(v.per_group for v in volumes) and not groups:
        raise ConfigError(
            "%s: a volume named per {group} needs the profile's 'groups' (whose group it is)."
            % where
        )
    return Profile(
        key=key,
        display_name=display_name,
        description=description,
        image=image,
        gpus=gpus,
        gpu_type=gpu_type,
        mig=mig,
        shared=shared,
        cpu_limit=float(cpu_limit) if cpu_limit is not None else None,
        mem_limit=parse_size(where, "mem_limit", entry.get("mem_limit")),
        shm_size=parse_size(where, "shm_size", entry.get("shm_size")),
        volumes=volumes,
        environment=dict(environment),
        gpu_max_age=_seconds(where, "gpu_max_age", entry.get("gpu_max_age")),
        gpu_idle_timeout=_seconds(where, "gpu_idle_timeout", entry.get("gpu_idle_timeout")),
        groups=tuple(dict.fromkeys(groups)),
    )


def parse_profiles(
    entries: Mapping, catalog: Sequence[CatalogImage], *, max_gpus: int | None = None
) -> tuple[Profile, ...]:
    """Check the admin's profiles against the catalog; return them in the order written.

    ``max_gpus``: the spawner's ``max_gpus_per_server``, which no profile may exceed."""
    if not isinstance(entries, Mapping):
        raise ConfigError("profiles must be a dict of profile key to profile settings.")
    keys = {image.key for image in catalog}
    profiles = tuple(_entry(key, entry, keys) for key, entry in entries.items())
    for profile in profiles:
        if max_gpus is not None and profile.gpus > max_gpus:
            raise ConfigError(
                "profiles[%r]: %d GPUs is more than max_gpus_per_server (%d)."
                % (profile.key, profile.gpus, max_gpus)
            )
        image = next((i for i in catalog if i.key == profile.image), None)
        if image is not None and profile.groups and image.groups:
            if not image.groups.intersection(profile.groups):
                raise ConfigError(
                    "profiles[%r]: none of its groups (%s) may start its image %r (groups %s)."
                    % (profile.key, ", ".join(profile.groups), image.key,
                       ", ".join(sorted(image.groups)))
                )  # fmt: skip
    return profiles


def profiles_for(profiles: Iterable[Profile], user_groups: Iterable[str]) -> list[Profile]:
    """The profiles a member of ``user_groups`` may pick, in the order written."""
    user_groups = set(user_groups)
    return [profile for profile in profiles if profile.allowed_for(user_groups)]


def refuse_host_paths(profiles: Iterable[Profile], backend: str) -> None:
    """Raise ConfigError for a host-path volume on a backend that mounts claims only."""
    for profile in profiles:
        for volume in profile.volumes:
            if volume.is_host_path:
                raise ConfigError(
                    "profiles[%r]: the volume source %r is a host path; on %s a volume's"
                    " source is a PersistentVolumeClaim's name." % (profile.key, volume.source,
                                                                  backend)
                )  # fmt: skip


def profile_limits(profiles: Iterable[Profile]) -> dict[str, dict[str, float]]:
    """Per profile key, the maximum age and GPU-idle timeout it sets (only those it sets),
    for the admin service: {"cs231n-lab": {"gpu_max_age": 10800.0}}."""
    limits = {}
    for profile in profiles:
        own = {
            name: getattr(profile, name)
            for name in ("gpu_max_age", "gpu_idle_timeout")
            if getattr(profile, name) is not None
        }
        if own:
            limits[profile.key] = own
    return limits
