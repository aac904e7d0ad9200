"""From a transfer record to a driver plan: which cluster, which Ray nodes, which paths.

The record's destinations are node ids of the merged view (``<cluster id>-<ray node id prefix>``); the
view (hashes ``Names.view_nodes`` / ``Names.view_clusters``) gives each one's Ray node id, cluster and
state, and the cluster's GCS address. Ray moves data only within one cluster: destinations in other
clusters than the source's are grouped by cluster (`Relay`), and the job serves them from a verified copy
on this machine once the source's cluster has made it (see `castray.transfer.job`).

Some of what a plan needs may not be in the view yet although the cluster is: discovery learns a GCS
address from the head's dashboard, which reports it a few seconds after it lists the head ALIVE, and a
node of a cluster discovery lost contact with is UNREACHABLE until it answers again. While the transfer
may still wait (`Waiting`), those raise `NotReady`, naming what is missing (`castray.transfer.readiness`
waits for the view to change and plans again); once it may wait no longer, they are failures that say
what was waited for. A DEAD node never comes back (Ray gives a restarted node a new id): no waiting.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

import redis.asyncio as aioredis

from castray.shared import codec
from castray.shared.confined import relative_parts
from castray.shared.errors import ConfinementError, EventDecodeError, SizeError
from castray.shared.events import ClusterInfo, NodeInfo
from castray.shared.names import Names
from castray.shared.safe_names import safe_file_name
from castray.shared.sizes import parse_size
from castray.shared.transfers import (
    GenerateSource,
    NodeFileSource,
    TransferRecord,
    UploadRecord,
    UploadSource,
)
from castray.shared.view import ViewReader
from castray.transfer.errors import NotReady, PlanError
from castray.transfer.settings import TransferSettings


@dataclass(frozen=True)
class Waiting:
    """How a plan treats what is not in the view yet: wait for it, or (``gave_up_after`` set) fail."""

    gave_up_after: float | None = None

    def missing(self, what: str) -> str:
        """Raise `NotReady` while waiting; once given up, the failure message to use instead."""
        if self.gave_up_after is None:
            raise NotReady(what)
        return f"gave up after {self.gave_up_after:g} s waiting for {what}"


def _state(node: NodeInfo) -> str:
    """``DEAD`` with Ray's reason when it gave one (e.g. "Expected termination: received SIGTERM")."""
    return f"{node.state} ({node.state_message})" if node.state_message else node.state


@dataclass
class Relay:
    """The destinations of one other cluster than the source's (plan dicts of `DestPlan`)."""

    cluster_id: str
    address: str
    dests: list[dict[str, Any]]


@dataclass
class Prepared:
    address: str
    plan: dict[str, Any]
    source_node_id: str | None  # None: read beside the transfer service (an upload)
    cluster_id: str
    bytes_expected: int | None = None
    failed: dict[str, str] = field(default_factory=dict)  # destinations that cannot be served, with why
    relays: list[Relay] = field(default_factory=list)  # destinations in other clusters
    view_ids: dict[str, str] = field(default_factory=dict)  # the cluster's Ray node ids -> view node ids


async def _cluster(view: ViewReader, cluster_id: str, waiting: Waiting) -> ClusterInfo:
    cluster = await view.cluster(cluster_id)
    if cluster is None:
        raise PlanError(f"cluster {cluster_id} is not in the node view")
    if not cluster.gcs_address:
        raise PlanError(waiting.missing(f"the GCS address of cluster {cluster.name} (discovery reads it from "
                                        "the cluster's dashboard, which reports it shortly after its nodes)"))
    return cluster


def _head(nodes: dict[str, NodeInfo], cluster_id: str, waiting: Waiting) -> NodeInfo:
    heads = [n for n in nodes.values() if n.cluster_id == cluster_id and n.is_head]
    for node in heads:
        if node.state == "ALIVE":
            return node
    if not heads or any(n.state == "UNREACHABLE" for n in heads):
        raise PlanError(waiting.missing(f"the head node of cluster {cluster_id} to be ALIVE"))
    raise PlanError(f"cluster {cluster_id} has no alive head node ({', '.join(_state(n) for n in heads)})")


def _unusable(node: NodeInfo | None, role: str, node_id: str, waiting: Waiting) -> str | None:
    """Why ``node`` cannot take part now (None: it can); raises `NotReady` while an UNREACHABLE node may
    still answer again."""
    if node is None:
        return f"{role} node {node_id} is not in the node view"
    if node.state == "UNREACHABLE":
        return waiting.missing(f"{role} node {node.id} to answer again (it is UNREACHABLE)")
    if node.state != "ALIVE":
        return f"{role} node {node.id} is {_state(node)}"
    return None


def _pick_cluster(record: TransferRecord, nodes: dict[str, NodeInfo]) -> str:
    if record.cluster_id:
        return str(record.cluster_id)
    src = record.source
    node_id = src.get("node_id") if isinstance(src, dict) else None
    for candidate in [record.source_node_id, node_id, *(d.node_id for d in record.destinations)]:
        if candidate and candidate in nodes:
            return str(nodes[candidate].cluster_id)
    raise PlanError("none of the transfer's nodes is in the node view")


def _in_data_dir(settings: TransferSettings, upload_id: str, stored: str) -> str:
    """An upload's stored path (absolute, or relative to the data directory) as a path relative to the
    data directory; `PlanError` if it lies anywhere else."""
    path = PurePosixPath(stored)
    roots = {settings.data_dir.absolute(), settings.data_dir.resolve()}
    relative = next((str(path.relative_to(r)) for r in roots if path.is_relative_to(r)), None)
    if relative is None and not path.is_absolute():
        relative = stored
    try:
        if relative is None:
            raise ConfinementError("it is outside the data directory")
        relative_parts(relative)
    except ConfinementError as e:
        raise PlanError(f"upload {upload_id} is stored at a path this service refuses to read: {e}") from None
    return relative


