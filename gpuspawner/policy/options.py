"""The user's spawn choices: checked the same way from the form and from the REST API.

``user_options`` is user input and may arrive through the REST API in any shape, so
:func:`parse_user_options` accepts exactly ``{"image": <catalog key>, "gpus": <int>,
"shared": <bool>}`` (all optional; ``shared``: a slot of a shared GPU, one GPU's share) and
refuses everything else with a sentence. Where the hub has course profiles
(:mod:`.profiles`), the options are ``{"profile": <profile key>}``: the profile decides the
image and the GPUs, and an ``image``, ``gpus`` or ``shared`` that differs from it is refused.
"""

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import OptionsError
from .catalog import CatalogImage, images_for
from .names import quote_input
from .wording import plural
from .profiles import Profile, profiles_for

OPTION_KEYS = ("gpus", "image", "shared")
PROFILE_KEYS = ("profile",) + OPTION_KEYS  # with profiles: image, gpus, shared must agree
FORM_KEYS = ("gpus", "image", "profile")


@dataclass(frozen=True)
class SpawnChoice:
    """What one spawn will start: a catalog image and a number of GPUs."""

    image: CatalogImage
    gpu_count: int  # the user option "gpus"
    gpu_type: str = ""  # only GPUs of this type (a course profile's "A100"); empty: any
    shared: bool = False  # a slot of a shared GPU rather than whole GPUs
    profile: Profile | None = None  # the course profile picked (None: the hub has none)


def parse_user_options(
    user_options: Any,
    catalog: Sequence[CatalogImage],
    user_groups: Iterable[str],
    *,
    max_gpus: int,
    default_image: str = "",
    profiles: Sequence[Profile] = (),
) -> SpawnChoice:
    """Check ``user_options`` against the catalog and the per-server GPU maximum, or against
    the course ``profiles`` where the hub has them."""
    if user_options is None:
        user_options = {}
    if not isinstance(user_options, Mapping):
        example = '{"profile": ...}' if profiles else '{"image": ..., "gpus": 1}'
        raise OptionsError("Spawn options must be a JSON object such as %s." % example)
    keys = PROFILE_KEYS if profiles else OPTION_KEYS
    unknown = sorted(str(key) for key in user_options if key not in keys)
    if unknown:
        named = ", ".join(map(quote_input, unknown[:3])) + (", …" if len(unknown) > 3 else "")
        if "profile" in unknown and not profiles:
            raise OptionsError(
                "This hub has no profiles; the options are: %s." % ", ".join(OPTION_KEYS)
            )
        raise OptionsError(
            "Unknown spawn option(s) %s; the options are: %s."
            % (named, "profile" if profiles else ", ".join(OPTION_KEYS))
        )
    user_groups = list(user_groups)
    choices = images_for(catalog, user_groups)
    if profiles:
        return _profile_choice(user_options, catalog, user_groups, profiles, default_image)
    if not choices:
        raise OptionsError("No image in this hub's catalog is available to you; ask an admin.")
    shared = _shared(user_options.get("shared", False))
    gpus = user_options.get("gpus", 1 if shared else 0)
    count = _gpu_count(gpus, max_gpus)
    if shared and count != 1:
        raise OptionsError(
            'A shared GPU slot is one GPU\'s share: ask for "gpus": 1 with "shared", not %d.'
            % count
        )
    return SpawnChoice(
        image=_pick_image(user_options.get("image"), catalog, choices, default_image),
        gpu_count=count,
        shared=shared,
    )


def _shared(value) -> bool:
    if not isinstance(value, bool):
        raise OptionsError(
            '"shared" must be true (a slot of a shared GPU) or false, not %s.'
            % quote_input(value)
        )
    return value


