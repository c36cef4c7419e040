"""The cluster's nodes as the hub reads them: one listing shared by concurrent spawns and
reused for ``node_cache_seconds``, and what it says read once per listing (a mixin of
KubeGPUSpawner; the node list is in its shared state)."""

import asyncio
import json
import time
from dataclasses import dataclass, field

from kubernetes_asyncio.client.rest import ApiException
from traitlets.config import LoggingConfigurable

from .holdings import gpu_kinds, gpu_totals, node_products
from .nodes import node_facts, resource_replicas


@dataclass
class NodeSummary:
    """What was read from one node listing, once for every spawn until the next listing."""

    nodes: list[dict] | None
    products: dict[str, str]  # node name -> GPU product (holdings.node_products)
    totals: dict[str, int] | None  # GPUs per type (holdings.gpu_totals)
    kinds: dict[str, tuple[str, str]]  # GPU type -> (resource, product) (holdings.gpu_kinds)
    replicas: dict[str, int]  # shared resource -> servers per GPU (nodes.resource_replicas)
    facts: tuple = ()  # nodes.node_facts: what the capacity check reads
    verdicts: dict = field(default_factory=dict)  # nodes.needs_key -> unsatisfiable_reason


class KubeNodeList(LoggingConfigurable):
    """The node list of KubeGPUSpawner's shared state, and its summary."""

    async def list_nodes(self) -> list[dict] | None:
        """The cluster's nodes, listed at most every ``node_cache_seconds``; None if forbidden."""
        state = self.shared
        if state.nodes_forbidden:
            return None
        fresh = time.monotonic() - state.nodes_listed_at < self.node_cache_seconds
        if state.nodes is not None and fresh:
            return state.nodes
        if state.nodes_listing is None or state.nodes_listing.done():
            # concurrent spawns share one listing
            state.nodes_listing = asyncio.ensure_future(self._list_nodes_now())
        try:
            return await asyncio.shield(state.nodes_listing)
        except (ApiException, asyncio.TimeoutError, OSError) as error:
            if state.nodes is None:
                raise
            # a slow or failing API server: the last list rather than a failed spawn or gauge
            self.log.warning("Listing nodes failed (%r); using the list of %.0f s ago",
                             error, time.monotonic() - state.nodes_listed_at)  # fmt: skip
            return state.nodes

    def forget_nodes(self) -> None:
        """List the nodes again at the next question (they may have changed)."""
        self.shared.nodes = None

    async def _list_nodes_now(self) -> list[dict] | None:
        state = self.shared
        response = await self.api.list_node(
            _preload_content=False, _request_timeout=self.k8s_api_request_timeout
        )
        body = await response.read()
        if response.status in (401, 403):
            self.log.warning(
                "Cannot list nodes (%s %s): the node capacity check is off",
                response.status,
                response.reason,
            )
            state.nodes_forbidden = True
            return None
        if response.status >= 300:
            raise ApiException(status=response.status, reason=response.reason)
        state.nodes = json.loads(body)["items"]
        state.nodes_listed_at = time.monotonic()
        return state.nodes

    def _node_summary(self, nodes: list[dict] | None) -> NodeSummary:
        """What a node list says, read once per listing (every spawn and every published
        gauge asks; the list changes only when nodes are listed again)."""
        summary = self.shared.node_summary
        if summary is None or summary.nodes is not nodes:
            summary = NodeSummary(
                nodes,
                node_products(nodes or ()),
                gpu_totals(nodes, self.shared_gpu_resources) if nodes else None,
                gpu_kinds(nodes or (), self.shared_gpu_resources),
                resource_replicas(nodes or (), self.shared_gpu_resources),
                node_facts(nodes or ()),
            )
            self.shared.node_summary = summary
        return summary
