"""What every gpuspawner backend shares: catalog, quota, user options, progress, env.

A backend mixes :class:`GPUSpawnerMixin` in before its engine's spawner class
(``class GPUDockerSpawner(GPUSpawnerMixin, DockerSpawner)``) and provides the GPU
bookkeeping of its engine through :meth:`GPUSpawnerMixin.gpu_availability`.
"""

import asyncio
import html
from dataclasses import dataclass

from traitlets import Bool, Dict, Int, TraitError, Unicode, default, validate
from traitlets.config import LoggingConfigurable

from ..errors import ConfigError, OptionsError
from ..policy.allocation import Holding
from ..policy.catalog import CatalogImage, images_for, parse_catalog
from ..policy.inventory import Gpu
from ..policy.options import SpawnChoice, options_from_form, parse_user_options
from ..policy.quota import GpuLimit, check_limits, gpu_limit, plural, server_label
from ..usage.accounting import UsageMixin
from .refusal import SpawnRefused


@dataclass(frozen=True)
class Availability:
    """What the spawn form shows: free GPUs and what the user already holds."""

    free: int
    total: int
    held: int
    held_text: str


def config_error_to_trait(check, *args, **kwargs):
    """Run a parser and turn its ConfigError into a TraitError (a start-up error)."""
    try:
        return check(*args, **kwargs)
    except ConfigError as e:
        raise TraitError(str(e)) from None


