"""From a `TransferRequest` to a queued `TransferRecord`: every check the gateway makes before queueing
(`accept`), then the record stored and its request queued (`enqueue`). The transfer worker takes what is
accepted here as it is, and re-reads only what can change before it runs (`castray.transfer.planning`).

Rules: the source exists (upload, node, or a valid generate spec); every target is a node of the view
(404 names the unknown ones) and ALIVE (409); unicast has exactly one target, multicast at least one,
broadcast goes to every ALIVE node of the source's cluster (targets, if given, only pick that cluster
for a source that has none, and must be in it: 400); unicast and multicast targets may be in any
cluster (the transfer worker relays to the ones outside the source's); the file name is a safe single
name (400).
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
import uuid
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from aiohttp import web

from castray.gateway import keys
from castray.gateway import transfer_store as store
from castray.gateway.errors import ApiError
from castray.gateway.original import files as of
from castray.gateway.retention import trim_transfers
from castray.shared import codec
from castray.shared.bus import REDIS_ERRORS
from castray.shared.errors import SizeError
from castray.shared.events import NodeInfo
from castray.shared.log import log_context
from castray.shared.safe_names import safe_file_name
from castray.shared.sizes import format_size, parse_size
from castray.shared.transfers import (
    Destination,
    GenerateSource,
    NodeFileSource,
    QueuedTransfer,
    TransferRecord,
    TransferRequest,
    UploadSource,
)

log = logging.getLogger(__name__)


@dataclass
class SourceFacts:
    """What the gateway knows about a source before the worker touches it."""

    default_name: str
    bytes_total: int = 0
    sha256: str | None = None
    node: NodeInfo | None = None


async def accept(app: web.Application, req: TransferRequest, *, sender_id: str | None = None
                 ) -> TransferRecord:
    """Validate ``req`` against the view and build its record (state ``queued``); `ApiError` if invalid."""
    transfer_id = uuid.uuid4().hex
    facts = await _source_facts(app, req, transfer_id)
    targets = list(dict.fromkeys(t.strip() for t in req.targets))  # keep order, drop duplicates
    _check_mode(req, targets)
    nodes = await app[keys.VIEW].nodes(targets)
    unknown = [t for t in targets if t not in nodes]
    if unknown:
        raise ApiError(404, f"unknown node(s): {', '.join(unknown)}", code="unknown_node", unknown=unknown)
    cluster_id = facts.node.cluster_id if facts.node else None
    if req.mode == "broadcast":
        dest_ids, cluster_id = await _broadcast_targets(app, cluster_id, [nodes[t] for t in targets])
    else:
        _check_alive([nodes[t] for t in targets])
        cluster_id = cluster_id or nodes[targets[0]].cluster_id
        dest_ids = targets
    try:
        file_name = safe_file_name(req.file_name or facts.default_name)
    except ValueError as e:
        raise ApiError(400, f"unusable file name: {e}", code="bad_file_name") from e
    return TransferRecord(
        id=transfer_id, mode=req.mode, source=req.source, cluster_id=cluster_id,
        source_node_id=facts.node.id if facts.node else None, file_name=file_name,
        bytes_total=facts.bytes_total, sha256=facts.sha256, created_at=time.time(),
        destinations=[Destination(node_id=d) for d in dest_ids], overwrite=req.overwrite, sender_id=sender_id)


async def enqueue(app: web.Application, record: TransferRecord) -> None:
    """Store the record, index it, and put it on the request stream for the workers; then apply the
    retention of finished records (`castray.gateway.retention`: on write, since only writes add any)."""
    redis, names, bus = app[keys.REDIS], app[keys.NAMES], app[keys.BUS]
    with log_context(transfer_id=record.id, cluster_id=record.cluster_id):
        async with redis.pipeline(transaction=True) as pipe:
            pipe.set(names.transfer(record.id), codec.encode(record))
            pipe.zadd(names.transfer_index, {record.id: record.created_at})
            await pipe.execute()
        await bus.add_work(names.transfer_requests, QueuedTransfer(id=record.id).model_dump())
        log.info("transfer %s queued: %s of %s to %d destination(s)", record.id, record.mode,
                 record.file_name, len(record.destinations))
    settings = app[keys.SETTINGS]
    try:  # the transfer is queued already: a failed trim must not answer as if it were not
        await trim_transfers(redis, names, max_age=settings.transfer_records_max_age,
                             max_count=settings.transfer_records_max_count)
    except REDIS_ERRORS as e:
        log.warning("retention of transfer records skipped this time (redis: %s)", e)


async def _source_facts(app: web.Application, req: TransferRequest, transfer_id: str) -> SourceFacts:
    redis, names = app[keys.REDIS], app[keys.NAMES]
    src = req.source
    if isinstance(src, UploadSource):
        upload = await store.get_upload(redis, names, src.upload_id)
        if upload is None:
            raise ApiError(404, f"unknown upload {src.upload_id!r}", code="unknown_upload")
        data_dir = Path(app[keys.SETTINGS].data_dir)
        if not await asyncio.to_thread(os.path.isfile, store.upload_file(data_dir, upload)):
            raise ApiError(404, f"the file of upload {src.upload_id} is gone from storage",
                           code="unknown_upload")
        return SourceFacts(upload.file_name, upload.file_size, upload.sha256)
    if isinstance(src, NodeFileSource):
        node = await _source_node(app, src.node_id)
        parts = PurePosixPath(src.path.replace("\\", "/")).parts
        if "\x00" in src.path or ".." in parts:
            raise ApiError(400, "source path must stay inside the node's files root (no '..', no NUL)",
                           code="bad_path")
        return SourceFacts(parts[-1] if parts else "", node=node)
    assert isinstance(src, GenerateSource)
    size = generate_size(app, src.generate.size)
    gen_node = await _source_node(app, src.node_id) if src.node_id else None
    default = src.generate.file_name or (
        f"generated_{format_size(size).replace(' ', '')}_{src.generate.content}_{transfer_id[:8]}.bin")
    return SourceFacts(default, size, node=gen_node)


def generate_size(app: web.Application, size: str | int) -> int:
    """Bytes of a generated file: parsed, > 0 and within the settings' cap; 400 otherwise."""
    cap = app[keys.SETTINGS].max_generate_bytes
    try:
        n = parse_size(size)
    except SizeError as e:
        raise ApiError(400, str(e), code="bad_size") from e
    if n <= 0:
        raise ApiError(400, "size must be greater than 0", code="bad_size")
    if n > cap:
        raise ApiError(400, f"size {format_size(n)} is over the limit of {format_size(cap)}", code="bad_size",
                       max_size=cap)
    return n


