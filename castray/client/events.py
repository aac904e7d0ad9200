"""The gateway's live events (``/ws``) as typed objects, and a stream of them that resumes where it was.

The gateway sends a ``snapshot`` (``epoch``, ``version``, the clusters and nodes) on connect, then view
deltas numbered by ``version`` within ``epoch`` (`NodeDelta`, `ClusterDelta`, the registry's own models),
and transfer and message events (``castray.shared.events``'s payloads). After a dropped connection the
stream reconnects with ``epoch`` and ``since``: the gateway replays the deltas missed (a `Resumed` first)
or, when its log no longer holds them, sends a fresh `SnapshotMessage`. Transfer events are not replayed: a
caller that follows a transfer re-reads its record when a `Resumed` or a later `SnapshotMessage` arrives.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Literal

import aiohttp
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from castray.client.errors import GatewayUnreachable, error_for
from castray.shared.events import (
    ClusterDelta,
    ClusterInfo,
    MessageSent,
    NodeDelta,
    NodeInfo,
    TransferCancelled,
    TransferCompleted,
    TransferEvent,
    TransferFailed,
    TransferProgress,
    TransferStarted,
    ViewChanged,
)

if TYPE_CHECKING:
    from castray.client.aio import AsyncClient

WS_PROTOCOL = "castray.v1"  # what the gateway selects (castray.gateway.auth.WS_PROTOCOL)
DEFAULT_TOPICS = ("clusters", "nodes", "transfers")


class SnapshotMessage(BaseModel):
    """The /ws message ``snapshot``: the whole view at ``version``, on connect and whenever the gateway
    cannot send deltas (the view itself, read from Redis, is `castray.shared.view.Snapshot`)."""

    model_config = ConfigDict(extra="ignore")
    type: Literal["snapshot"] = "snapshot"
    reason: str = "connect"
    epoch: str
    version: int
    topics: list[str] = Field(default_factory=list)
    clusters: list[ClusterInfo] = Field(default_factory=list)
    nodes: list[NodeInfo] = Field(default_factory=list)


class Resumed(BaseModel):
    """A reconnect was resumed: the deltas after ``since`` follow."""

    model_config = ConfigDict(extra="ignore")
    type: Literal["resumed"] = "resumed"
    epoch: str
    since: int
    version: int
    topics: list[str] = Field(default_factory=list)


class StreamError(BaseModel):
    """An error frame from the gateway (a bad client frame, or Redis gone before it closes)."""

    model_config = ConfigDict(extra="ignore")
    type: Literal["error"] = "error"
    code: str = "error"
    error: str = ""


LiveEvent = SnapshotMessage | Resumed | NodeDelta | ClusterDelta | TransferEvent | MessageSent | StreamError
_DELTA: TypeAdapter[ViewChanged] = TypeAdapter(ViewChanged)
_PAYLOADS: dict[str, type[TransferEvent] | type[MessageSent]] = {
    "transfer-started": TransferStarted, "transfer-progress": TransferProgress,
    "transfer-completed": TransferCompleted, "transfer-failed": TransferFailed,
    "transfer-cancelled": TransferCancelled, "message-sent": MessageSent}
_OWN: dict[str, type[SnapshotMessage] | type[Resumed] | type[StreamError]] = {
    "snapshot": SnapshotMessage, "resumed": Resumed, "error": StreamError}


def parse(message: dict[str, Any]) -> LiveEvent | None:
    """The typed event of one ``/ws`` message; None for what this client does not model (the original
    CastRay's ``status_update``, ``transfer_activity``, ...)."""
    kind = message.get("type")
    if not isinstance(kind, str):
        return None
    try:
        if kind in _OWN:
            return _OWN[kind].model_validate(message)
        if kind == "node-changed" or kind.startswith("cluster-"):
            return _DELTA.validate_python(message)
        if kind in _PAYLOADS:
            return _PAYLOADS[kind].model_validate(message)
    except ValidationError:
        return None
    return None


class EventStream:
    """An async iterator over live events; reconnects (and resumes) for ``reconnect_for`` seconds after a
    dropped connection before it raises `GatewayUnreachable`. ``epoch`` and ``version`` are where it is:
    keep them to resume a later stream (``resume=(epoch, version)``)."""

    def __init__(self, client: AsyncClient, topics: Iterable[str] = DEFAULT_TOPICS, *,
                 resume: tuple[str, int] | None = None, reconnect_for: float = 30.0) -> None:
        self._client = client
        self.topics = tuple(topics)
        self.epoch, self.version = resume if resume is not None else ("", 0)
        self.reconnect_for = reconnect_for
        self.connects = 0
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._closed = False

    def __aiter__(self) -> EventStream:
        return self

    async def __aenter__(self) -> EventStream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def __anext__(self) -> LiveEvent:
        while True:
            if self._closed:
                raise StopAsyncIteration
            ws = self._ws or await self._connect()
            msg = await ws.receive()
            if msg.type != aiohttp.WSMsgType.TEXT:
                if msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSING, aiohttp.WSMsgType.CLOSED,
                                aiohttp.WSMsgType.ERROR):
                    await self._drop()
                continue
            try:
                data = json.loads(msg.data)
            except ValueError:
                continue
            event = parse(data) if isinstance(data, dict) else None
            if event is not None:
                self._track(event)
                return event

    def _track(self, event: LiveEvent) -> None:
        if isinstance(event, SnapshotMessage):
            self.epoch, self.version = event.epoch, event.version
        elif isinstance(event, Resumed):
            self.epoch, self.version = event.epoch, event.since
        elif isinstance(event, NodeDelta | ClusterDelta) and event.epoch == self.epoch:
            self.version = max(self.version, event.version)

    def _params(self) -> dict[str, str]:
        params = {"topics": ",".join(self.topics)}
        if self.epoch:
            params.update(epoch=self.epoch, since=str(self.version))
        return params

    async def _connect(self) -> aiohttp.ClientWebSocketResponse:
        """Connect (resuming when it has an epoch); retry a dropped gateway until ``reconnect_for``."""
        loop = asyncio.get_running_loop()
        deadline, delay = loop.time() + (self.reconnect_for if self.connects else 0), 0.2
        while True:
            try:
                self._ws = await self._client.ws_connect("/ws", params=self._params(),
                                                         protocols=(WS_PROTOCOL,))
                self.connects += 1
                return self._ws
            except aiohttp.WSServerHandshakeError as e:
                if e.status not in (502, 503, 504) or loop.time() >= deadline:
                    raise error_for(e.status, e.message) from e
            except (aiohttp.ClientConnectionError, TimeoutError) as e:
                if loop.time() >= deadline:
                    raise GatewayUnreachable(self._client.url, str(e) or type(e).__name__) from e
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)

    async def _drop(self) -> None:
        ws, self._ws = self._ws, None
        if ws is not None:
            await ws.close()

    async def close(self) -> None:
        """Stop: the iteration ends, and the connection is closed."""
        self._closed = True
        await self._drop()
