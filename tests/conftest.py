"""Shared fixtures: the real Docker engine, the single-user image, real hub processes."""

import ipaddress
import os
import secrets

import pytest
from hypothesis import settings

from gpuspawner.testing.databases import fresh_postgres_database
from gpuspawner.testing.hubprocess import FAKE_GPUS, Hub, hub_settings

TEST_IMAGE = os.environ.get("GPUSPAWNER_TEST_IMAGE", "")
REQUIRE_DOCKER = os.environ.get("GPUSPAWNER_REQUIRE_DOCKER") == "1"

# the property tests check what comes out, not how fast: with the hubs, engines and browser
# of the other tests on two cores, one example can take longer than hypothesis's 200 ms
settings.register_profile("gpuspawner", deadline=None)
settings.load_profile("gpuspawner")


def _docker_or_skip():
    try:
        import docker

        client = docker.from_env()
        client.ping()
        client.images.get(TEST_IMAGE)
        return client
    except Exception as e:
        reason = "needs a Docker engine and the test image %r (scripts/test.sh builds it): %s" % (
            TEST_IMAGE,
            e,
        )
        if REQUIRE_DOCKER:
            pytest.fail(reason)
        pytest.skip(reason)


@pytest.fixture(scope="session")
def docker_client():
    return _docker_or_skip()


@pytest.fixture(scope="session")
def test_image(docker_client):
    """The offline single-user image, under two catalog tags (an image change keeps the
    workspace)."""
    image = docker_client.images.get(TEST_IMAGE)
    repository = TEST_IMAGE.rsplit(":", 1)[0]
    image.tag(repository, "second")
    return {
        "demo": {"image": TEST_IMAGE, "display_name": "Demo"},
        "demo-second": {"image": repository + ":second", "display_name": "Demo (second tag)"},
    }


@pytest.fixture(scope="session")
def bridge_gateway(docker_client):
    """Where containers on the default bridge reach the host (docker0)."""
    config = docker_client.networks.get("bridge").attrs["IPAM"]["Config"][0]
    return config.get("Gateway") or str(next(ipaddress.ip_network(config["Subnet"]).hosts()))


@pytest.fixture
def hub_factory(tmp_path_factory, docker_client, test_image, bridge_gateway):
    """Start hubs with given settings; everything they created is removed afterwards."""
    hubs = []
    prefix = "gpst" + secrets.token_hex(3)

    def make(**overrides) -> Hub:
        workdir = tmp_path_factory.mktemp("hub")
        settings = {"images": test_image, "gpus": FAKE_GPUS, "prefix": prefix, **overrides}
        hub = Hub(workdir, hub_settings(workdir, bridge_gateway, **settings)).start()
        hubs.append(hub)
        return hub

    yield make
    for hub in hubs:
        hub.stop()
    for container in docker_client.containers.list(all=True, filters={"name": prefix}):
        container.remove(force=True)
    for volume in docker_client.volumes.list(filters={"name": prefix}):
        volume.remove(force=True)
    for hub in hubs:
        # shown by pytest only when the test failed
        print("---- %s ----\n%s" % (hub.log_path, hub.log_tail(200)))


@pytest.fixture
def offline_kubeconfig(tmp_path, monkeypatch):
    """A kubeconfig naming no reachable cluster: building a spawner asks the cluster nothing."""
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: x\n"
        "clusters: [{name: x, cluster: {server: 'https://127.0.0.1:9'}}]\n"
        "users: [{name: x, user: {token: t}}]\n"
        "contexts: [{name: x, context: {cluster: x, user: x}}]\n"
    )
    from kubernetes_asyncio.client import Configuration
    from kubernetes_asyncio.config import kube_config
    from kubespawner import clients

    monkeypatch.setattr(Configuration, "_default", Configuration._default)  # restored after
    monkeypatch.setattr(clients, "_client_cache", {})
    monkeypatch.setattr(kube_config, "KUBE_CONFIG_DEFAULT_LOCATION", str(kubeconfig))
    clients.load_config.cache_clear()
    yield
    clients.load_config.cache_clear()  # the next spawner loads the real configuration


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request, tmp_path):
    """A fresh usage database: a sqlite file, and a PostgreSQL database (marked postgres)."""
    if request.param == "sqlite":
        yield "sqlite:///%s" % (tmp_path / "usage.sqlite")
        return
    url, drop = fresh_postgres_database()
    yield url
    drop()
