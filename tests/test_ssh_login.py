"""The SSH service's pure parts: who may open which server, and reading one command's output."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gpuspawner.ssh.forward import Base64Lines, relay_command
from gpuspawner.ssh.login import Refused, Target, requested_server, running_target, token_owner
from gpuspawner.ssh.terminal import ExecOutput, exec_line

HUB = "https://hub.example.org/"


@pytest.mark.parametrize("login, owner, server", [
    ("alice", "alice", ""),
    ("alice/train", "alice", "train"),
    ("a/b", "a/b", ""),                # a username with a slash: the whole name first
    ("a/b/gpu", "a/b", "gpu"),
    ("ünï cödé/x y", "ünï cödé", "x y"),
])
def test_the_login_name_picks_the_owners_server(login, owner, server):
    assert requested_server(login, owner) == server


@pytest.mark.parametrize("login, owner", [
    ("alice", "bob"), ("alice/train", "bob"), ("alicex", "alice"), ("alice/", "alice"),
    ("alice/a/b", "alice"), ("bob/alice", "alice"),
])
def test_another_users_name_is_refused(login, owner):
    expected = "belongs to another user, not to %s\\." % login.split("/")[0]
    with pytest.raises(Refused, match=expected):
        requested_server(login, owner)


def test_token_owner():
    assert token_owner(200, {"kind": "user", "name": "alice"}, "alice", HUB) == "alice"
    for status in (401, 403):
        with pytest.raises(Refused, match="valid JupyterHub API token of alice; .* "
                                          "Create one at https://hub.example.org/hub/token"):
            token_owner(status, None, "alice/train", HUB)
    with pytest.raises(Refused, match="not a user's token"):
        token_owner(200, {"kind": "service", "name": "ssh"}, "alice", HUB)
    with pytest.raises(Refused, match=r"did not answer \(HTTP 599\)"):
        token_owner(599, None, "alice", HUB)


def test_running_target():
    model = {"servers": {"": {"ready": True, "url": "/user/alice/"},
                         "train": {"ready": False, "pending": "spawn", "url": "/user/alice/train/"},
                         "old": {"ready": False, "pending": "stop", "url": "/user/alice/old/"}}}
    assert running_target("alice", "", 200, model, HUB) == Target("alice", "", "/user/alice/")
    with pytest.raises(Refused, match="alice's server named 'train' is still starting"):
        running_target("alice", "train", 200, model, HUB)
    with pytest.raises(Refused, match="alice's server named 'old' is still stopping"):
        running_target("alice", "old", 200, model, HUB)
    with pytest.raises(Refused, match="alice has no running server named 'gpu'. Start it at "
                                      "https://hub.example.org/hub/home"):
        running_target("alice", "gpu", 200, model, HUB)
    with pytest.raises(Refused, match="alice has no running server. Start it"):
        running_target("alice", "", 200, {"servers": {}}, HUB)
    with pytest.raises(Refused, match=r"HTTP 404"):
        running_target("alice", "", 404, None, HUB)


def terminal_text(nonce, output, status):
    """What a terminal shows: prompt, the typed line's echo, the markers around the output."""
    return ("jovyan@c0ffee:~/work$ " + exec_line("true", nonce, echo=True) + "\r\n"
            + "\x1egpst-%s-b\x1e" % nonce + output + "\x1egpst-%s-e%d\x1e" % (nonce, status)
            + "\r\nlogout\r\n")


@given(output=st.text(alphabet=st.characters(blacklist_characters="\x1e"), max_size=200),
       status=st.integers(0, 255), cuts=st.lists(st.integers(0, 400), max_size=8))
def test_exec_output_finds_the_markers_in_any_chunking(output, status, cuts):
    text = terminal_text("0123abcd", output, status)
    reader = ExecOutput("0123abcd")
    bounds = [0, *sorted(c % (len(text) + 1) for c in cuts), len(text)]
    seen = "".join(reader.feed(text[a:b]) for a, b in zip(bounds, bounds[1:], strict=False))
    assert seen == output
    assert reader.exit_status == status


def test_exec_output_ignores_other_nonces_and_the_echoed_line():
    reader = ExecOutput("aaaa")
    assert reader.feed(terminal_text("bbbb", "not mine", 3)) == ""
    assert reader.exit_status is None and not reader.started
    assert "\x1e" not in exec_line("echo hi", "aaaa", echo=False)  # its echo never matches


@given(data=st.binary(max_size=5000), cuts=st.lists(st.integers(0, 8000), max_size=6))
def test_forwarded_bytes_survive_any_chunking(data, cuts):
    import base64

    from gpuspawner.ssh.forward import CHUNK

    text = "".join(base64.b64encode(data[i:i + CHUNK]).decode() + "\n"
                   for i in range(0, len(data), CHUNK))
    lines = Base64Lines()
    bounds = [0, *sorted(c % (len(text) + 1) for c in cuts), len(text)]
    assert b"".join(lines.feed(text[a:b]) for a, b in zip(bounds, bounds[1:], strict=False)) == data


def test_relay_command_quotes_the_destination():
    command = relay_command("host; rm -rf ~", 22)
    assert command.startswith("exec python3 -c '") and command.endswith(" 'host; rm -rf ~' 22")
