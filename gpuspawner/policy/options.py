"""The user's spawn choices: checked the same way from the form and from the REST API.

``user_options`` is user input and may arrive through the REST API in any shape, so
:func:`parse_user_options` accepts exactly ``{"image": <catalog key>, "gpus": <int>}``
(both optional) and refuses everything else with a sentence.
"""

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import OptionsError
from .catalog import CatalogImage, images_for
from .names import quote_input

OPTION_KEYS = ("gpus", "image")


@dataclass(frozen=True)
class SpawnChoice:
    """What one spawn will start: a catalog image and a number of GPUs."""

    image: CatalogImage
    gpu_count: int  # the user option "gpus"
    gpu_type: str = ""  # only GPUs of this type (a course profile's "A100"); empty: any
    shared: bool = False  # a slot of a shared GPU rather than whole GPUs


def parse_user_options(
    user_options: Any,
    catalog: Sequence[CatalogImage],
    user_groups: Iterable[str],
    *,
    max_gpus: int,
    default_image: str = "",
) -> SpawnChoice:
    """Check ``user_options`` against the catalog and the per-server GPU maximum."""
    if user_options is None:
        user_options = {}
    if not isinstance(user_options, Mapping):
        raise OptionsError('Spawn options must be a JSON object such as {"image": ..., "gpus": 1}.')
    unknown = sorted(str(key) for key in user_options if key not in OPTION_KEYS)
    if unknown:
        named = ", ".join(map(quote_input, unknown[:3])) + (", …" if len(unknown) > 3 else "")
        raise OptionsError(
            "Unknown spawn option(s) %s; the options are: %s." % (named, ", ".join(OPTION_KEYS))
        )
    choices = images_for(catalog, user_groups)
    if not choices:
        raise OptionsError("No image in this hub's catalog is available to you; ask an admin.")
    return SpawnChoice(
        image=_pick_image(user_options.get("image"), catalog, choices, default_image),
        gpu_count=_gpu_count(user_options.get("gpus", 0), max_gpus),
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
    """
    options: dict = {}
    for key in OPTION_KEYS:
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
