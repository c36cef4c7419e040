"""The fair queue in one hub process: the spawner's own lifecycle against the real Docker
engine, no hub process (tests/test_queue_hub.py has the hub's side).

The first holders are real containers started by the spawner (``sleep`` instead of
JupyterLab, "runtime-env" GPU mode: the engine here cannot attach GPUs); killing one is
what the hub's poll notices. The waiters are spawners in this process, as many as a course
hub has, waiting in ``reserve_gpus`` exactly as ``start()`` does.
"""

import asyncio
import secrets
import time

import pytest
from traitlets.config import Config

from gpuspawner.docker import GPUDockerSpawner
from gpuspawner.lifecycle.base import queue
from gpuspawner.lifecycle.refusal import SpawnRefused
from gpuspawner.lifecycle.shared import reset_shared_state
from gpuspawner.testing.spawners import hubless_docker_spawner
from gpuspawner.testing.hubprocess import FAKE_GPUS

pytestmark = pytest.mark.docker

GPUS = [dict(gpu, uuid=gpu["uuid"].replace("GPU-", "GPU-queue")) for gpu in FAKE_GPUS]
UUIDS = {g["uuid"] for g in GPUS}


@pytest.fixture
def hub_process(tmp_path, test_image, docker_client):
    """What one hub process's spawners share: a fresh pool and line; a spawner factory."""
    reset_shared_state()
    prefix = "gpstq" + secrets.token_hex(3)

    def make(user: str, server: str = "", **settings) -> GPUDockerSpawner:
        config = Config()
        config.GPUDockerSpawner.images = {"demo": {"image": test_image["demo"]["image"]}}
        config.GPUDockerSpawner.inventory = GPUS
        config.GPUDockerSpawner.prefix = prefix
        config.GPUDockerSpawner.gpu_mode = "runtime-env"
        config.GPUDockerSpawner.usage_db_url = "sqlite:///%s" % (tmp_path / "usage.sqlite")
        config.GPUDockerSpawner.gpu_queue_timeout = 300
        config.GPUDockerSpawner.gpu_max_age = 3600
        config.GPUDockerSpawner.extra_create_kwargs = {"entrypoint": ["sh", "-c", "sleep 600"]}
        for key, value in settings.items():
            setattr(config.GPUDockerSpawner, key, value)
        spawner = hubless_docker_spawner(config, user, server)
        spawner.choice = spawner.choose({"gpus": 1})
        spawner.image = spawner.choice.image.image
        return spawner

    yield make
    reset_shared_state()
    for container in docker_client.containers.list(all=True, filters={"name": prefix}):
        container.remove(force=True)
    for volume in docker_client.volumes.list(filters={"name": prefix}):
        volume.remove(force=True)


def line_of(spawner) -> list[str]:
    q = spawner.shared.queue
    return [place.user for place in q.line.places] if q else []


