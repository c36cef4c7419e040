"""The spawn form: a catalog image and a GPU count the user may still take, or, where the
hub has course profiles, the profiles the user's groups may pick, as cards.

Rendered from the ``spawn_form.html`` template (:mod:`gpuspawner.templating`), which an
admin may override through the spawner's ``template_paths``.

When a spawn posted from the form is refused, JupyterHub 6 renders the form again with the
error, through the user's *default* server's spawner, whatever server was being started.
The spawner that received the post remembers it (:func:`remember_form`) and marks it failed
(:func:`spawn_failed`), so that form names the server being started and keeps the user's
choices.
"""

import time
from dataclasses import dataclass, replace

from ..policy.allocation import free_gpus, free_slots, slot_note
from ..policy.inventory import matches_type
from ..policy.catalog import images_for
from ..policy.profiles import Profile
from ..policy.wording import plural, server_label
from ..templating import render

RERENDER_SECONDS = 15.0  # how long after a refusal the form still shows the refused post


@dataclass
class FormPost:
    """What a user last posted from the form, and when its spawn failed."""

    server_name: str
    image: str
    gpus: str
    failed_at: float | None = None
    profile: str = ""


_posts: dict[tuple[int, str], FormPost] = {}  # (id of the spawner class, user) -> post


def _user_key(spawner) -> tuple[int, str]:
    user_id = getattr(spawner.user, "id", None)
    return id(spawner.shared), str(spawner.user.name if user_id is None else user_id)


def remember_form(spawner, form_data) -> None:
    """The form was posted to ``spawner`` (JupyterHub's form data: name -> list of values)."""

    def first(name: str) -> str:
        values = form_data.get(name) or [""]
        return str(values[0])

    _posts[_user_key(spawner)] = FormPost(
        spawner.server_name, first("image"), first("gpus"), profile=first("profile")
    )


def spawn_failed(spawner) -> None:
    """A spawn of ``spawner`` was refused or failed: a post for it may be rendered again."""
    post = _posts.get(_user_key(spawner))
    if post is not None and post.server_name == spawner.server_name:
        post.failed_at = time.monotonic()


def refused_post(spawner) -> FormPost | None:
    """The user's post whose spawn failed just now (taken: it is rendered once)."""
    key = _user_key(spawner)
    post = _posts.get(key)
    if post is None or post.failed_at is None:
        return None
    del _posts[key]
    if time.monotonic() - post.failed_at > RERENDER_SECONDS:
        return None
    return post


async def render_options_form(spawner) -> str:
    """The spawn form: a catalog image and a GPU count the user may still take."""
    availability = await spawner.gpu_availability()
    no_gpus = spawner.gpus_unavailable_reason()
    post = refused_post(spawner)
    limit = spawner.user_quota
    may_take = min(limit.count, spawner.max_gpus_per_server)
    if availability is not None:
        may_take = max(0, min(may_take - availability.held, availability.free))
    lines = []
    gpu_ok = no_gpus is None and limit.count > 0  # whether a profile's GPU may be offered
    if no_gpus is not None or (availability is not None and availability.total == 0):
        may_take = 0
        lines.append(no_gpus or "This hub has no GPUs: servers run on the CPU only.")
    else:
        budget_text, budget_spent = await spawner.accounting.budget_status()
        if budget_spent:
            may_take = 0
            gpu_ok = False
        lines.append("Your limit: %s at once (%s)." % (plural(limit.count), limit.source))
        if availability is not None:
            lines.append(
                "%d of %d GPUs free on this hub. You hold %s."
                % (availability.free, availability.total, availability.held_text)
            )
        if budget_text:
            lines.append(budget_text)
    images = spawner.offered_images()
    offered = {image.key for image in images}
    not_offered = [
        "%s is not offered: %s" % (image.display_name, spawner.image_problem(image))
        for image in images_for(spawner.catalog, spawner.user_groups)
        if image.key not in offered
    ]
    if not images:
        not_offered.insert(0, "No image of this hub's catalog can start on this host.")
    profiles = getattr(spawner, "profile_set", ())
    cards = profile_cards(spawner, availability, may_take, gpu_ok, post) if profiles else []
    selected_image = default_image_key(spawner, images)
    selected_gpus = 0
    if post is not None:
        if post.image in offered:
            selected_image = post.image
        if post.gpus.isdigit():
            selected_gpus = min(int(post.gpus), may_take)
    return render(
        "spawn_form.html",
        spawner.template_paths,
        images=images,
        image_notes={image.key: spawner.image_note(image) for image in images},
        selected_image=selected_image,
        image_lines=not_offered,
        gpu_counts=[(n, plural(n)) for n in range(may_take + 1)],
        selected_gpus=selected_gpus,
        server_label=server_label(post.server_name if post is not None else spawner.server_name),
        status_lines=lines,
        profiles=cards,
    )


