"""The image catalog: pinning, fields, group restrictions (pure)."""

import pytest

from gpuspawner.errors import ConfigError
from gpuspawner.policy.catalog import CatalogImage, image_tag, images_for, is_pinned, parse_catalog


@pytest.mark.parametrize(
    "image, tag, pinned",
    [
        ("org/name:1.0", "1.0", True),
        ("org/name", None, False),
        ("org/name:latest", "latest", False),
        ("registry:5000/org/name", None, False),
        ("registry:5000/org/name:2.9.1-cuda12.8", "2.9.1-cuda12.8", True),
        ("org/name@sha256:" + "a" * 64, None, True),
        ("org/name:latest@sha256:" + "b" * 64, "latest", True),
    ],
)
def test_tags_and_pinning(image, tag, pinned):
    assert image_tag(image) == tag
    assert is_pinned(image) is pinned


def test_parse_keeps_order_and_fields():
    catalog = parse_catalog(
        {
            "b-first": {"image": "org/b:1", "display_name": "B", "cuda": "12.8"},
            "a-second": {"image": "org/a:2", "groups": ["staff"], "description": "for staff"},
        }
    )
    assert catalog == (
        CatalogImage("b-first", "B", "org/b:1", "12.8"),
        CatalogImage("a-second", "a-second", "org/a:2", "", "for staff", frozenset({"staff"})),
    )


@pytest.mark.parametrize(
    "entries, words",
    [
        ({"x": {"image": "org/x"}}, "not pinned"),
        ({"x": {"image": "org/x:latest"}}, "not pinned"),
        ({"x": {}}, "needs an 'image'"),
        ({"x": {"image": "org/x:1", "tag": "1"}}, "unknown field"),
        ({"x": {"image": "org/x:1", "cuda": 12.8}}, "'cuda' must be a version"),
        ({"x": {"image": "org/x:1", "groups": "staff"}}, "list of group names"),
        ({"X Y": {"image": "org/x:1"}}, "image key"),
        ({"": {"image": "org/x:1"}}, "image key"),
        ({"x": "org/x:1"}, "must be a dict"),
        ({"x": {"image": "org/x y:1"}}, "needs an 'image'"),
        (["org/x:1"], "dict of image key"),
    ],
)
def test_bad_catalog_is_refused_with_reason(entries, words):
    with pytest.raises(ConfigError, match=words):
        parse_catalog(entries)


def test_unpinned_allowed_when_admin_says_so():
    (image,) = parse_catalog({"x": {"image": "org/x"}}, allow_unpinned=True)
    assert image.image == "org/x"


def test_images_for_groups():
    catalog = parse_catalog(
        {
            "open": {"image": "o:1"},
            "staff": {"image": "s:1", "groups": ["staff"]},
            "lab": {"image": "l:1", "groups": ["lab", "staff"]},
        }
    )
    assert [i.key for i in images_for(catalog, [])] == ["open"]
    assert [i.key for i in images_for(catalog, ["lab"])] == ["open", "lab"]
    assert [i.key for i in images_for(catalog, ["staff", "x"])] == ["open", "staff", "lab"]
