"""From a transfer record to a driver plan: which cluster, which Ray nodes, which paths.

The record's destinations are node ids of the merged view (``<cluster id>-<ray node id prefix>``); the
view (hashes ``Names.view_nodes`` / ``Names.view_clusters``) gives each one's Ray node id, cluster and
state, and the cluster's GCS address. Ray moves data only within one cluster: destinations in other
clusters than the source's are grouped by cluster (`Relay`), and the job serves them from a verified copy
on this machine once the source's cluster has made it (see `castray.transfer.job`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as aioredis

from castray.shared import codec
from castray.shared.errors import EventDecodeError
from castray.shared.events import ClusterInfo, NodeInfo
from castray.shared.names import Names
from castray.shared.safe_names import safe_file_name
from castray.shared.sizes import SizeError, parse_size
from castray.shared.transfers import (
    GenerateSource,
    NodeFileSource,
    TransferRecord,
    UploadRecord,
    UploadSource,
)
from castray.transfer.settings import TransferSettings


class PlanError(Exception):
    """The transfer cannot run at all; the message says why."""


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


async def _nodes(redis: aioredis.Redis, names: Names) -> dict[str, NodeInfo]:
    out: dict[str, NodeInfo] = {}
    for raw in (await redis.hgetall(names.view_nodes)).values():
        try:
            node = codec.decode_model(raw, NodeInfo)
        except EventDecodeError:
            continue
        out[node.id] = node
    return out


async def _cluster(redis: aioredis.Redis, names: Names, cluster_id: str) -> ClusterInfo:
    raw = await redis.hget(names.view_clusters, cluster_id)
    if raw is None:
        raise PlanError(f"cluster {cluster_id} is not in the node view")
    try:
        cluster = codec.decode_model(raw, ClusterInfo)
    except EventDecodeError as e:
        raise PlanError(f"cluster {cluster_id}: unreadable record") from e
    if not cluster.gcs_address:
        raise PlanError(f"cluster {cluster.name} has no known GCS address: cannot run Ray tasks on it")
    return cluster


def _head(nodes: dict[str, NodeInfo], cluster_id: str) -> NodeInfo:
    for node in nodes.values():
        if node.cluster_id == cluster_id and node.is_head and node.state == "ALIVE":
            return node
    raise PlanError(f"cluster {cluster_id} has no alive head node")


def _pick_cluster(record: TransferRecord, nodes: dict[str, NodeInfo]) -> str:
    if record.cluster_id:
        return str(record.cluster_id)
    src = record.source
    node_id = src.get("node_id") if isinstance(src, dict) else None
    for candidate in [record.source_node_id, node_id, *(d.node_id for d in record.destinations)]:
        if candidate and candidate in nodes:
            return str(nodes[candidate].cluster_id)
    raise PlanError("none of the transfer's nodes is in the node view")


async def _source(redis: aioredis.Redis, names: Names, settings: TransferSettings, record: TransferRecord,
                  nodes: dict[str, NodeInfo], cluster_id: str, token: str
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
        spec: dict[str, Any] = {"kind": "here", "path": upload.path}
        if settings.gateway_url:  # this service cannot see the gateway's disk: stream it from there
            spec["url"] = f"{settings.gateway_url.rstrip('/')}/api/uploads/{upload.upload_id}/content"
            spec["token"] = settings.api_token or ""
        return spec, None, upload.sha256, upload.file_size
    if "generate" in raw:
        gen = GenerateSource.model_validate(raw)
        try:
            size = parse_size(gen.generate.size)
        except SizeError as e:
            raise PlanError(str(e)) from None
        node = nodes.get(gen.node_id or record.source_node_id or "") or _head(nodes, cluster_id)
        path = settings.data_dir.absolute() / "tmp" / f"gen-{record.id}-{token}"
        return ({"kind": "generate", "path": str(path), "size": size, "content": gen.generate.content},
                node, None, size)
    src = NodeFileSource.model_validate(raw)
    if src.node_id not in nodes:
        raise PlanError(f"source node {src.node_id} is not in the node view")
    return ({"kind": "files_root", "root": str(settings.files_root_dir()), "path": src.path},
            nodes[src.node_id], None, None)


async def prepare(redis: aioredis.Redis, names: Names, settings: TransferSettings, record: TransferRecord,
                  *, retry: bool, token: str) -> Prepared:
    """The plan for the destinations of ``record`` not yet completed (`PlanError` if none can run)."""
    try:
        file_name = safe_file_name(record.file_name)
    except ValueError as e:
        raise PlanError(f"unusable file name: {e}") from None
    nodes = await _nodes(redis, names)
    cluster_id = _pick_cluster(record, nodes)
    cluster = await _cluster(redis, names, cluster_id)
    spec, src_node, sha, size = await _source(redis, names, settings, record, nodes, cluster_id, token)
    if src_node is not None and src_node.cluster_id != cluster_id:
        raise PlanError(f"source node {src_node.id} is not in the transfer's cluster {cluster_id}")
    if src_node is not None and src_node.state != "ALIVE":
        raise PlanError(f"source node {src_node.id} is {src_node.state}")
    dests: list[dict[str, Any]] = []
    failed: dict[str, str] = {}
    others: dict[str, list[dict[str, Any]]] = {}
    inbox = settings.inbox_root()
    for dest in record.destinations:
        if dest.state == "completed":
            continue
        node = nodes.get(dest.node_id)
        if node is None:
            failed[dest.node_id] = "node is not in the node view"
        elif node.state != "ALIVE":
            failed[dest.node_id] = f"node is {node.state}"
        else:
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
            other = await _cluster(redis, names, other_id)
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
