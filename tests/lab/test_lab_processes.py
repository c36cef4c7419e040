"""Whose GPU processes may be named: real processes in the real /proc."""

from __future__ import annotations

import os
import subprocess

import pytest

from gpuspawner.lab.processes import CONTAINER_NOTE, attribute, in_container
from gpuspawner.nvml import ProcessUsage

NOBODY = 65534


@pytest.fixture
def nobody_process():
    """A real process of another user (needs root to start)."""
    if os.getuid() != 0:
        pytest.skip("starting another user's process needs root")
    proc = subprocess.Popen(["sleep", "60"], user=NOBODY, group=NOBODY)
    yield proc
    proc.kill()
    proc.wait()


def test_own_process_is_named_on_the_host():
    me = os.getpid()
    result = attribute([ProcessUsage(me, 2 * 1024**3)], host_pids=True, uid=os.getuid())
    assert result.mine == [{"pid": me, "name": open("/proc/self/comm").read().strip(),
                            "used_memory": 2 * 1024**3}]
    assert result.other_count == 0 and result.note is None


def test_other_users_process_is_counted_not_named(nobody_process):
    result = attribute(
        [ProcessUsage(os.getpid(), 100), ProcessUsage(nobody_process.pid, 300)],
        host_pids=True, uid=os.getuid(),
    )
    assert [p["pid"] for p in result.mine] == [os.getpid()]
    assert result.other_count == 1 and result.other_memory == 300
    assert "sleep" not in repr(result.as_json())
    assert result.note == "1 process of other users not shown."


def test_a_pid_that_does_not_exist_here_is_not_named():
    result = attribute([ProcessUsage(2**22 + 12345, None)], host_pids=True, uid=os.getuid())
    assert result.mine == [] and result.other_count == 1 and result.other_memory is None


def test_in_a_container_nothing_is_named_even_our_own_pid():
    """Host PIDs may collide with local ones: inside a container, only count."""
    result = attribute([ProcessUsage(os.getpid(), 100)], host_pids=False, uid=os.getuid())
    assert result.mine == [] and result.other_count == 1
    assert result.note == CONTAINER_NOTE


def test_no_processes():
    assert attribute([], True, 0).as_json() == {
        "processes": [], "other_processes": {"count": 0, "used_memory": None}, "process_note": None,
    }
    assert attribute(None, True, 0).other_count == 0


def test_in_container_markers(tmp_path):
    (tmp_path / "proc" / "1").mkdir(parents=True)
    (tmp_path / "proc" / "1" / "cgroup").write_text("0::/\n")
    assert not in_container({}, root=str(tmp_path))
    assert in_container({"KUBERNETES_SERVICE_HOST": "10.0.0.1"}, root=str(tmp_path))
    (tmp_path / "proc" / "1" / "cgroup").write_text("12:pids:/docker/0123abcd\n")
    assert in_container({}, root=str(tmp_path))
    (tmp_path / "proc" / "1" / "cgroup").write_text("0::/\n")
    (tmp_path / ".dockerenv").touch()
    assert in_container({}, root=str(tmp_path))
