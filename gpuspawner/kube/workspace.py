"""The user's workspace claim on Kubernetes when the user is deleted from the hub.

kubespawner removes the PVC of a deleted user (``delete_pvc``, default True), and with it,
under the usual Delete reclaim policy, the disk. Here ``workspace_on_user_delete`` decides:
"archive" (default) sets the bound PersistentVolume's reclaim policy to Retain and labels it
with the user before the claim is removed, so the disk stays (Released: Kubernetes never
binds it to a new claim by itself) and a new user given the same name gets a new, empty disk;
"remove" is kubespawner's removal; "keep" leaves the claim (a new user of that name gets it).
"""

import time

from kubernetes_asyncio.client.rest import ApiException
from traitlets import Enum
from traitlets.config import LoggingConfigurable

ON_USER_DELETE = ("archive", "remove", "keep")
LABEL_ARCHIVED_USER_ID = "gpuspawner.io/archived-user-id"
ANNOTATION_ARCHIVED_USER = "gpuspawner.io/archived-user"
ANNOTATION_ARCHIVED_CLAIM = "gpuspawner.io/archived-claim"
ANNOTATION_ARCHIVED_AT = "gpuspawner.io/archived-at"


def archive_patch(user_name: str, user_id, claim: str, now: float) -> dict:
    """The patch that keeps a deleted user's disk: Retain, and who it was."""
    return {
        "metadata": {
            "labels": {LABEL_ARCHIVED_USER_ID: str(user_id)},
            "annotations": {
                ANNOTATION_ARCHIVED_USER: user_name,
                ANNOTATION_ARCHIVED_CLAIM: claim,
                ANNOTATION_ARCHIVED_AT: time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now)),
            },
        },
        "spec": {"persistentVolumeReclaimPolicy": "Retain"},
    }


class KubeWorkspace(LoggingConfigurable):
    """What happens to the workspace claim of a deleted user (a mixin of KubeGPUSpawner)."""

    workspace_on_user_delete = Enum(
        ON_USER_DELETE,
        "archive",
        help="""What happens to a user's workspace PVC when the user is deleted from the hub.

        "archive" (default): the claim's PersistentVolume gets the reclaim policy Retain and
        the label gpuspawner.io/archived-user-id (annotations: the user's name, the claim, the
        time), then the claim is removed: the disk is kept for an admin and a new user with
        the same name gets a new one. Needs permission to patch PersistentVolumes; without it
        the claim is kept. "remove": the claim is removed (kubespawner's delete_pvc; the disk
        follows its reclaim policy). "keep": the claim stays; a new user with the same name
        then gets it. Deleting a named server never touches the user's claim.""",
    ).tag(config=True)

    async def delete_forever(self):
        policy = self.workspace_on_user_delete
        if self.name or not self.storage_pvc_ensure:
            return await super().delete_forever()
        if policy == "keep":
            self.log.info("User %s deleted: workspace claim %s kept", self.user.name, self.pvc_name)
            return
        if policy == "archive" and not await self.archive_claim():
            return  # the disk could not be kept: keep the claim rather than lose the files
        self.delete_pvc = True
        await super().delete_forever()

    async def archive_claim(self) -> bool:
        """Keep the disk of this user's claim; False when that was not possible."""
        try:
            claim = await self.api.read_namespaced_persistent_volume_claim(
                self.pvc_name, self.namespace
            )
        except ApiException as e:
            return e.status == 404  # no claim: nothing to keep
        volume = claim.spec.volume_name if claim.spec else None
        if not volume:
            return True  # never bound: no files
        body = archive_patch(self.user.name, self.user.id, self.pvc_name, time.time())
        try:
            await self.api.patch_persistent_volume(volume, body)
        except ApiException as e:
            self.log.error(
                "User %s deleted: could not keep disk %s of claim %s (%s %s); the claim is kept",
                self.user.name, volume, self.pvc_name, e.status, e.reason,
            )  # fmt: skip
            return False
        self.log.info(
            "User %s deleted: disk %s of claim %s archived", self.user.name, volume, self.pvc_name
        )
        return True
