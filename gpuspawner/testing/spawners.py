"""Spawners made as a hub makes them, without a hub process (for tests and benchmarks)."""

import types
import zlib

from traitlets.config import Config

from ..docker import GPUDockerSpawner


def hubless_docker_spawner(config: Config, user: str, server: str = "") -> GPUDockerSpawner:
    """A GPUDockerSpawner for ``user``'s ``server`` with ``config``, the hub's objects reduced
    to what the spawner reads (the user's id is a stable hash of the name)."""
    return GPUDockerSpawner(
        user=types.SimpleNamespace(
            name=user, id=zlib.crc32(user.encode()), groups=[], url="/user/%s/" % user
        ),
        orm_spawner=types.SimpleNamespace(name=server, user_options={}, server=None),
        hub=types.SimpleNamespace(
            public_host="", api_url="http://172.17.0.1:8081/hub/api", base_url="/hub/"
        ),
        config=config,
    )