class GPUSpawnerBase(LoggingConfigurable):
    """Catalog, quota, user options, progress and environment for GPU spawners."""

    images = Dict(
        help="""The image catalog: users pick one of these by key.

        A dict of key -> settings, in the order shown in the spawn form::

            {"pytorch-2.9": {"display_name": "PyTorch 2.9 (CUDA 12.8)",
                             "image": "org/pytorch-notebook:2.9.1-cuda12.8",
                             "cuda": "12.8", "groups": ["staff"]}}

        ``image`` must be pinned (a tag other than ``latest``, or a digest) unless
        ``allow_unpinned_images`` is set; ``groups`` (optional) limits who may start it.
        """,
    ).tag(config=True)

    allow_unpinned_images = Bool(
        False,
        help="Allow catalog images with no tag or the tag 'latest' (refused by default).",
    ).tag(config=True)

    default_image = Unicode(
        "",
        help="Catalog key started when the user picks none (default: the first image they may use).",
    ).tag(config=True)

    gpu_quota = Int(
        1,
        help="""GPUs one user may hold at once, counted across all of their named servers.

        Overridden per group by ``gpu_quota_groups``.
        """,
    ).tag(config=True)

    gpu_quota_groups = Dict(
        key_trait=Unicode(),
        value_trait=Int(),
        help="""Per-group GPU limits, e.g. {"staff": 4, "cpu-only": 0}.

        A user in several groups gets the most generous of their groups' limits;
        a user in no listed group gets ``gpu_quota``.
        """,
    ).tag(config=True)

    max_gpus_per_server = Int(
        8,
        help="The most GPUs one server may ask for (the quota still applies).",
    ).tag(config=True)

    workspace_path = Unicode(
        "/home/jovyan/work",
        help="Where the user's persistent workspace is mounted in the server.",
    ).tag(config=True)

    shm_size = Unicode(
        "2g",
        help="""Size of /dev/shm in the server. PyTorch DataLoader workers share batches
        through it; Docker's default of 64 MB is too small for them.""",
    ).tag(config=True)

    user_environment = Dict(
        key_trait=Unicode(),
        value_trait=Dict(),
        help="""Extra environment per user name, e.g. {"alice": {"HF_TOKEN": "..."}}.

        Secrets are passed at start and never baked into images or written to labels.
        """,
    ).tag(config=True)

    group_environment = Dict(
        key_trait=Unicode(),
        value_trait=Dict(),
        help="Extra environment for members of a group, e.g. {\"staff\": {\"WANDB_MODE\": \"online\"}}.",
    ).tag(config=True)

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.clear_progress()
        config_error_to_trait(self.check_config)

    def check_config(self) -> None:
        """Raise ConfigError, with the reason, for a catalog or quota the hub cannot use."""
        if not self.catalog:
            raise ConfigError("The image catalog (images) is empty: list at least one image.")
        check_limits(self.gpu_quota, self.gpu_quota_groups)
        if self.default_image and self.default_image not in {i.key for i in self.catalog}:
            raise ConfigError("default_image %r is not a key of the image catalog." % self.default_image)

    @validate("gpu_quota", "max_gpus_per_server")
    def _validate_non_negative(self, proposal):
        if proposal.value < 0:
            raise TraitError("%s must be 0 or more, not %d." % (proposal.trait.name, proposal.value))
        return proposal.value

    @default("options_form")
    def _default_options_form(self):
        return render_options_form

    @default("options_from_form")
    def _default_options_from_form(self):
        return options_from_form

    @default("apply_user_options")
    def _default_apply_user_options(self):
        return apply_gpu_options

    # --- what a backend reads ---

    choice: SpawnChoice | None = None
    gpu_uuids: tuple[str, ...] = ()

    @property
    def catalog(self):
        return parse_catalog(self.images, allow_unpinned=self.allow_unpinned_images)

    @property
    def user_groups(self) -> list[str]:
        return sorted(group.name for group in self.user.groups)

    @property
    def gpu_limit(self) -> GpuLimit:
        return gpu_limit(self.user_groups, self.gpu_quota, self.gpu_quota_groups)

    @property
    def server_name(self) -> str:
        return self.name or ""

    def choose(self, user_options) -> SpawnChoice:
        """Check ``user_options``; bad input is an HTTP 400 with the sentence."""
        try:
            choice = parse_user_options(
                user_options,
                self.catalog,
                self.user_groups,
                max_gpus=self.max_gpus_per_server,
                default_image=self.default_image,
            )
        except OptionsError as e:
            raise SpawnRefused(str(e), reason="options", status_code=400) from None
        problem = self.image_problem(choice.image)
        if problem is not None:
            raise SpawnRefused(problem, reason="image", status_code=400)
        return choice

    # --- extension points (budgets, usage ledgers, image checks); no-ops here ---

    def image_problem(self, image: CatalogImage) -> str | None:
        """Why this server cannot start ``image`` (hidden from the form, refused by the API), or None."""
        return None

    async def check_spawn_allowed(self, choice: SpawnChoice) -> None:
        """Raise SpawnRefused to refuse a spawn before any GPU is allocated (e.g. a spent budget)."""

    async def on_gpus_held(self, gpus: tuple[Gpu, ...]) -> None:
        """The server started and holds ``gpus`` (empty for a server without GPUs)."""

    async def on_gpus_released(self, uuids: tuple[str, ...]) -> None:
        """The server gave ``uuids`` back: it stopped, failed to start or died."""

    async def on_holdings_rebuilt(self, holdings: list[Holding]) -> None:
        """The engine was listed: ``holdings`` are every server that holds GPUs right now."""

    def offered_images(self) -> list[CatalogImage]:
        """The catalog images this user may start on this hub, in catalog order."""
        return [i for i in images_for(self.catalog, self.user_groups) if self.image_problem(i) is None]

    async def gpu_availability(self) -> Availability | None:
        """Free/total GPUs and the user's holdings, for the form; None when unknown."""
        return None

    # --- progress ---

    def emit_progress(self, progress: int, message: str) -> None:
        """Record a stage of the spawn for the hub's progress bar."""
        self.log.info("%s: %s", self._log_name, message)
        self._progress_log.append({"progress": progress, "message": message})
        self._progress_signal.set()

    def clear_progress(self) -> None:
        self._progress_log: list[dict] = []
        self._progress_signal = asyncio.Event()

    async def progress(self):
        """Yield the spawn's stages as they happen; the hub stops reading when ready."""
        sent = 0
        while True:
            while sent < len(self._progress_log):
                yield self._progress_log[sent]
                sent += 1
            self._progress_signal.clear()
            try:
                await asyncio.wait_for(self._progress_signal.wait(), timeout=1)
            except asyncio.TimeoutError:
                pass

    # --- the contract with the container ---

    def no_gpu_reason(self) -> str:
        if self.gpu_limit.gpus == 0:
            return "Your GPU quota is 0 (%s)." % self.gpu_limit.source
        return "No GPU was requested for this server."

    def get_env(self):
        env = super().get_env()
        groups = set(self.user_groups)
        for group, group_env in sorted(self.group_environment.items()):
            if group in groups:
                env.update(group_env)
        env.update(self.user_environment.get(self.user.name, {}))
        env.update(gpu_env(self.gpu_uuids, self.no_gpu_reason()))
        return env


