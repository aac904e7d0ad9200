"""The view as the gateway serves it: decoded and encoded once per version, and every response body built
once per version and shape, then sent as the same bytes to every request and WebSocket client.

Why: a read of the whole view (HGETALL, a pydantic validation per record, a JSON encoding per record) cost
tens of milliseconds per thousand nodes, and was paid by every request and every WebSocket connect (issue
16). Here a request pays one small read of the view's meta (`ViewReader.meta`); only when the version moved
does the cache catch up, from ``view:log`` (`ViewReader.replay`: only the records that changed are decoded
and encoded again) or, after a reset, a gap or a new epoch, from a snapshot. One refresh runs at a time and
the requests that wait for it share its result.

Bodies are kept per ``(epoch, version, shape)`` (a shape: which endpoint, which filters, which page), in a
small LRU bounded in entries and bytes, with their gzip made at most once (in a thread: zlib lets go of
the GIL). Their ``ETag`` names the version and the shape, so an unchanged view answers ``If-None-Match``
with 304 without building anything.
"""

from __future__ import annotations

import asyncio
import gzip
import hashlib
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from aiohttp import web

from castray.gateway import keys
from castray.gateway.backpressure import ClientGone
from castray.shared.events import ClusterDelta, ClusterInfo, NodeDelta, NodeInfo, ViewChanged
from castray.shared.log import without_ids
from castray.shared.view import Snapshot, ViewMeta, ViewReader, node_order

T = TypeVar("T")
NodeKey = tuple[str, bool, str, str]
Filter = tuple[str | None, str | None, bool | None]  # cluster, state, external
REPLAY_LIMIT = 2000  # versions caught up from the log; more than that and a snapshot is cheaper
MAX_BODIES = 64
MAX_BODY_BYTES = 64 * 1024 * 1024
MAX_FILTERS = 32
GZIP_MIN = 1024  # smaller bodies go as they are: gzip would save nothing worth a header
GZIP_LEVEL = 5


def encode_node(node: NodeInfo) -> bytes:
    return node.model_dump_json().encode()


@dataclass(eq=False)
class EncodedView:
    """The view at one version: its records, each node's JSON, and the nodes in `node_order`."""

    snapshot: Snapshot
    encoded: dict[str, bytes]
    order: list[str] = field(init=False)
    keys: list[NodeKey] = field(init=False)
    _filtered: dict[Filter, tuple[list[str], list[NodeKey]]] = field(default_factory=dict, init=False)

    def __post_init__(self) -> None:
        ranked = sorted((node_order(n), n.id) for n in self.snapshot.nodes.values())
        self.keys = [k for k, _ in ranked]
        self.order = [i for _, i in ranked]

    @property
    def meta(self) -> ViewMeta:
        return self.snapshot.meta

    @classmethod
    def of(cls, snap: Snapshot) -> EncodedView:
        return cls(snap, {i: encode_node(n) for i, n in snap.nodes.items()})

    def advanced(self, meta: ViewMeta, deltas: list[ViewChanged]) -> EncodedView:
        """This view with ``deltas`` applied: only the records they carry are encoded."""
        clusters: dict[str, ClusterInfo] = dict(self.snapshot.clusters)
        nodes: dict[str, NodeInfo] = dict(self.snapshot.nodes)
        encoded = dict(self.encoded)
        for d in deltas:
            if isinstance(d, NodeDelta):
                if d.node is None:
                    nodes.pop(d.id, None)
                    encoded.pop(d.id, None)
                else:
                    nodes[d.id], encoded[d.id] = d.node, encode_node(d.node)
            elif isinstance(d, ClusterDelta):
                if d.cluster is None:
                    clusters.pop(d.id, None)
                else:
                    clusters[d.id] = d.cluster
        return EncodedView(Snapshot(meta, clusters, nodes), encoded)

    def filtered(self, flt: Filter) -> tuple[list[str], list[NodeKey]]:
        """The ids (and their keys) of the nodes that pass ``flt``, in order; kept for this version."""
        hit = self._filtered.get(flt)
        if hit is not None:
            return hit
        cluster, state, external = flt
        nodes = self.snapshot.nodes
        picked = [(i, k) for i, k in zip(self.order, self.keys, strict=True)
                  if (cluster is None or k[0] == cluster)
                  and (state is None or nodes[i].state == state)
                  and (external is None or nodes[i].external == external)]
        hit = ([i for i, _ in picked], [k for _, k in picked])
        if len(self._filtered) >= MAX_FILTERS:
            self._filtered.pop(next(iter(self._filtered)))
        self._filtered[flt] = hit
        return hit

    def nodes_json(self, ids: list[str]) -> bytes:
        """A JSON array of these nodes, joined from their encoded bytes."""
        encoded = self.encoded
        return b"[" + b",".join(encoded[i] for i in ids) + b"]"


