"""A course profile's per-group scratch volume on Docker: created writable by the servers.

A named volume the engine creates for a mount is owned by root, so the server's
unprivileged user could not write to a group's scratch. Before the container is created,
each writable named volume of the spawn's profile that does not exist yet is created
(labelled with the hub and the group's volume) and handed to the server's user by a
throw-away helper container (``chown``, no network). Read-only datasets and host paths are
the admin's, as they are.
"""

from docker.errors import NotFound

from .workspace import LABEL_HUB, LABEL_HUB_ID, run_helper

LABEL_SCRATCH = "gpuspawner.scratch"  # the profile whose scratch the volume is
HELPER_TIMEOUT = 120


async def prepare_scratch(spawner) -> list[str]:
    """Create the spawn's missing scratch volumes, owned by its container user; their names."""
    limits = spawner.profile_limits()
    if limits is None:
        return []
    created = []
    for source, _path, read_only in limits.volumes:
        if read_only or source.startswith("/"):
            continue
        try:
            await spawner.docker("inspect_volume", source)
            continue
        except NotFound:
            pass
        labels = {
            LABEL_HUB: spawner.prefix,
            LABEL_HUB_ID: spawner.hub_id,
            LABEL_SCRATCH: spawner.choice_profile().key,
        }
        await spawner.docker("create_volume", source, labels=labels)
        await _hand_over(spawner, source)
        spawner.log.info("Scratch volume %s created for %s", source, spawner._log_name)
        created.append(source)
    return created


async def _hand_over(spawner, volume: str) -> None:
    """chown the new volume's root to the server's user, in a helper container."""
    await run_helper(
        spawner, spawner.image, ["chown", str(spawner.container_user), "/scratch"],
        binds={volume: {"bind": "/scratch", "mode": "rw"}}, labels={LABEL_SCRATCH: volume},
        timeout=HELPER_TIMEOUT, what="preparing the scratch volume %s" % volume,
    )  # fmt: skip
