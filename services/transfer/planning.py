"""From a transfer record to the `Plan` its source's cluster's driver runs: which cluster, which Ray
nodes, which paths. The plan is built here once; the job sends it as it is (`castray.transfer.protocol`).

The record's destinations are node ids of the merged view (``<cluster id>-<ray node id prefix>``); the
view (hashes ``Names.view_nodes`` / ``Names.view_clusters``) gives each one's Ray node id, cluster and
state, and the cluster's GCS address. Ray moves data only within one cluster: destinations in other
clusters than the source's are grouped by cluster (`Relay`), and the job serves them from a verified copy
on this machine once the source's cluster has made it (see `castray.transfer.job`).

What the gateway checked when it accepted the request is taken as it is: the record's source (a typed
`Source`), its file name (the sink, on the node, refuses an unusable one: that check guards the disk) and
a generated file's size (``bytes_total``, the size it accepted). Read again here is only what can have
changed since: the view (a node gone or not ALIVE, a cluster's GCS address) and the upload's record (it
may have been deleted; its stored path is needed, and is confined to the data directory whoever wrote it).

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

import redis.asyncio as aioredis

from castray.shared import codec
from castray.shared.confined import relative_parts
from castray.shared.errors import ConfinementError, EventDecodeError
from castray.shared.events import ClusterInfo, NodeInfo
from castray.shared.names import Names
from castray.shared.safe_names import safe_file_name
from castray.shared.transfers import (
    DestState,
    GenerateSource,
    NodeFileSource,
    TransferRecord,
    UploadRecord,
    UploadSource,
)
from castray.shared.view import ViewReader
from castray.transfer.errors import NotReady, PlanError
from castray.transfer.protocol import (
    GatewayFile,
    GeneratedFile,
    Input,
    LocalFile,
    NodeFile,
    Plan,
    PlanDestination,
)
from castray.transfer.settings import TransferSettings

# A destination an earlier attempt completed (its copy placed and verified) or failed (the failure already
# published): a retry after a take-over neither sends to it again nor reports it anew.
SETTLED: tuple[DestState, ...] = ("completed", "failed")


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
    """The destinations of one other cluster than the source's."""

    cluster_id: str
    address: str
    dests: list[PlanDestination]


@dataclass
class Prepared:
    """A transfer ready to run: the plan for its source's cluster (at ``address``), and what it leaves
    to the job (destinations that cannot be served, relays to other clusters)."""

    address: str
    plan: Plan
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
    node_id = record.source.node_id if isinstance(record.source, NodeFileSource | GenerateSource) else None
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


async def _input(redis: aioredis.Redis, names: Names, settings: TransferSettings, record: TransferRecord,
                 nodes: dict[str, NodeInfo], cluster_id: str, token: str, waiting: Waiting
                 ) -> tuple[Input, NodeInfo | None, str | None, int | None]:
    """(the file the driver reads, the source node, its expected sha256, its expected size). An upload
    has no node: it is read beside the transfer service, whose data directory the gateway shares, or
    streamed from the gateway when ``gateway_url`` is set (`castray.transfer.sources`)."""
    source = record.source
    if isinstance(source, UploadSource):
        upload = await _upload(redis, names, source.upload_id)
        if settings.gateway_url:  # this service cannot see the gateway's disk: stream it from there
            url = f"{settings.gateway_url.rstrip('/')}/api/uploads/{upload.upload_id}/content"
            return GatewayFile(url=url, token=settings.api_token or ""), None, upload.sha256, upload.file_size
        local = LocalFile(root=str(settings.data_dir.absolute()),
                          path=_in_data_dir(settings, upload.upload_id, upload.path))
        return local, None, upload.sha256, upload.file_size
    if isinstance(source, GenerateSource):
        node = nodes.get(source.node_id or record.source_node_id or "") or _head(nodes, cluster_id, waiting)
        path = settings.data_dir.absolute() / "tmp" / f"gen-{record.id}-{token}"
        generated = GeneratedFile(path=str(path), size=record.bytes_total, content=source.generate.content)
        return generated, node, None, record.bytes_total
    if source.node_id not in nodes:
        raise PlanError(f"source node {source.node_id} is not in the node view")
    return NodeFile(root=str(settings.files_root_dir()), path=source.path), nodes[source.node_id], None, None


async def _upload(redis: aioredis.Redis, names: Names, upload_id: str) -> UploadRecord:
    stored = await redis.get(names.upload(upload_id))
    if stored is None:
        raise PlanError(f"upload {upload_id} not found")
    try:
        return codec.decode_model(stored, UploadRecord)
    except EventDecodeError:
        raise PlanError(f"upload {upload_id} has an unreadable record") from None


async def prepare(redis: aioredis.Redis, names: Names, settings: TransferSettings, record: TransferRecord,
                  *, retry: bool, token: str, waiting: Waiting | None = None) -> Prepared:
    """The plan for the destinations of ``record`` not yet settled (`SETTLED` by an earlier attempt, whose
    replica died); `PlanError` if none can run, `NotReady` if it must wait for the view and ``waiting``
    says it still may."""
    waiting = waiting or Waiting()
    view = ViewReader(redis, names)
    nodes = await view.nodes()
    cluster_id = _pick_cluster(record, nodes)
    cluster = await _cluster(view, cluster_id, waiting)
    read, src_node, sha, size = await _input(redis, names, settings, record, nodes, cluster_id, token,
                                             waiting)
    if src_node is not None and src_node.cluster_id != cluster_id:
        raise PlanError(f"source node {src_node.id} is not in the transfer's cluster {cluster_id}")
    if src_node is not None and (why := _unusable(src_node, "source", src_node.id, waiting)):
        raise PlanError(why)
    dests: list[PlanDestination] = []
    failed: dict[str, str] = {}
    others: dict[str, list[PlanDestination]] = {}
    inbox = settings.inbox_root()
    for dest in record.destinations:
        if dest.state in SETTLED:
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
        group = dests if node.cluster_id == cluster_id else others.setdefault(node.cluster_id, [])
        group.append(PlanDestination(node_id=node.id, ray_node_id=node.ray_node_id, dir=str(directory)))
    relays = []
    for other_id, members in others.items():
        try:
            other = await _cluster(view, other_id, waiting)
        except NotReady:
            raise
        except PlanError as e:
            failed.update({d.node_id: str(e) for d in members})
            continue
        relays.append(Relay(other_id, str(other.gcs_address), members))
    plan = Plan(id=record.id, token=token, input=read,
                source_ray_node=src_node.ray_node_id if src_node else "", dests=dests,
                file_name=record.file_name, overwrite=record.overwrite, retry=retry, expected_sha=sha,
                chunk_bytes=settings.chunk_bytes, inflight=settings.inflight_chunks,
                rate_limit=settings.rate_limit, progress_interval=settings.progress_interval,
                node_timeout=settings.node_timeout, chunk_timeout=settings.chunk_timeout,
                chain=settings.broadcast_chain, direct=settings.broadcast_direct)
    view_ids = {n.ray_node_id: n.id for n in nodes.values() if n.cluster_id == cluster_id}
    return Prepared(str(cluster.gcs_address), plan, src_node.id if src_node else None, cluster_id, size,
                    failed, relays, view_ids)