class GPUSpawnerMixin(UsageMixin, GPUSpawnerBase):
    """What a backend mixes in: the shared base with the usage ledger and GPU-hour budgets."""


def gpu_env(gpu_uuids, no_gpu_reason: str) -> dict[str, str]:
    """The environment that tells a container which GPUs it holds (and hides the rest)."""
    env = {
        "GPU_LIMIT": str(len(gpu_uuids)),
        "GPUSPAWNER_GPU_UUIDS": ",".join(gpu_uuids),
        "NVIDIA_VISIBLE_DEVICES": ",".join(gpu_uuids) or "void",
    }
    if gpu_uuids:
        env["NVIDIA_DRIVER_CAPABILITIES"] = "compute,utility"
    else:
        env["GPUSPAWNER_NO_GPU_REASON"] = no_gpu_reason
    return env


def apply_gpu_options(spawner, user_options):
    """The ``apply_user_options`` hook: check the options and remember the choice.

    The GPU count is dropped from the options the hub stores for the next spawn,
    so a later spawn without options starts with no GPU instead of inheriting one.
    """
    spawner.choice = spawner.choose(user_options)
    spawner.image = spawner.choice.image.image
    stored = spawner.orm_spawner.user_options or {}
    if isinstance(stored, dict) and "gpus" in stored:
        spawner.orm_spawner.user_options = {k: v for k, v in stored.items() if k != "gpus"}


async def render_options_form(spawner) -> str:
    """The spawn form: a catalog image and a GPU count the user may still take."""
    images = spawner.offered_images()
    availability = await spawner.gpu_availability()
    limit = spawner.gpu_limit
    may_take = min(limit.gpus, spawner.max_gpus_per_server)
    if availability is not None:
        may_take = max(0, min(may_take - availability.held, availability.free))
    budget_text, budget_spent = await spawner.gpu_budget_status()
    if budget_spent:
        may_take = 0
    image_options = "\n".join(
        '<option value="%s"%s>%s%s</option>'
        % (
            html.escape(image.key),
            " selected" if i == 0 else "",
            html.escape(image.display_name),
            html.escape(" - CUDA %s" % image.cuda) if image.cuda else "",
        )
        for i, image in enumerate(images)
    )
    gpu_options = "\n".join(
        '<option value="%d"%s>%s</option>' % (n, " selected" if n == 0 else "", plural(n))
        for n in range(may_take + 1)
    )
    lines = ["Your limit: %s at once (%s)." % (plural(limit.gpus), limit.source)]
    if availability is not None:
        lines.append(
            "%d of %d GPUs free on this hub. You hold %s."
            % (availability.free, availability.total, availability.held_text)
        )
    if budget_text:
        lines.append(budget_text)
    status = "".join("<p>%s</p>" % html.escape(line) for line in lines)
    return """
<div class="form-group">
  <label for="gpuspawner-image">Image</label>
  <select class="form-control" name="image" id="gpuspawner-image">%s</select>
</div>
<div class="form-group">
  <label for="gpuspawner-gpus">GPUs for %s</label>
  <select class="form-control" name="gpus" id="gpuspawner-gpus">%s</select>
  <div class="help-block" id="gpuspawner-gpu-status">%s</div>
</div>
""" % (image_options, html.escape(server_label(spawner.server_name)), gpu_options, status)
