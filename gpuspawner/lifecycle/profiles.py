"""Course profiles on the spawner: the ``profiles`` setting and what a picked profile gives.

:class:`ProfileSettings` is part of ``GPUSpawnerMixin``; the profiles themselves are parsed
and checked in :mod:`gpuspawner.policy.profiles` (pure). A spawn's profile is
``SpawnChoice.profile``; the backends read its limits and volumes from there
(:meth:`ProfileSettings.choice_profile`), the lifecycle its environment and maximum age.
"""

from traitlets import Dict
from traitlets.config import LoggingConfigurable

from ..policy.profiles import Profile, parse_profiles, profiles_for, refuse_host_paths
from .shared import parsed_once


class ProfileSettings(LoggingConfigurable):
    """The ``profiles`` setting of every backend's spawner."""

    profiles = Dict(
        help="""Course profiles users pick instead of an image and a GPU count: a dict of
        key -> settings, in the order the spawn form shows them as cards::

            {"cs231n-lab": {"display_name": "CS231n lab", "description": "...",
                            "image": "pytorch-2.9", "shared": True, "gpu_type": "T4",
                            "cpu_limit": 2, "mem_limit": "8G", "shm_size": "1G",
                            "volumes": [{"source": "cs231n-data", "path": "/data/cs231n"}],
                            "environment": {"COURSE": "cs231n"},
                            "gpu_max_age": 10800, "gpu_idle_timeout": 1800,
                            "groups": ["cs231n"]}}

        ``image``: a key of ``images`` (empty: the user's default image). GPUs: ``gpus``
        whole GPUs of ``gpu_type`` (matched in the GPU's name; empty: any), or ``mig`` (a
        MIG profile such as "1g.10gb": one MIG slice), or ``shared: True`` (a slot of a
        shared GPU). ``cpu_limit`` in cores, ``mem_limit`` and ``shm_size`` as sizes
        ("8G"), over the spawner's own. ``volumes``: mounted read-only unless
        ``read_only`` is False; ``source`` is a Docker named volume or absolute host path,
        or on Kubernetes a PersistentVolumeClaim's name; a writable one must hold
        ``{group}`` (the first of the profile's groups the user is in), one per group.
        ``gpu_max_age`` / ``gpu_idle_timeout`` (seconds) replace the spawner's for servers
        of this profile. ``groups``: who may pick it (empty: everyone).

        Empty (the default): no profiles, the form offers the catalog's images and a GPU
        count. With profiles, a user's options are ``{"profile": key}`` and the profile
        decides the image and GPUs; another image or GPU count is refused.
        """,
    ).tag(config=True)

    #: Whether a profile's volume may be a host path (Docker: yes; Kubernetes mounts claims).
    profile_host_paths: bool = True

    def check_profiles(self) -> None:
        """Raise ConfigError for profiles the hub cannot use."""
        profiles = self.profile_set
        if not self.profile_host_paths:
            refuse_host_paths(profiles, type(self).__name__)

    @property
    def profile_set(self) -> tuple[Profile, ...]:
        """The parsed profiles (ConfigError for a profile the hub cannot use)."""
        profiles, catalog, max_gpus = self.profiles, self.catalog, self.max_gpus_per_server
        return parsed_once(
            self,
            "profiles",
            (profiles, catalog, max_gpus),
            lambda: parse_profiles(profiles, catalog, max_gpus=max_gpus),
        )

    def offered_profiles(self) -> list[Profile]:
        """The profiles this user may pick, in the order written."""
        return profiles_for(self.profile_set, self.user_groups)

    def choice_profile(self) -> Profile | None:
        """The profile of this spawn (None: the hub has no profiles, or no spawn yet)."""
        choice = getattr(self, "choice", None)
        return choice.profile if choice is not None else None

    def profile_mounts(self):
        """This spawn's profile volumes, their ``{group}`` filled in for this user."""
        profile = self.choice_profile()
        return profile.mounts_for(self.user_groups) if profile is not None else ()

    def profile_env(self) -> dict[str, str]:
        """This spawn's profile environment (GPUSPAWNER_PROFILE and the profile's own)."""
        profile = self.choice_profile()
        if profile is None:
            return {}
        return {**profile.environment, "GPUSPAWNER_PROFILE": profile.key}

    def profile_max_age(self) -> float | None:
        """This spawn's profile maximum age (None: the spawner's gpu_max_age)."""
        profile = self.choice_profile()
        return profile.gpu_max_age if profile is not None else None

    def profile_idle_timeout(self) -> float | None:
        """This spawn's profile GPU-idle timeout (None: the spawner's gpu_idle_timeout)."""
        profile = self.choice_profile()
        return profile.gpu_idle_timeout if profile is not None else None

    # --- saved state: a running server's profile survives a hub restart ---

    _restored_profile: str = ""  # the running server's profile, from its saved state

    def get_state(self):
        state = super().get_state()
        profile = self.choice_profile()
        key = profile.key if profile is not None else self._restored_profile
        if key:
            state["profile"] = key
        return state

    def clear_state(self):
        super().clear_state()
        self._restored_profile = ""

    def load_state(self, state):
        super().load_state(state)
        self._restored_profile = str(state.get("profile") or "")
        # what the running server was started with, for the hub's API (the admin service
        # reads a server's profile there): the stored options drop a GPU profile
        if state.get("profile") and isinstance(self.user_options, dict):
            self.user_options = {**self.user_options, "profile": state["profile"]}