async def until(condition, timeout=10.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("timed out waiting for " + what)


async def join_in_order(waiters):
    """Start each waiter's reservation once the one before it is in line (arrival order)."""
    tasks = []
    for i, spawner in enumerate(waiters):
        tasks.append(asyncio.ensure_future(spawner.reserve_gpus(1)))
        await until(lambda: len(line_of(spawner)) == i + 1, what="waiter %d in line" % i)
    return tasks


def assert_pool_sound(spawner):
    """No GPU of this hub held twice, nobody over their quota of 1 (the engine is shared:
    other tests' containers hold GPUs of their own)."""
    holdings = [h for h in spawner.pool.holdings if any(g.uuid in UUIDS for g in h.gpus)]
    uuids = [g.uuid for h in holdings for g in h.gpus]
    assert len(uuids) == len(set(uuids)) == 8, holdings
    users = [h.user for h in holdings]
    assert len(users) == len(set(users)), holdings


async def start_holder(spawner):
    """A server holding a GPU in a real container (its JupyterLab replaced by sleep)."""
    await spawner.reserve_gpus(1)
    created = await spawner.create_object()
    spawner.object_id = created["Id"]
    await spawner.start_object()
    await spawner.confirm_gpus()


async def test_a_hundred_wait_for_eight_gpus_and_each_freed_gpu_reaches_the_next(
    hub_process, docker_client
):
    holders = [hub_process("holder-%d" % i) for i in range(8)]
    for holder in holders:
        await start_holder(holder)
    assert {g.uuid for h in holders for g in h.held_gpus} == UUIDS
    waiters = [hub_process("student-%03d" % i) for i in range(100)]
    tasks = await join_in_order(waiters)
    assert line_of(waiters[0]) == [w.holder for w in waiters]

    # the progress page says where each waits, for what, and when a GPU comes free at the latest
    second = waiters[1]._progress_log[-1]["message"]
    assert second.startswith("2nd in line for 1 GPU; 8 servers hold them; one stops at the latest")
    assert second.endswith("(maximum age)")
    assert waiters[99]._progress_log[-1]["message"].startswith("100th in line for 1 GPU; ")
    assert waiters[0]._progress_log[-1]["message"].startswith("1st in line")

    granted_order, latencies = [], []
    current = list(holders)
    for turn in range(100):
        releasing = current.pop(0)
        freed = releasing.held_gpus[0].uuid
        started = time.monotonic()
        if turn < 8:
            # a real container dies (OOM, docker kill); the hub's poll notices and frees it
            docker_client.containers.get(releasing.container_id).kill()
            assert await releasing.poll() is not None
        else:
            await releasing.release_gpus()  # a server stopped
        winner = waiters[turn]
        await asyncio.wait_for(asyncio.shield(tasks[turn]), timeout=1.0)  # within a second
        latencies.append(time.monotonic() - started)
        (gpu,) = tasks[turn].result()
        assert gpu.uuid == freed  # the freed GPU, to the head of the line
        assert not any(t.done() for t in tasks[turn + 1 :]), "someone behind took a GPU"
        granted_order.append(winner.user.name)
        assert_pool_sound(winner)
        current.append(winner)
        if turn + 1 < 100:  # the next one moved up, and is told so
            await until(lambda: waiters[turn + 1]._progress_log[-1]["message"].startswith(
                "1st in line"), timeout=2, what="the new head told")  # fmt: skip
    assert granted_order == ["student-%03d" % i for i in range(100)]  # order kept, none starved
    assert max(latencies) < 1.0
    assert not line_of(waiters[0])
    for spawner in current:
        await spawner.release_gpus()


async def test_cancelling_leaves_the_line_at_once_and_no_barging(hub_process):
    holder = hub_process("holder")
    # one GPU only on this hub: the others wait
    holder.inventory = GPUS[:1]
    reset_shared_state()
    holder = hub_process("holder", inventory=GPUS[:1])
    await holder.reserve_gpus(1)
    waiters = [hub_process(u, inventory=GPUS[:1]) for u in ("ann", "ben", "cid")]
    tasks = await join_in_order(waiters)
    assert waiters[2]._progress_log[-1]["message"].startswith("3rd in line for 1 GPU; 1 server")

    tasks[0].cancel()  # ann's spawn cancelled (the hub's cancel button)
    await until(lambda: line_of(holder) == [waiters[1].holder, waiters[2].holder], timeout=1)
    await until(lambda: waiters[2]._progress_log[-1]["message"].startswith("2nd in line"), 1)

    # a newcomer while others wait joins the end even when a GPU is free at that moment
    holder.pool.release(holder.holder, "")  # freed without a wake-up
    newcomer = hub_process("dee", inventory=GPUS[:1])
    late = asyncio.ensure_future(newcomer.reserve_gpus(1))
    await until(lambda: line_of(holder)[-1:] == [newcomer.holder], timeout=2, what="dee in line")
    assert not late.done()
    queue.notify(holder)
    (gpu,) = await asyncio.wait_for(tasks[1], 2)  # ben, the head, takes it
    assert gpu.uuid == GPUS[0]["uuid"]
    assert not tasks[2].done() and not late.done()
    for task in (tasks[2], late):
        task.cancel()
    await asyncio.gather(tasks[0], tasks[2], late, return_exceptions=True)
    assert line_of(holder) == []


async def test_one_place_per_user_and_quota_still_fails_at_once(hub_process):
    holder = hub_process("holder", inventory=GPUS[:1])
    await holder.reserve_gpus(1)
    first = hub_process("eve", "train", inventory=GPUS[:1])
    waiting = asyncio.ensure_future(first.reserve_gpus(1))
    await until(lambda: len(line_of(holder)) == 1)
    second = hub_process("eve", "eval", inventory=GPUS[:1])
    with pytest.raises(SpawnRefused) as refused:
        await second.reserve_gpus(1)
    assert refused.value.status_code == 409
    assert refused.value.jupyterhub_message == (
        "You are already waiting for a GPU for server 'train' (1st in line): cancel that spawn"
        " or let it start before starting another GPU server."
    )
    # the holder's second GPU server is over its quota: refused at once, line or not
    over = hub_process("holder", "more", inventory=GPUS[:1])
    started = time.monotonic()
    with pytest.raises(SpawnRefused) as quota:
        await over.reserve_gpus(1)
    assert quota.value.status_code == 403 and time.monotonic() - started < 2
    waiting.cancel()
    await asyncio.gather(waiting, return_exceptions=True)


async def test_the_wait_ends_with_a_sentence_after_gpu_queue_timeout(hub_process):
    holder = hub_process("holder", inventory=GPUS[:1])
    await holder.reserve_gpus(1)
    waiter = hub_process("fox", inventory=GPUS[:1], gpu_queue_timeout=1.5)
    started = time.monotonic()
    with pytest.raises(SpawnRefused) as refused:
        await waiter.reserve_gpus(1)
    assert 1.4 < time.monotonic() - started < 4
    assert refused.value.status_code == 503
    assert refused.value.jupyterhub_message == (
        "No GPU came free for you in 2 seconds: you asked for 1 GPU and were 1st in line."
        " Try again later, or start with fewer GPUs."
    )
    assert line_of(holder) == []


async def test_no_queue_timeout_refuses_at_once_as_before(hub_process):
    holder = hub_process("holder", inventory=GPUS[:1], gpu_queue_timeout=0)
    await holder.reserve_gpus(1)
    waiter = hub_process("gil", inventory=GPUS[:1], gpu_queue_timeout=0)
    with pytest.raises(SpawnRefused) as refused:
        await waiter.reserve_gpus(1)
    assert refused.value.status_code == 503
    assert "Not enough GPUs are free" in refused.value.jupyterhub_message
    assert waiter.shared.queue is None


def test_the_start_timeout_covers_the_wait(hub_process):
    spawner = hub_process("hal", start_timeout=120, gpu_queue_timeout=600, pull_policy="never")
    spawner.run_pre_spawn_hook()
    assert spawner.start_timeout == 721
    spawner.run_pre_spawn_hook()  # a second spawn of the same server: not added twice
    assert spawner.start_timeout == 721
    spawner.choice = spawner.choose({"gpus": 0})  # a CPU-only spawn never waits
    spawner.run_pre_spawn_hook()
    assert spawner.start_timeout == 120


def test_a_negative_queue_timeout_is_refused_with_a_sentence(hub_process):
    from traitlets import TraitError

    with pytest.raises(TraitError, match=r"gpu_queue_timeout must be 0 or more, not -1"):
        hub_process("ida", gpu_queue_timeout=-1.0)


async def test_a_gpu_freed_outside_the_hub_reaches_the_head_at_its_next_look(
    hub_process, docker_client
):
    holder = hub_process("holder", inventory=GPUS[:1])
    await start_holder(holder)
    waiter = hub_process("jo", inventory=GPUS[:1])
    task = asyncio.ensure_future(waiter.reserve_gpus(1))
    await until(lambda: len(line_of(holder)) == 1)
    await asyncio.sleep(1)
    assert not task.done()
    # killed from outside, and no poll of the holder: the head lists the engine itself
    docker_client.containers.get(holder.container_id).kill()
    started = time.monotonic()
    (gpu,) = await asyncio.wait_for(task, queue.HEAD_RECHECK_SECONDS + 5)
    assert gpu.uuid == GPUS[0]["uuid"]
    assert time.monotonic() - started <= queue.HEAD_RECHECK_SECONDS + 3
