"""Pull every image of a hub's catalog onto this Docker host, before users ask for them.

    python -m gpuspawner.prepull -f jupyterhub_config.py [--always] [--timeout S]

Reads the catalog (``GPUDockerSpawner.images``), ``pull_timeout`` and the Docker client
settings (``client_kwargs``, ``tls_config``) from the hub's config file, pulls each image
that is not on this host yet (every one with ``--always``) through the engine's stream,
prints a line per image as it goes, and exits 1 when any image could not be pulled.
Run it where the hub's Docker engine is (``DOCKER_HOST`` is honoured), e.g. from cron
or before ``jupyterhub`` in the hub's start script.
"""

import argparse
import asyncio
import os
import sys
import time
from types import SimpleNamespace

from traitlets import TraitError
from traitlets.config import Config, PyFileConfigLoader

from ..errors import ConfigError
from .pull import (
    PullFailed,
    PullProgress,
    PullTimedOut,
    pull_refusal,
    pull_with_progress,
    timeout_refusal,
)


def load_config(path: str) -> Config:
    directory, name = os.path.split(os.path.abspath(path))
    return PyFileConfigLoader(name, path=directory).load_config()


def hub_spawner(config: Config):
    """The GPUDockerSpawner the hub's config makes: traitlets applies ``c.Spawner``,
    ``c.DockerSpawner`` and ``c.GPUDockerSpawner`` (and checks them) as in the hub."""
    from .spawner import GPUDockerSpawner

    # a stand-in user: some spawner settings render templates with the user's name
    user = SimpleNamespace(name="gpuspawner-prepull", id=0, groups=[])
    return GPUDockerSpawner(config=config, user=user)


async def prepull(
    config: Config, *, always: bool, timeout: float | None, interval: float, out=print
) -> list[str]:
    """Pull the catalog's images; return the keys of those that could not be pulled."""
    import docker

    spawner = hub_spawner(config)
    catalog = spawner.catalog
    timeout = timeout or spawner.pull_timeout
    client = spawner.client  # DockerSpawner's: tls_config, client_kwargs, DOCKER_HOST
    failed, done = [], {}
    for image in catalog:
        key, ref = image.key, image.image
        if ref in done:
            out("%s: same image as %s (%s)" % (key, done[ref], ref))
            if done[ref] in failed:
                failed.append(key)
            continue
        done[ref] = key
        if not always:
            try:
                client.inspect_image(ref)
                out("%s: already on this host (%s)" % (key, ref))
                continue
            except docker.errors.NotFound:
                pass
        out("%s: pulling %s" % (key, ref))
        started = time.monotonic()

        def report(progress: PullProgress, key=key) -> None:
            out("%s: %s" % (key, progress.message(key)))

        try:
            progress = await pull_with_progress(
                client, ref, timeout=timeout, report=report, interval=interval
            )
        except PullTimedOut as e:
            out("%s: %s" % (key, timeout_refusal(ref, image.display_name, e, key)))
            failed.append(key)
        except (PullFailed, docker.errors.APIError) as e:
            out(
                "%s: %s"
                % (
                    key,
                    pull_refusal(ref, image.display_name, str(getattr(e, "explanation", "") or e)),
                )
            )
            failed.append(key)
        else:
            out("%s: %s" % (key, progress.summary(key, time.monotonic() - started)))
    if failed:
        out(
            "%d of %d images could not be pulled: %s."
            % (len(failed), len(catalog), ", ".join(failed))
        )
    else:
        out("All %d catalog images are on this host." % len(catalog))
    return failed


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m gpuspawner.prepull",
        description="Pull every image of a hub's catalog onto this Docker host.",
    )
    parser.add_argument(
        "-f", "--config", default="jupyterhub_config.py", help="the hub's config file"
    )
    parser.add_argument(
        "--always", action="store_true", help="pull images already on this host too"
    )
    parser.add_argument(
        "--timeout", type=float, help="seconds per image (default: the config's pull_timeout, 900)"
    )
    parser.add_argument(
        "--interval", type=float, default=5.0, help="seconds between progress lines (default 5)"
    )
    args = parser.parse_args(argv)
    try:
        config = load_config(args.config)
        failed = asyncio.run(
            prepull(
                config,
                always=args.always,
                timeout=args.timeout,
                interval=args.interval,
                out=lambda line: print(line, flush=True),
            )
        )
    except (ConfigError, TraitError, OSError) as e:
        print("prepull: %s" % e, file=sys.stderr)
        return 2
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