async def _source_node(app: web.Application, node_id: str) -> NodeInfo:
    node = await app[keys.VIEW].node(node_id)
    if node is None:
        raise ApiError(404, f"unknown source node {node_id!r}", code="unknown_node", unknown=[node_id])
    if node.state != "ALIVE":
        raise ApiError(409, f"source {node_id}: {not_alive(node)}", code="node_not_alive", nodes=[node_id])
    return node


def _check_mode(req: TransferRequest, targets: list[str]) -> None:
    if req.mode == "unicast" and len(targets) != 1:
        raise ApiError(400, f"unicast needs exactly one target (got {len(targets)})", code="bad_targets")
    if req.mode == "multicast" and not targets:
        raise ApiError(400, "multicast needs at least one target", code="bad_targets")


def not_alive(node: NodeInfo) -> str:
    """Why ``node`` cannot take part: its state and the reason Ray gave, e.g. "node is DEAD (Expected
    termination: received SIGTERM)"."""
    why = f" ({node.state_message})" if node.state_message else ""
    return f"node is {node.state}{why}"


def _check_alive(nodes: list[NodeInfo]) -> None:
    down = [n for n in nodes if n.state != "ALIVE"]
    if down:
        reasons = {n.id: not_alive(n) for n in down}
        raise ApiError(409, "target node(s) not alive: " + "; ".join(f"{k}: {v}" for k, v in reasons.items()),
                       code="node_not_alive", nodes=list(reasons), reasons=reasons)


def _check_one_cluster(cluster_id: str | None, nodes: list[NodeInfo]) -> None:
    others = [n.id for n in nodes if n.cluster_id != cluster_id]
    if others:
        raise ApiError(400, f"a broadcast goes to the nodes of one cluster ({cluster_id}); not in it: "
                            f"{', '.join(others)} (send to nodes of several clusters with multicast)",
                       code="cross_cluster", nodes=others)


async def _broadcast_targets(app: web.Application, cluster_id: str | None, named: list[NodeInfo]
                             ) -> tuple[list[str], str]:
    """Every ALIVE node of the source's cluster (named targets only choose it when the source has none)."""
    if cluster_id is None and named:
        cluster_id = named[0].cluster_id
    if cluster_id is not None:
        _check_one_cluster(cluster_id, named)
    nodes = await app[keys.VIEW].nodes()
    if cluster_id is None:
        clusters = sorted({n.cluster_id for n in nodes.values() if n.state == "ALIVE"})
        if len(clusters) != 1:
            raise ApiError(400, "broadcast of a file that is on no node needs a cluster: name one of its "
                                f"nodes in targets (clusters with alive nodes: {len(clusters)})",
                           code="ambiguous_cluster")
        cluster_id = clusters[0]
    alive = sorted(n.id for n in nodes.values() if n.cluster_id == cluster_id and n.state == "ALIVE")
    if not alive:
        raise ApiError(409, f"cluster {cluster_id} has no alive node", code="no_alive_nodes")
    return alive, cluster_id


@dataclass
class Recipients:
    """The original endpoints' ``sender_id`` and ``recipients`` checked against the view."""

    sender: NodeInfo | None
    valid: list[str]
    failed: dict[str, str]  # recipient -> why it was left out


async def resolve_recipients(app: web.Application, sender_id: str | None,
                             recipients: list[str]) -> Recipients:
    """404 for an unknown sender; each recipient kept if known, ALIVE and in the sender's cluster (or the
    first valid recipient's cluster when no sender is named), else listed in ``failed`` with the reason;
    400 when none is left."""
    sender = None
    if sender_id:
        sender = await app[keys.VIEW].node(sender_id)
        if sender is None:
            raise ApiError(404, f"unknown sender node {sender_id!r}", code="unknown_node",
                           unknown=[sender_id])
    wanted = list(dict.fromkeys(r.strip() for r in recipients if r and r.strip()))
    nodes = await app[keys.VIEW].nodes(wanted)
    cluster = sender.cluster_id if sender else None
    valid: list[str] = []
    failed: dict[str, str] = {}
    for rid in wanted:
        node = nodes.get(rid)
        reason = None
        if node is None:
            reason = "unknown node"
        elif node.state != "ALIVE":
            reason = not_alive(node)
        elif cluster is not None and node.cluster_id != cluster:
            reason = f"node is not in the sender's cluster {cluster}"
        if reason:
            failed[rid] = reason
            continue
        cluster = cluster or node.cluster_id  # type: ignore[union-attr]
        valid.append(rid)
    if not valid:
        why = "; ".join(f"{rid}: {reason}" for rid, reason in list(failed.items())[:10]) or "none given"
        raise ApiError(400, f"no valid recipients ({why})", code="no_valid_recipients",
                       results=of.not_sent(failed))
    return Recipients(sender, valid, failed)