class SharedRead(Generic[T]):
    """A read that callers arriving together share, in rounds: whoever arrives while one runs waits for
    the next, which starts after they arrived, so nobody is answered from a read older than their call."""

    def __init__(self, read: Callable[[], Awaitable[T]]) -> None:
        self.read = read
        self.reads = 0
        self._next: asyncio.Future[T] | None = None
        self._reader: asyncio.Task[None] | None = None

    async def __call__(self) -> T:
        if self._next is None:
            self._next = asyncio.get_running_loop().create_future()
            self._next.add_done_callback(_retrieve)
        waiting = self._next
        if self._reader is None:  # it serves every caller, not only the request that happens to start it
            self._reader = asyncio.create_task(self._rounds(), name="gateway.shared_read",
                                               context=without_ids())
        return await asyncio.shield(waiting)

    async def _rounds(self) -> None:
        try:
            while self._next is not None:
                round_, self._next = self._next, None
                try:
                    self.reads += 1
                    round_.set_result(await self.read())
                except asyncio.CancelledError:
                    round_.cancel()
                    raise
                except Exception as e:  # Redis down: each caller answers it as it would its own read
                    round_.set_exception(e)
        finally:
            self._reader = None


def _retrieve(fut: asyncio.Future[Any]) -> None:
    """Mark an error as seen: callers that gave up waiting must not leave it unretrieved."""
    if not fut.cancelled():
        fut.exception()


class Body:
    """One response body, its ETag, and its gzip (made once, on the first request that accepts it)."""

    __slots__ = ("raw", "etag", "_gzip")

    def __init__(self, raw: bytes, etag: str) -> None:
        self.raw = raw
        self.etag = etag
        self._gzip: asyncio.Task[bytes] | None = None

    async def gzipped(self) -> bytes:
        if self._gzip is None:
            self._gzip = asyncio.create_task(asyncio.to_thread(gzip.compress, self.raw, GZIP_LEVEL))
        return await asyncio.shield(self._gzip)

    @property
    def size(self) -> int:
        return len(self.raw)


def etag_of(meta: ViewMeta, shape: Hashable) -> str:
    digest = hashlib.blake2b(repr(shape).encode(), digest_size=6).hexdigest()
    return f'W/"{meta.epoch or "none"}.{meta.version}.{digest}"'


