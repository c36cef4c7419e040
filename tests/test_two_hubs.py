"""Two hubs on one Docker engine, side by side: real hub processes, real containers.

Physical GPUs are shared: a GPU either hub's server holds is taken in both. Everything else is
the hub's own: users (both hubs number theirs from 1), quota, workspace volumes, the usage
ledger (and so budgets and the dashboard, which read it).
"""

import time
from pathlib import Path

import pytest

from gpuspawner.testing.hubprocess import FAKE_GPUS
from gpuspawner.usage.ledger import Ledger

pytestmark = pytest.mark.docker


def container_of(docker_client, prefix: str, user: str):
    (found,) = [
        c
        for c in docker_client.containers.list(filters={"label": "gpuspawner.user=" + user})
        if c.name.startswith(prefix)
    ]
    return found


def held_uuid(container) -> str:
    return container.labels["gpuspawner.gpus"]


def ledger_users(hub) -> dict[str, set[str]]:
    """user -> GPU UUIDs in the hub's own usage ledger (its working folder's default)."""
    ledger = Ledger("sqlite:///%s" % (Path(hub.settings["workdir"]) / "gpuspawner-usage.sqlite"))
    try:
        users: dict[str, set[str]] = {}
        for interval in ledger.intervals():
            users.setdefault(interval.user, set()).add(interval.gpu_uuid)
        return users
    finally:
        ledger.dispose()


def workspace_of(container) -> str:
    (name,) = [
        m["Name"] for m in container.attrs["Mounts"] if m["Destination"] == "/home/jovyan/work"
    ]
    return name


@pytest.mark.parametrize("same_prefix", [True, False], ids=["same-prefix", "own-prefixes"])
def test_two_hubs_share_the_gpus_and_nothing_else(hub_factory, docker_client, same_prefix):
    settings = dict(gpu_mode="runtime-env", gpus=FAKE_GPUS[:2], gpu_quota=1, gpu_resync_interval=1)
    first = hub_factory(**settings)
    prefix = first.settings["prefix"]
    second = hub_factory(**settings, **({} if same_prefix else {"prefix": prefix + "b"}))
    # each hub's first user has the id 1 in its own database
    first.create_user("ann")
    second.create_user("ben")
    assert first.spawn("ann", options={"gpus": 1}).status_code in (201, 202)
    first.wait_ready("ann")
    ann = container_of(docker_client, prefix, "ann")

    # the second hub sees ann's GPU as taken, but ben holds nothing
    form = second.spawn_form(second.login("ben"), "ben")
    assert "1 of 2 GPUs free on this hub. You hold no GPU." in form
    response = second.spawn("ben", options={"gpus": 1})
    assert response.status_code in (201, 202), response.text
    second.wait_ready("ben")
    ben = container_of(docker_client, second.settings["prefix"], "ben")
    assert {held_uuid(ann), held_uuid(ben)} == {g["uuid"] for g in FAKE_GPUS[:2]}
    assert ann.labels.get("gpuspawner.hub-id") != ben.labels.get("gpuspawner.hub-id")
    # ben's workspace is his own, not the volume of the other hub's user 1
    assert workspace_of(ben) != workspace_of(ann) and "ben" in workspace_of(ben)

    # both GPUs are held: the second hub's next user waits, in either hub
    second.create_user("cy")
    full = second.spawn("cy", options={"gpus": 1})
    assert full.status_code == 503 and "0 of 2 are free" in full.json()["message"]

    # each ledger records its own users' GPUs only, after a reconcile has seen both servers
    time.sleep(11)  # past the ledger's reconcile interval
    for hub, user in ((first, "ann"), (second, "ben")):
        hub.spawn_form(hub.login(user), user)  # a resync, and with it a reconcile
    first_ledger, second_ledger = ledger_users(first), ledger_users(second)
    assert first_ledger == {"ann": {held_uuid(ann)}}, first_ledger
    assert second_ledger == {"ben": {held_uuid(ben)}}, second_ledger
