"""The user's workspace volume on Docker: whose it is, and what happens to it when the user goes.

A workspace volume is named from ``workspace_volume_template`` (the escaped user name) and
labelled with the hub's user id (``gpuspawner.user-id``), so:

- a renamed user keeps their volume: the volume labelled with their id is used, whatever the
  template gives for the new name;
- a user deleted from the hub does not hand their files to the next person who gets that name:
  by default (``workspace_on_user_delete = "archive"``) the volume is copied to
  ``<prefix>-archive-u<id>-<time>`` (a name no user's template can give: escaped user names
  never contain a bare ``-`` followed by a letter past ``f``) and then removed.
"""

import time

from docker.errors import APIError, NotFound
from dockerspawner import DockerSpawner
from traitlets import Enum
from traitlets.config import LoggingConfigurable

from ..policy.names import DOCKER_NAME_MAX, fit_name

LABEL_USER = "gpuspawner.user"
LABEL_USER_ID = "gpuspawner.user-id"
LABEL_HUB = "gpuspawner.hub"  # the container prefix: hubs sharing an engine keep theirs apart
LABEL_HUB_ID = "gpuspawner.hub-id"  # the hub itself (GPUDockerSpawner.hub_id), prefix or not
LABEL_ARCHIVED_USER = "gpuspawner.archived-user"
LABEL_ARCHIVED_AT = "gpuspawner.archived-at"
ON_USER_DELETE = ("archive", "remove", "keep")
COPY_TIMEOUT = 3600


def archive_name(prefix: str, user_id, now: float) -> str:
    """The archive of a deleted user's workspace: no user name's template can give it."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(now))
    return fit_name("%s-archive-u%s-%s" % (prefix, user_id, stamp), DOCKER_NAME_MAX)


def owner_filter(prefix: str, user_id) -> dict:
    """``docker volume ls`` filters for the volumes of one hub user."""
    return {"label": ["%s=%s" % (LABEL_USER_ID, user_id), "%s=%s" % (LABEL_HUB, prefix)]}


def owned_volume(volumes, user_id, hub_id: str | None = None) -> str | None:
    """The workspace volume labelled with this hub user id (``docker volume ls`` output);
    never one another hub (another ``gpuspawner.hub-id``) labelled, whose user ids are its own."""
    mine = sorted(
        v["Name"]
        for v in volumes or ()
        if (v.get("Labels") or {}).get(LABEL_USER_ID) == str(user_id)
        and LABEL_ARCHIVED_USER not in (v.get("Labels") or {})
        and (v.get("Labels") or {}).get(LABEL_HUB_ID, hub_id) == hub_id
    )
    return mine[0] if mine else None


class DockerWorkspace(LoggingConfigurable):
    """The workspace volume's owner and its end (a mixin of GPUDockerSpawner)."""

    hub_id: str  # GPUDockerSpawner.hub_id

    workspace_on_user_delete = Enum(
        ON_USER_DELETE,
        "archive",
        help="""What happens to a user's workspace volume when the user is deleted from the hub.

        "archive" (default): copied to a volume named <prefix>-archive-u<user id>-<UTC time>
        (labelled with the user's name and the time; no future user can be given it), then
        removed, so a new user who gets the same name starts with an empty workspace.
        "remove": removed (the files are gone). "keep": left as it is (as before 0.x): a new
        user with the same name then gets the deleted user's files.

        Deleting a named server never touches the workspace (all of a user's servers share it).""",
    ).tag(config=True)

    _workspace_volume_name: str | None = None

    def workspace_volume_name(self) -> str:
        """The volume this user's servers mount: the one found for the user's id at the last
        start, else the template's name."""
        if self._workspace_volume_name:
            return self._workspace_volume_name
        return fit_name(
            self.format_volume_name(self.workspace_volume_template, self), DOCKER_NAME_MAX
        )

    async def prepare_workspace(self) -> str:
        """Find or create this user's workspace volume (labelled with the hub user id)."""
        self._workspace_volume_name = None
        listed = await self.docker("volumes", filters=owner_filter(self.prefix, self.user.id))
        found = owned_volume((listed or {}).get("Volumes"), self.user.id, self.hub_id)
        if found:
            self._workspace_volume_name = found  # the user may have been renamed since
            return found
        name = self.workspace_volume_name()
        labels = {
            LABEL_USER: self.user.name,
            LABEL_USER_ID: str(self.user.id),
            LABEL_HUB: self.prefix,
            LABEL_HUB_ID: self.hub_id,
        }
        await self.docker("create_volume", name, labels=labels)
        return name

    async def delete_forever(self):
        """JupyterHub deletes the user (the default server) or a named server (ignored)."""
        if self.name:
            return  # a named server: the user's workspace stays with the user
        listed = await self.docker("volumes", filters=owner_filter(self.prefix, self.user.id))
        volume = owned_volume((listed or {}).get("Volumes"), self.user.id, self.hub_id)
        if volume is None:
            volume = self.workspace_volume_name()
            try:
                await self.docker("inspect_volume", volume)
            except NotFound:
                return
        policy = self.workspace_on_user_delete
        if policy == "keep":
            self.log.info("User %s deleted: workspace volume %s kept", self.user.name, volume)
            return
        if policy == "archive":
            archive = await self.archive_volume(volume)
            self.log.info(
                "User %s deleted: workspace %s archived as %s", self.user.name, volume, archive
            )
        await self.docker("remove_volume", volume)
        self.log.info("User %s deleted: workspace volume %s removed", self.user.name, volume)

    async def archive_volume(self, volume: str) -> str:
        """Copy ``volume`` into a new archive volume with a helper container; raise if it fails
        (the volume is then not removed)."""
        now = time.time()
        archive = archive_name(self.prefix, self.user.id, now)
        await self.docker("create_volume", archive, labels={
            LABEL_ARCHIVED_USER: self.user.name,
            LABEL_USER_ID: str(self.user.id),
            LABEL_HUB: self.prefix,
            LABEL_ARCHIVED_AT: time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now)),
        })  # fmt: skip
        image = self.catalog[0].image if self.catalog else self.image
        await run_helper(
            self, image, ["cp", "-a", "/from/.", "/to/"],
            binds={volume: {"bind": "/from", "mode": "ro"}, archive: {"bind": "/to", "mode": "rw"}},
            labels={LABEL_ARCHIVED_USER: self.user.name}, timeout=COPY_TIMEOUT,
            what="copying %s to %s" % (volume, archive),
        )  # fmt: skip
        return archive


async def run_helper(
    spawner, image: str, command: list[str], *, binds: dict, labels: dict, timeout: float,
    what: str,
) -> None:
    """Run ``command`` as root in a throw-away container of ``image`` with ``binds`` and no
    network, wait for it and remove it; raise RuntimeError with its log's end if it fails
    (``what`` names the work for that message and the log)."""
    host_config = spawner.client.create_host_config(
        binds=binds, network_mode="none", security_opt=["no-new-privileges"]
    )
    helper = await DockerSpawner.docker(  # as is: not a server's container
        spawner, "create_container", image, command=command, user="0", entrypoint=[],
        host_config=host_config, labels=labels,
    )  # fmt: skip
    try:
        await spawner.docker("start", helper["Id"])
        result = await spawner.docker("wait", helper["Id"], timeout=timeout)
        if result.get("StatusCode") != 0:
            logs = await spawner.docker("logs", helper["Id"])
            raise RuntimeError("%s failed: %s" % (what, logs[-500:]))
    finally:
        try:
            await spawner.docker("remove_container", helper["Id"], force=True)
        except APIError as e:
            spawner.log.warning("Could not remove the helper container for %s: %s", what, e)