def _profile_choice(user_options, catalog, user_groups, profiles, default_image) -> SpawnChoice:
    allowed = profiles_for(profiles, user_groups)
    if not allowed:
        raise OptionsError("No profile of this hub is available to your groups; ask an admin.")
    key = user_options.get("profile")
    if key is None or key == "":
        profile = allowed[0]
    elif not isinstance(key, str):
        raise OptionsError("The profile must be given by its name, such as %r." % allowed[0].key)
    else:
        profile = next((p for p in profiles if p.key == key), None)
        if profile is None:
            raise OptionsError(
                "There is no profile %s on this hub; choose one of: %s."
                % (quote_input(key), ", ".join(p.key for p in allowed))
            )
        if profile not in allowed:
            raise OptionsError(
                "The profile %s is not available to your groups." % quote_input(key)
            )
    choices = images_for(catalog, user_groups)
    if profile.image:
        image = next(i for i in catalog if i.key == profile.image)
        if image not in choices:
            raise OptionsError(
                "The image of the profile %s is not available to your groups; ask an admin."
                % quote_input(profile.key)
            )
    elif choices:
        image = _pick_image(None, catalog, choices, default_image)
    else:
        raise OptionsError("No image in this hub's catalog is available to you; ask an admin.")
    asked = user_options.get("image")
    if asked not in (None, "", image.key):
        raise OptionsError(
            "The profile %s starts the image %s, not %s: pick another profile for another"
            " image." % (quote_input(profile.key), image.key, quote_input(asked))
        )
    asked = user_options.get("gpus")
    if asked is not None and not (type(asked) is int and asked == profile.gpus):
        raise OptionsError(
            "The profile %s gives %s, not %s: pick another profile for other GPUs."
            % (
                quote_input(profile.key),
                profile.kind_text(),
                plural(asked) if type(asked) is int else "%s GPUs" % quote_input(asked),
            )
        )
    asked = user_options.get("shared")
    if asked is not None and asked is not profile.shared:
        raise OptionsError(
            "The profile %s gives %s: %s does not apply; pick another profile."
            % (quote_input(profile.key), profile.kind_text(), '"shared": %s'
               % quote_input(asked))
        )  # fmt: skip
    return SpawnChoice(
        image=image,
        gpu_count=profile.gpus,
        gpu_type=profile.choice_gpu_type,
        shared=profile.shared,
        profile=profile,
    )


def _pick_image(key, catalog, choices, default_image) -> CatalogImage:
    if key is None or key == "":
        by_key = {image.key: image for image in choices}
        return by_key.get(default_image, choices[0])
    if not isinstance(key, str):
        raise OptionsError(
            "The image must be given by its catalog name, such as %r." % choices[0].key
        )
    for image in catalog:
        if image.key == key:
            if image not in choices:
                raise OptionsError(
                    "The image %s is not available to your groups." % quote_input(key)
                )
            return image
    raise OptionsError(
        "There is no image %s in this hub's catalog; choose one of: %s."
        % (quote_input(key), ", ".join(image.key for image in choices))
    )


def _gpu_count(value, max_gpus: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise OptionsError(
            "The number of GPUs must be a whole number from 0 to %d, not %s."
            % (max_gpus, quote_input(value))
        )
    if value < 0 or value > max_gpus:
        raise OptionsError(
            "The number of GPUs must be from 0 to %d per server, not %d." % (max_gpus, value)
        )
    return value


def options_from_form(formdata: Mapping[str, list[str]]) -> dict:
    """Turn the spawn form's fields into ``user_options`` (the same shape the API takes).

    Fields the hub adds to every form (such as ``_xsrf``) are not options and are left out.
    A profile's card posts ``profile`` alone.
    """
    options: dict = {}
    for key in FORM_KEYS:
        values = formdata.get(key)
        if not values:
            continue
        value = values[0] if isinstance(values, list) else values
        if key == "gpus":
            text = str(value).strip()
            if not re.fullmatch(r"[0-9]{1,9}", text):
                raise OptionsError(
                    "The number of GPUs must be a whole number, not %s." % quote_input(text)
                )
            value = int(text)
        options[key] = value
    return options
