"""Spawn options from the form and the REST API are checked the same way (pure)."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gpuspawner.errors import OptionsError
from gpuspawner.policy.catalog import parse_catalog
from gpuspawner.policy.options import SpawnChoice, options_from_form, parse_user_options

CATALOG = parse_catalog(
    {
        "pytorch-2.9": {"image": "org/pt:2.9", "cuda": "12.8"},
        "pytorch-2.8": {"image": "org/pt:2.8"},
        "staff-only": {"image": "org/staff:1", "groups": ["staff"]},
    }
)


def parse(options, groups=(), max_gpus=4, default_image=""):
    return parse_user_options(
        options, CATALOG, groups, max_gpus=max_gpus, default_image=default_image
    )


def test_defaults():
    assert parse({}) == SpawnChoice(CATALOG[0], 0)
    assert parse(None) == SpawnChoice(CATALOG[0], 0)
    assert parse({"image": ""}, default_image="pytorch-2.8").image.key == "pytorch-2.8"


def test_valid_choice():
    assert parse({"image": "pytorch-2.8", "gpus": 2}) == SpawnChoice(CATALOG[1], 2)
    assert parse({"image": "staff-only", "gpus": 4}, groups=["staff"]).image.key == "staff-only"


@pytest.mark.parametrize(
    "options, words",
    [
        ({"gpus": -1}, "from 0 to 4 per server, not -1"),
        ({"gpus": 5}, "from 0 to 4 per server, not 5"),
        ({"gpus": 10**100}, "from 0 to 4 per server"),
        ({"gpus": 1.0}, "whole number from 0 to 4, not 1.0"),
        ({"gpus": 1.5}, "whole number"),
        ({"gpus": "1"}, "whole number"),
        ({"gpus": True}, "whole number"),
        ({"gpus": None}, "whole number"),
        ({"gpus": [1]}, "whole number"),
        (
            {"image": "nope"},
            "no image 'nope' in this hub's catalog; choose one of: pytorch-2.9, pytorch-2.8",
        ),
        ({"image": "staff-only"}, "not available to your groups"),
        ({"image": "org/pt:2.9"}, "no image"),
        ({"image": 3}, "catalog name"),
        (
            {"image": "pytorch-2.9", "cmd": "bash"},
            "Unknown spawn option(s) 'cmd'; the options are: gpus, image, shared.",
        ),
        ({"privileged": True, "mem_limit": "1T"}, "'mem_limit', 'privileged'"),
        ([1, 2], "JSON object"),
        ("gpus=1", "JSON object"),
    ],
)
def test_bad_options_refused_with_sentence(options, words):
    with pytest.raises(OptionsError) as error:
        parse(options)
    assert words in str(error.value)


def test_no_image_for_user():
    staff_only = parse_catalog({"s": {"image": "s:1", "groups": ["staff"]}})
    with pytest.raises(OptionsError, match="No image"):
        parse_user_options({}, staff_only, [], max_gpus=1)


@given(
    st.dictionaries(
        st.text(max_size=5), st.one_of(st.integers(), st.text(), st.none(), st.floats()), max_size=3
    )
)
def test_any_input_gives_a_choice_or_an_options_error(options):
    try:
        choice = parse(options)
    except OptionsError as e:
        assert str(e).endswith(".")
    else:
        assert 0 <= choice.gpu_count <= 4 and choice.image in CATALOG


def test_options_from_form():
    assert options_from_form({"image": ["pytorch-2.8"], "gpus": ["2"]}) == {
        "image": "pytorch-2.8",
        "gpus": 2,
    }
    assert options_from_form({}) == {}
    assert options_from_form({"_xsrf": ["abc"], "gpus": ["0"]}) == {"gpus": 0}


@pytest.mark.parametrize("text", ["-1", "1.5", "two", "", "²", "1" * 12])
def test_form_gpu_count_must_be_digits(text):
    with pytest.raises(OptionsError, match="whole number"):
        options_from_form({"gpus": [text]})


def test_shared_slot_without_profiles():
    assert parse({"shared": True}) == SpawnChoice(CATALOG[0], 1, shared=True)
    assert parse({"shared": True, "gpus": 1}) == SpawnChoice(CATALOG[0], 1, shared=True)
    assert parse({"shared": False, "gpus": 2}) == SpawnChoice(CATALOG[0], 2)


@pytest.mark.parametrize(
    "options, words",
    [
        (
            {"shared": True, "gpus": 2},
            'A shared GPU slot is one GPU\'s share: ask for "gpus": 1 with "shared", not 2.',
        ),
        ({"shared": True, "gpus": 0}, "not 0."),
        ({"shared": "yes"}, "must be true (a slot of a shared GPU) or false, not 'yes'."),
        ({"shared": 1}, '"shared" must be true'),
        ({"profile": "lab"}, "This hub has no profiles; the options are: gpus, image, shared."),
    ],
)
def test_bad_shared_option(options, words):
    with pytest.raises(OptionsError) as error:
        parse(options)
    assert words in str(error.value)
