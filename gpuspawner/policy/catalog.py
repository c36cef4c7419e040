"""The image catalog: the pinned images users may start, and who may start them.

Admins write the catalog as a dict keyed by what users pick::

    c.GPUDockerSpawner.images = {
        "pytorch-2.9": {
            "display_name": "PyTorch 2.9 (CUDA 12.8)",
            "image": "gpuspawner/pytorch-notebook:2.9.1-cuda12.8",
            "cuda": "12.8",
        },
        "pytorch-2.9-staff": {..., "groups": ["staff"]},
    }

Everything here is pure: parsing raises :class:`ConfigError` with a sentence.
"""

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from ..errors import ConfigError, check_fields

KEY_PATTERN = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")
CUDA_PATTERN = re.compile(r"^\d+\.\d+$")
FIELDS = {"display_name", "image", "cuda", "description", "groups"}


@dataclass(frozen=True)
class CatalogImage:
    """One image users may start."""

    key: str
    display_name: str
    image: str
    cuda: str = ""
    description: str = ""
    groups: frozenset[str] = frozenset()

    def allowed_for(self, user_groups: Iterable[str]) -> bool:
        """Whether a member of ``user_groups`` may start this image (no groups: everyone)."""
        return not self.groups or not self.groups.isdisjoint(user_groups)


def image_tag(image: str) -> str | None:
    """The tag of an image reference, or None when it has none.

    >>> image_tag("registry:5000/org/name:1.2")
    '1.2'
    >>> image_tag("registry:5000/org/name") is None
    True
    """
    name = image.split("@", 1)[0]
    last_part = name.rsplit("/", 1)[-1]
    if ":" not in last_part:
        return None
    return last_part.rsplit(":", 1)[1]


def is_pinned(image: str) -> bool:
    """An image is pinned by a digest, or by a tag other than ``latest``."""
    if "@sha256:" in image:
        return True
    tag = image_tag(image)
    return tag is not None and tag != "latest"


def parse_catalog(
    entries: Mapping[str, Mapping], *, allow_unpinned: bool = False
) -> tuple[CatalogImage, ...]:
    """Check the admin's catalog and return it in the order written."""
    if not isinstance(entries, Mapping):
        raise ConfigError("The image catalog must be a dict of image key to image settings.")
    return tuple(
        _parse_entry(key, entry, allow_unpinned=allow_unpinned) for key, entry in entries.items()
    )


def _parse_entry(key, entry, *, allow_unpinned: bool) -> CatalogImage:
    where = "images[%r]" % (key,)
    if not isinstance(key, str) or not KEY_PATTERN.match(key):
        raise ConfigError(
            "%s: an image key must be 1-63 lower-case letters, digits, '.', '_' or '-',"
            " starting with a letter or digit." % where
        )
    if not isinstance(entry, Mapping):
        raise ConfigError("%s must be a dict with at least an 'image' field." % where)
    check_fields(where, entry, FIELDS)
    image = entry.get("image")
    if not isinstance(image, str) or not image.strip() or any(c.isspace() for c in image):
        raise ConfigError("%s needs an 'image' such as 'org/name:1.0'." % where)
    if not allow_unpinned and not is_pinned(image):
        raise ConfigError(
            "%s: image %r is not pinned. Give it a tag other than 'latest' (or a digest),"
            " or set allow_unpinned_images = True." % (where, image)
        )
    cuda = entry.get("cuda", "")
    if cuda and not (isinstance(cuda, str) and CUDA_PATTERN.match(cuda)):
        raise ConfigError("%s: 'cuda' must be a version such as '12.8', not %r." % (where, cuda))
    groups = entry.get("groups", ())
    if isinstance(groups, str) or not all(isinstance(g, str) for g in groups):
        raise ConfigError("%s: 'groups' must be a list of group names." % where)
    for text_field in ("display_name", "description"):
        if not isinstance(entry.get(text_field, ""), str):
            raise ConfigError("%s: %r must be text." % (where, text_field))
    return CatalogImage(
        key=key,
        display_name=entry.get("display_name") or key,
        image=image,
        cuda=cuda,
        description=entry.get("description", ""),
        groups=frozenset(groups),
    )


def images_for(catalog: Iterable[CatalogImage], user_groups: Iterable[str]) -> list[CatalogImage]:
    """The catalog images a member of ``user_groups`` may start, in catalog order."""
    user_groups = set(user_groups)
    return [image for image in catalog if image.allowed_for(user_groups)]
