"""A user's own namespace on Kubernetes (kubespawner's ``enable_user_namespaces``).

Before the first pod goes into a new namespace: a ResourceQuota capping the user's GPU
requests at their quota (``user_namespace_gpu_quota``), so the cluster enforces it too, and
the wait for the namespace's "default" service account, without which admission refuses pods.
"""

import asyncio
import time

from kubernetes_asyncio.client.rest import ApiException
from traitlets import Bool
from traitlets.config import LoggingConfigurable

RESOURCE_QUOTA_NAME = "gpuspawner-gpus"


class KubeNamespace(LoggingConfigurable):
    """What a new user namespace gets (a mixin of KubeGPUSpawner)."""

    user_namespace_gpu_quota = Bool(
        False,
        help="""With ``enable_user_namespaces``: keep a ResourceQuota named
        "gpuspawner-gpus" in each user's namespace capping ``requests.<GPU resource>`` at
        the user's GPU quota, so the cluster enforces the limit too.""",
    ).tag(config=True)

    async def _ensure_namespace(self):
        await super()._ensure_namespace()
        if self.user_namespace_gpu_quota:
            await self._ensure_gpu_resource_quota()
        await self._wait_for_service_account()

    async def _wait_for_service_account(self, timeout: float = 10) -> None:
        """Admission refuses pods in a new namespace until its "default" service account exists."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                await self.api.read_namespaced_service_account("default", self.namespace)
                return
            except ApiException as e:
                if e.status != 404 or time.monotonic() > deadline:
                    return  # not allowed to look (403), or let the pod's creation say why
            await asyncio.sleep(0.2)

    async def _ensure_gpu_resource_quota(self) -> None:
        """A ResourceQuota capping the user's namespace at their GPU quota, computed by the
        cluster."""
        resources = {self.gpu_resource} | {
            p.get("resource", self.gpu_resource) for p in self.gpu_profiles.values()
        }
        # a shared resource's units are slots: the quota's GPUs times the servers per GPU
        hard = {
            "requests.%s" % name: str(self.user_quota.count * self.gpu_replicas(name))
            for name in sorted(resources)
        }
        body = {
            "apiVersion": "v1",
            "kind": "ResourceQuota",
            "metadata": {
                "name": RESOURCE_QUOTA_NAME,
                "labels": {"app.kubernetes.io/managed-by": "gpuspawner"},
            },
            "spec": {"hard": hard},
        }
        try:
            await self.api.create_namespaced_resource_quota(self.namespace, body)
        except ApiException as e:
            if e.status != 409:
                raise
            await self.api.patch_namespaced_resource_quota(
                RESOURCE_QUOTA_NAME, self.namespace, {"spec": {"hard": hard}}
            )
        # admission refuses pods until the quota controller has filled in the status
        for _ in range(100):
            quota = await self.api.read_namespaced_resource_quota(
                RESOURCE_QUOTA_NAME, self.namespace
            )
            if (quota.status and quota.status.hard or {}) == hard:
                return
            await asyncio.sleep(0.1)
        self.log.warning(
            "ResourceQuota %s/%s has no status yet", self.namespace, RESOURCE_QUOTA_NAME
        )