class ViewCache:
    """A gateway's encoded view and its response bodies (one per app, beside its `ViewReader`).

    Counters, for tests and ``/metrics``: ``snapshots`` (whole view read and encoded), ``catch_ups`` (a
    version reached from the log), ``body_builds`` (a body encoded: a cache miss).
    """

    def __init__(self, view: ViewReader, *, replay_limit: int = REPLAY_LIMIT, max_bodies: int = MAX_BODIES,
                 max_bytes: int = MAX_BODY_BYTES) -> None:
        self.view = view
        self.replay_limit = replay_limit
        self.max_bodies = max_bodies
        self.max_bytes = max_bytes
        self.snapshots = 0
        self.catch_ups = 0
        self.body_builds = 0
        self._current: EncodedView | None = None
        self._meta = SharedRead(view.meta)
        self._lock = asyncio.Lock()
        self._bodies: OrderedDict[tuple[str, int, Hashable], Body] = OrderedDict()
        self._bytes = 0

    async def current(self) -> EncodedView:
        """The view at its version now (one read of its meta when nothing changed)."""
        return await self.at_least(await self.meta())

    async def meta(self) -> ViewMeta:
        """The view's meta, read after this call began; callers that arrive together share one read.

        Why: a thousand WebSockets connecting at once each asked Redis, more commands at once than the
        client's pool holds ("Too many connections").
        """
        return await self._meta()

    @property
    def meta_reads(self) -> int:
        return self._meta.reads

    async def at_least(self, meta: ViewMeta) -> EncodedView:
        cur = self._current
        if cur is not None and _covers(cur.meta, meta):
            return cur
        async with self._lock:  # one refresh at a time; whoever waited finds it done
            cur = self._current
            if cur is not None and _covers(cur.meta, meta):
                return cur
            fresh = await self._refresh(cur)
            self._current = fresh
            self._drop_old(fresh.meta)
            return fresh

    async def _refresh(self, cur: EncodedView | None) -> EncodedView:
        if cur is not None and cur.meta.epoch:
            replay = await self.view.replay(cur.meta.epoch, cur.meta.version, limit=self.replay_limit)
            if replay is not None:
                self.catch_ups += 1
                meta, deltas = replay
                return cur.advanced(meta, deltas)
        self.snapshots += 1
        return EncodedView.of(await self.view.snapshot())

    def body(self, meta: ViewMeta, shape: Hashable, build: Callable[[], bytes]) -> Body:
        """The body of ``shape`` at version ``meta``: built by ``build`` on the first ask only."""
        key = (meta.epoch, meta.version, shape)
        hit = self._bodies.get(key)
        if hit is not None:
            self._bodies.move_to_end(key)
            return hit
        body = Body(build(), etag_of(meta, shape))
        self.body_builds += 1
        self._bodies[key] = body
        self._bytes += body.size
        while self._bodies and (len(self._bodies) > self.max_bodies or self._bytes > self.max_bytes):
            _, old = self._bodies.popitem(last=False)
            self._bytes -= old.size
        return body

    def _drop_old(self, meta: ViewMeta) -> None:
        for key in [k for k in self._bodies if (k[0], k[1]) != (meta.epoch, meta.version)]:
            self._bytes -= self._bodies.pop(key).size


def _covers(have: ViewMeta, want: ViewMeta) -> bool:
    return have.epoch == want.epoch and have.version >= want.version


def not_modified(request: web.Request, etag: str) -> bool:
    """``If-None-Match`` names ``etag`` (compared weakly, as RFC 9110 says for this header) or is ``*``."""
    header = request.headers.get("If-None-Match")
    if not header:
        return False
    wanted = etag.removeprefix("W/")
    return any(t.strip() == "*" or t.strip().removeprefix("W/") == wanted for t in header.split(","))


def accepts_gzip(request: web.Request) -> bool:
    """``Accept-Encoding`` names gzip (or ``*``) without ``q=0``."""
    for part in request.headers.get("Accept-Encoding", "").split(","):
        name, _, params = part.partition(";")
        if name.strip().lower() in ("gzip", "*"):
            q = params.strip()
            try:
                return not q.startswith("q=") or float(q[2:]) > 0
            except ValueError:
                return False
    return False


async def serve(request: web.Request, cache: ViewCache, meta: ViewMeta, shape: Hashable,
                build: Callable[[], bytes]) -> web.Response:
    """304 when the client has this version of ``shape``; else its body (gzipped when accepted and worth
    it), built once per version and sent as it is. Building and sending it take one of the app's heavy
    slots (`backpressure`): 503 overloaded when none is to be had; a 304 takes none.

    The body is written here, inside the slot, rather than by aiohttp after the handler returns: what a
    slow client has not read yet sits in its socket's buffer, and the slots bound how many such buffers
    there are."""
    etag = etag_of(meta, shape)
    headers = {"ETag": etag, "Vary": "Accept-Encoding", "Cache-Control": "no-cache"}
    if not_modified(request, etag):
        return web.Response(status=304, headers=headers)
    async with request.app[keys.HEAVY_GATE].slot(request):
        body = cache.body(meta, shape, build)
        if body.size >= GZIP_MIN and accepts_gzip(request):
            response = web.Response(body=await body.gzipped(), content_type="application/json",
                                    charset="utf-8", headers={**headers, "Content-Encoding": "gzip"})
        else:
            response = web.Response(body=body.raw, content_type="application/json", charset="utf-8",
                                    headers=headers)
        await send(request, response)
    return response


async def send(request: web.Request, response: web.Response) -> None:
    """Write ``response`` now; a client gone meanwhile is `ClientGone` (nothing to log, nothing to send)."""
    try:
        await response.prepare(request)
        await response.write_eof()
    except ConnectionError as e:  # aiohttp's "Connection lost" is a bare ConnectionError
        raise ClientGone() from e