@dataclass(frozen=True)
class ProfileCard:
    """What the form shows of one profile."""

    key: str
    display_name: str
    description: str
    image: str  # the image's display name
    kind: str  # "a slot of a shared T4", "1 A100", "no GPU"
    size: str  # "2 CPUs, 8 GiB memory" ("" when the profile sets neither)
    free: str  # what is free now for its kind ("" for no GPU, or unknown)
    note: str  # a shared slot: shared with up to N-1 others, memory not isolated
    selected: bool = False
    available: bool = True  # the user may take it now (quota, budget, free GPUs)


def size_text(profile: Profile) -> str:
    """'2 CPUs, 8 GiB memory, 1 GiB /dev/shm' for a card."""
    parts = []
    if profile.cpu_limit is not None:
        cores = "%g" % profile.cpu_limit
        parts.append("%s CPU%s" % (cores, "" if profile.cpu_limit == 1 else "s"))
    for amount, what in ((profile.mem_limit, "memory"), (profile.shm_size, "/dev/shm")):
        if amount is not None:
            parts.append("%s %s" % (bytes_text(amount), what))
    return ", ".join(parts)


def bytes_text(amount: int) -> str:
    """8589934592 -> '8 GiB'; 536870912 -> '512 MiB'."""
    for unit, power in (("TiB", 4), ("GiB", 3), ("MiB", 2), ("KiB", 1)):
        if amount >= 1024**power:
            return "%g %s" % (round(amount / 1024**power, 1), unit)
    return "%d bytes" % amount


def shared_by(spawner) -> int:
    """How many servers share one of this hub's shared GPUs (0: unknown or none)."""
    try:
        inventory = spawner.pool.inventory or ()
    except AttributeError:
        return 0
    return max((gpu.shared_by for gpu in inventory if gpu.shared_by > 1), default=0)


def kind_counts(spawner, profile: Profile) -> tuple[int, int] | None:
    """(free, total) of the profile's kind on this hub: whole GPUs of its type, or slots of
    shared GPUs of its type; None where the engine picks the devices (no inventory)."""
    pool = getattr(spawner, "pool", None)
    inventory = getattr(pool, "usable", lambda: None)() if pool is not None else None
    if inventory is None:
        return None
    holdings = list(getattr(pool, "holdings", ()))
    kind = [g for g in inventory if matches_type(g.name, profile.choice_gpu_type)]
    if profile.shared:
        slots = free_slots(kind, holdings)
        return sum(n for _, n in slots), sum(g.shared_by for g, _ in slots)
    return len(free_gpus(kind, holdings)), sum(1 for g in kind if not g.is_shared)


def profile_cards(
    spawner, availability, may_take: int, gpu_ok: bool, post
) -> list[ProfileCard]:
    """The cards of the profiles this user may pick; the refused post's profile selected,
    else the first the user may take now, else the first.

    ``may_take``: whole GPUs the user may take now; ``gpu_ok``: whether any GPU may be
    (no quota of 0, no spent budget, a hub that can attach GPUs)."""
    offered = spawner.offered_profiles()
    keys = [p.key for p in offered]
    selected = post.profile if post is not None and post.profile in keys else ""
    images = {image.key: image for image in spawner.catalog}
    default = images.get(default_image_key(spawner, spawner.offered_images()))
    sharing = shared_by(spawner)
    mode = getattr(spawner, "shared_gpu_mode", "time-sliced")
    cards = []
    for profile in offered:
        image = images.get(profile.image) or default
        free, available = "", True
        if profile.holds_gpu:
            counts = kind_counts(spawner, profile)
            if profile.shared:
                available = gpu_ok and (availability is None or availability.slots_free > 0)
            else:
                available = gpu_ok and may_take >= profile.gpus
            kind = profile.choice_gpu_type
            if counts is not None:
                free = "%d of %d %s%s free now." % (
                    counts[0], counts[1], kind + " " if kind else "",
                    "shared slots" if profile.shared else "GPUs",
                )  # fmt: skip
                available = available and counts[0] >= (1 if profile.shared else profile.gpus)
            elif availability is not None and profile.shared:
                free = "%d of %d shared slots free now." % (
                    availability.slots_free, availability.slots_total,
                )  # fmt: skip
            elif availability is not None:
                free = "%d of %d GPUs free now." % (availability.free, availability.total)
        note = ""
        if profile.shared:
            note = "The GPU is %s." % (
                slot_note(sharing, mode) if sharing else
                "shared with other servers; memory is not isolated"
            )  # fmt: skip
        cards.append(
            ProfileCard(
                key=profile.key,
                display_name=profile.display_name,
                description=profile.description,
                image=image.display_name if image is not None else "",
                kind=profile.kind_text(),
                size=size_text(profile),
                free=free,
                note=note,
                available=available,
            )
        )
    if cards:
        first = next((c.key for c in cards if c.available), cards[0].key)
        cards = [replace(c, selected=c.key == (selected or first)) for c in cards]
    return cards


def default_image_key(spawner, images) -> str:
    """The image selected when the form opens: the hub's default_image if offered, else the
    first offered."""
    keys = [image.key for image in images]
    if spawner.default_image in keys:
        return spawner.default_image
    return keys[0] if keys else ""
