"""Engine object names for every user name the hub accepts, and quoting of user input (pure)."""

import re

from dockerspawner import DockerSpawner
from hypothesis import given, settings
from hypothesis import strategies as st
from kubespawner.slugs import is_valid_object_name, safe_slug

from gpuspawner.policy.names import (
    DOCKER_NAME_MAX,
    KUBE_NAME_MAX,
    fit_name,
    quote_input,
    unservable_reason,
)

DOCKER_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]+$")  # the engine's rule for both
# any character JupyterHub takes (up to its 255-character column), control characters included
USER_NAMES = st.text(
    st.characters(codec="utf-8", exclude_characters="/"), min_size=1, max_size=255
).filter(lambda name: name == name.strip())
SERVER_NAMES = st.one_of(st.just(""), st.text(st.characters(codec="utf-8"), max_size=255))


def docker_names(user: str, server: str) -> tuple[str, str]:
    """The container and workspace volume names, as GPUDockerSpawner renders them."""
    escape = DockerSpawner._escape
    container = "gpuspawner-" + escape(user) + ("--" + escape(server.lower()) if server else "")
    volume = "gpuspawner-workspace-" + escape(user)
    return fit_name(container, DOCKER_NAME_MAX), fit_name(volume, DOCKER_NAME_MAX)


def kube_pvc_name(user: str) -> str:
    return fit_name("gpuspawner-workspace-" + safe_slug(user, max_length=48), KUBE_NAME_MAX)


@settings(max_examples=400, deadline=None)
@given(USER_NAMES, SERVER_NAMES)
def test_docker_names_fit_the_engine_for_any_name(user, server):
    for name in docker_names(user, server):
        assert len(name.encode()) <= DOCKER_NAME_MAX and DOCKER_NAME.match(name), name


@settings(max_examples=400, deadline=None)
@given(USER_NAMES, USER_NAMES)
def test_distinct_users_never_share_a_volume_or_container(a, b):
    if a != b:
        assert docker_names(a, "")[1] != docker_names(b, "")[1]
        assert docker_names(a, "")[0] != docker_names(b, "")[0]
        assert kube_pvc_name(a) != kube_pvc_name(b)


@settings(max_examples=400, deadline=None)
@given(USER_NAMES)
def test_kube_pvc_names_are_valid_object_names(user):
    assert is_valid_object_name(kube_pvc_name(user)), kube_pvc_name(user)


def test_names_that_fit_are_kept_so_existing_workspaces_keep_their_volumes():
    for user in ("alice", "bob.smith@example.org", "Зоя", "学生" * 10, "a" * 230):
        volume = "gpuspawner-workspace-" + DockerSpawner._escape(user)
        if len(volume) <= DOCKER_NAME_MAX:
            assert docker_names(user, "")[1] == volume
    assert kube_pvc_name("alice") == "gpuspawner-workspace-alice"


def test_names_past_the_limit_are_cut_with_a_stable_hash():
    long = "gpuspawner-workspace-" + DockerSpawner._escape("学" * 27)  # 27 CJK: past 255 escaped
    assert len(long) > DOCKER_NAME_MAX
    cut = fit_name(long, DOCKER_NAME_MAX)
    assert len(cut) <= DOCKER_NAME_MAX and cut.startswith("gpuspawner-workspace-")
    assert re.search(r"---[0-9a-f]{8}$", cut) and cut == fit_name(long, DOCKER_NAME_MAX)


def test_quote_input_quotes_a_short_escaped_prefix():
    assert quote_input("demo") == "'demo'"
    huge = quote_input("x" * 300_000)
    assert len(huge) < 80 and "300000 characters" in huge
    assert "\\x00" in quote_input("a\x00b") and "\n" not in quote_input("a\nb")
    assert len(quote_input(list(range(100_000)))) < 80


def test_nul_names_cannot_be_served():
    assert unservable_reason("user name", "a\x00b").startswith("This user name cannot be served")
    assert unservable_reason("user name", "Зоя\x07") is None