async def _source(redis: aioredis.Redis, names: Names, settings: TransferSettings, record: TransferRecord,
                  nodes: dict[str, NodeInfo], cluster_id: str, token: str, waiting: Waiting
                  ) -> tuple[dict[str, Any], NodeInfo | None, str | None, int | None]:
    """(source spec, source node, expected sha256, expected size). An upload has no node: it is read
    beside the transfer service, whose data directory the gateway shares, or streamed from the gateway
    when ``gateway_url`` is set (`castray.transfer.sources`)."""
    raw = dict(record.source)
    if "upload_id" in raw:
        up = UploadSource.model_validate(raw)
        stored = await redis.get(names.upload(up.upload_id))
        if stored is None:
            raise PlanError(f"upload {up.upload_id} not found")
        try:
            upload = codec.decode_model(stored, UploadRecord)
        except EventDecodeError:
            raise PlanError(f"upload {up.upload_id} has an unreadable record") from None
        if settings.gateway_url:  # this service cannot see the gateway's disk: stream it from there
            spec: dict[str, Any] = {
                "kind": "here", "path": upload.file_name, "token": settings.api_token or "",
                "url": f"{settings.gateway_url.rstrip('/')}/api/uploads/{upload.upload_id}/content"}
        else:  # never trusted: read beneath the data directory, whatever the record says
            spec = {"kind": "here", "root": str(settings.data_dir.absolute()),
                    "path": _in_data_dir(settings, up.upload_id, upload.path)}
        return spec, None, upload.sha256, upload.file_size
    if "generate" in raw:
        gen = GenerateSource.model_validate(raw)
        try:
            size = parse_size(gen.generate.size)
        except SizeError as e:
            raise PlanError(str(e)) from None
        node = nodes.get(gen.node_id or record.source_node_id or "") or _head(nodes, cluster_id, waiting)
        path = settings.data_dir.absolute() / "tmp" / f"gen-{record.id}-{token}"
        return ({"kind": "generate", "path": str(path), "size": size, "content": gen.generate.content},
                node, None, size)
    src = NodeFileSource.model_validate(raw)
    if src.node_id not in nodes:
        raise PlanError(f"source node {src.node_id} is not in the node view")
    return ({"kind": "files_root", "root": str(settings.files_root_dir()), "path": src.path},
            nodes[src.node_id], None, None)


async def prepare(redis: aioredis.Redis, names: Names, settings: TransferSettings, record: TransferRecord,
                  *, retry: bool, token: str, waiting: Waiting | None = None) -> Prepared:
    """The plan for the destinations of ``record`` not yet completed (`PlanError` if none can run,
    `NotReady` if it must wait for the view and ``waiting`` says it still may)."""
    waiting = waiting or Waiting()
    try:
        file_name = safe_file_name(record.file_name)
    except ValueError as e:
        raise PlanError(f"unusable file name: {e}") from None
    view = ViewReader(redis, names)
    nodes = await view.nodes()
    cluster_id = _pick_cluster(record, nodes)
    cluster = await _cluster(view, cluster_id, waiting)
    spec, src_node, sha, size = await _source(redis, names, settings, record, nodes, cluster_id, token,
                                              waiting)
    if src_node is not None and src_node.cluster_id != cluster_id:
        raise PlanError(f"source node {src_node.id} is not in the transfer's cluster {cluster_id}")
    if src_node is not None and (why := _unusable(src_node, "source", src_node.id, waiting)):
        raise PlanError(why)
    dests: list[dict[str, Any]] = []
    failed: dict[str, str] = {}
    others: dict[str, list[dict[str, Any]]] = {}
    inbox = settings.inbox_root()
    for dest in record.destinations:
        if dest.state == "completed":
            continue
        node = nodes.get(dest.node_id)
        if why := _unusable(node, "destination", dest.node_id, waiting):
            failed[dest.node_id] = why
            continue
        assert node is not None
        try:
            directory = inbox / safe_file_name(node.id)
        except ValueError:
            failed[dest.node_id] = "node id cannot be a directory name"
            continue
        plan_dest = {"node_id": node.id, "ray_node_id": node.ray_node_id, "dir": str(directory)}
        group = dests if node.cluster_id == cluster_id else others.setdefault(node.cluster_id, [])
        group.append(plan_dest)
    relays = []
    for other_id, members in others.items():
        try:
            other = await _cluster(view, other_id, waiting)
        except NotReady:
            raise
        except PlanError as e:
            failed.update({d["node_id"]: str(e) for d in members})
            continue
        relays.append(Relay(other_id, str(other.gcs_address), members))
    plan = {"id": record.id, "source": spec, "source_ray_node": src_node.ray_node_id if src_node else "",
            "dests": dests,
            "file_name": file_name, "overwrite": record.overwrite, "retry": retry, "expected_sha": sha,
            "chunk_bytes": settings.chunk_bytes, "inflight": settings.inflight_chunks,
            "rate_limit": settings.rate_limit, "progress_interval": settings.progress_interval,
            "node_timeout": settings.node_timeout, "token": token}
    view_ids = {n.ray_node_id: n.id for n in nodes.values() if n.cluster_id == cluster_id}
    return Prepared(str(cluster.gcs_address), plan, src_node.id if src_node else None, cluster_id, size,
                    failed, relays, view_ids)
