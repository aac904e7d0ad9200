"""What discovery answers to the commands sent to it over the bus (`castray.shared.bus.Bus.request`).

Discovery sends ``reply.model_dump(mode="json")``; the asker validates it with the same model. These are
CastRay's own facts; the original CastRay's reply shapes are built from them by the gateway's adapter
(``castray.gateway.original.clusters``). A failed command is a `castray.shared.errors.CommandError`.
"""

from __future__ import annotations

from pydantic import BaseModel, Field

from castray.shared.events import ClusterInfo, NodeInfo


class DiscoverReply(BaseModel):
    """``discover``: the clusters this pass found, why configured addresses failed, and discovery's state
    after the pass (every cluster, every external node), which the asker's view may not hold yet."""

    found: list[ClusterInfo]
    failures: dict[str, str] = Field(default_factory=dict, description="address -> 'code: message'")
    clusters: list[ClusterInfo] = Field(default_factory=list)
    external_nodes: list[NodeInfo] = Field(default_factory=list)


class ConnectReply(BaseModel):
    """``connect``: the cluster adopted, its nodes, and a sentence saying so (how it was reached, its Ray
    version, how many nodes)."""

    cluster: ClusterInfo
    nodes: list[NodeInfo] = Field(default_factory=list)
    message: str


class DisconnectReply(BaseModel):
    """``disconnect``: the ids of the clusters disconnected (none if no external one was connected)."""

    disconnected: list[str]


class ClustersReply(BaseModel):
    """``clusters``: discovery's whole state, and the ids it ignores until an explicit discover/connect."""

    clusters: list[ClusterInfo]
    nodes: list[NodeInfo]
    disconnected: list[str]
