"""`AsyncClient`: every operation of the gateway's REST API, answered with the gateway's own models
(`castray.shared.api`, `castray.shared.transfers`, `castray.shared.events`), errors raised as
`castray.client.errors` classes, uploads streamed from disk, live events from `EventStream`.

The token is ``token=`` or ``CASTRAY_API_TOKEN``, sent as ``Authorization: Bearer`` (on ``/ws`` too: a
program, unlike a browser, can set that header on the handshake). The URL is ``url=`` or
``CASTRAY_GATEWAY_URL`` (default ``http://127.0.0.1:8000``). No call blocks the event loop: file reads go
to a thread.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Iterable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
from pydantic import BaseModel

from castray.client.errors import GatewayUnreachable, error_for
from castray.client.events import DEFAULT_TOPICS, EventStream
from castray.client.original import OriginalApi
from castray.client.paths import Progress, segment
from castray.shared.api import (
    ClusterDetail,
    ClusterSummary,
    ConnectResult,
    DisconnectResult,
    DiscoverResult,
    NodeDetail,
    NodeList,
    Readiness,
    ServiceList,
    TransferList,
    TransferQueued,
    UploadDeleted,
    UploadList,
)
from castray.shared.api import ClusterList as _ClusterList
from castray.shared.events import NodeInfo
from castray.shared.transfers import FINAL_STATES, TransferRecord, TransferRequest, UploadRecord

DEFAULT_URL = "http://127.0.0.1:8000"
CHUNK = 1024 * 1024
M = TypeVar("M", bound=BaseModel)


def gateway_url(url: str | None = None) -> str:
    return (url or os.environ.get("CASTRAY_GATEWAY_URL") or DEFAULT_URL).rstrip("/")


def api_token(token: str | None = None) -> str | None:
    return token if token is not None else (os.environ.get("CASTRAY_API_TOKEN") or None)


class AsyncClient(OriginalApi):
    """A gateway's API. Use as ``async with AsyncClient() as api:``, or call `close` when done."""

    def __init__(self, url: str | None = None, token: str | None = None, *, timeout: float = 30.0) -> None:
        self.url = gateway_url(url)
        self.token = api_token(token)
        self.timeout = timeout
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    def _http(self) -> aiohttp.ClientSession:
        """The session, made on first use inside the running loop (aiohttp binds it to that loop)."""
        if self._session is None or self._session.closed:
            headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
            self._session = aiohttp.ClientSession(headers=headers,
                                                  timeout=aiohttp.ClientTimeout(total=None, connect=10))
        return self._session

    async def request(self, method: str, path: str, *, params: Mapping[str, str] | None = None,
                      json: Any = None, data: Any = None, timeout: float | None = None) -> Any:
        """One call; its JSON answer, or the error class its status names. ``timeout`` 0: none (an upload
        takes as long as the file does)."""
        seconds = self.timeout if timeout is None else timeout
        limit = aiohttp.ClientTimeout(total=seconds or None)
        try:
            async with self._http().request(method, self.url + path, params=params, json=json, data=data,
                                            timeout=limit) as resp:
                is_json = resp.content_type == "application/json"
                body: Any = await resp.json() if is_json else await resp.text()
                if resp.status >= 400:
                    raise error_for(resp.status, body)
                return body
        except (aiohttp.ClientConnectionError, TimeoutError) as e:
            raise GatewayUnreachable(self.url, str(e) or type(e).__name__) from e

    async def _get(self, path: str, model: type[M], params: Mapping[str, str] | None = None) -> M:
        return model.model_validate(await self.request("GET", path, params=params))

    async def ws_connect(self, path: str, *, params: Mapping[str, str],
                         protocols: Iterable[str]) -> aiohttp.ClientWebSocketResponse:
        return await self._http().ws_connect(self.url + path, params=params, protocols=tuple(protocols),
                                             autoping=True, heartbeat=30.0)

    # --- the view -------------------------------------------------------------------------------
    async def status(self) -> dict[str, Any]:
        """``GET /api/status``: the original CastRay's status document (counts, nodes, clusters)."""
        return dict(await self.request("GET", "/api/status"))

    async def health(self) -> dict[str, Any]:
        """``GET /api/health``; raises `Unavailable` (503) when the gateway cannot serve live events."""
        return dict(await self.request("GET", "/api/health"))

    async def ready(self) -> Readiness:
        """``GET /api/ready``; raises `Unavailable` (503) until Redis answers and events are subscribed."""
        return await self._get("/api/ready", Readiness)

    async def services(self) -> ServiceList:
        """``GET /api/services``: every replica's heartbeat, stale ones marked, and the queue's depth."""
        return await self._get("/api/services", ServiceList)

    async def metrics(self) -> str:
        """``GET /metrics``: the Prometheus text."""
        return str(await self.request("GET", "/metrics"))

    async def openapi(self) -> dict[str, Any]:
        """``GET /api/openapi.json``: the gateway's own description of its API."""
        return dict(await self.request("GET", "/api/openapi.json"))

    async def clusters(self) -> list[ClusterSummary]:
        return (await self._get("/api/clusters", _ClusterList)).clusters

    async def cluster(self, cluster_id: str) -> ClusterDetail:
        return await self._get(f"/api/clusters/{segment(cluster_id)}", ClusterDetail)

    async def nodes(self, *, cluster: str | None = None, state: str | None = None,
                    external: bool | None = None) -> list[NodeInfo]:
        params = {k: v for k, v in (("cluster", cluster), ("state", state)) if v}
        if external is not None:
            params["external"] = "true" if external else "false"
        return (await self._get("/api/nodes", NodeList, params)).nodes

    async def node(self, node_id: str) -> NodeInfo:
        return (await self._get(f"/api/nodes/{segment(node_id)}", NodeDetail)).node

    # --- clusters: discovery's commands -----------------------------------------------------------
    async def discover(self) -> DiscoverResult:
        """Run a discovery pass now; what it found."""
        return DiscoverResult.model_validate(await self.request("POST", "/api/cluster/discover-external"))

    async def connect(self, address: str) -> ConnectResult:
        """Watch the cluster at ``address`` (``host:port`` or a dashboard URL)."""
        body = await self.request("POST", "/api/cluster/connect-external", json={"cluster_address": address})
        return ConnectResult.model_validate(body)

    async def disconnect(self, cluster: str | None = None) -> DisconnectResult:
        """Stop watching one external cluster (id or address), or every one."""
        params = {"cluster": cluster} if cluster else None
        body = await self.request("DELETE", "/api/cluster/disconnect-external", params=params)
        return DisconnectResult.model_validate(body)

    # --- transfers ----------------------------------------------------------------------------------
    async def create_transfer(self, request: TransferRequest) -> TransferQueued:
        wire = request.model_dump(mode="json", exclude_none=True)
        body = await self.request("POST", "/api/transfers", json=wire)
        return TransferQueued.model_validate(body)

    async def transfer(self, transfer_id: str) -> TransferRecord:
        return await self._get(f"/api/transfers/{segment(transfer_id)}", TransferRecord)

    async def transfers(self, *, limit: int = 50, offset: int = 0) -> TransferList:
        return await self._get("/api/transfers", TransferList, {"limit": str(limit), "offset": str(offset)})

    async def cancel(self, transfer_id: str) -> TransferRecord:
        body = await self.request("DELETE", f"/api/transfers/{segment(transfer_id)}")
        return TransferRecord.model_validate(body)

    async def wait(self, transfer_id: str, *, timeout: float | None = None,
                   interval: float = 0.25) -> TransferRecord:
        """The record once the transfer has ended (completed, failed or cancelled); `TimeoutError` after
        ``timeout`` seconds."""
        async with asyncio.timeout(timeout):
            while (record := await self.transfer(transfer_id)).state not in FINAL_STATES:  # noqa: ASYNC110
                await asyncio.sleep(interval)  # polled: the record is in Redis, read through the gateway
        return record

    # --- uploads ------------------------------------------------------------------------------------
    async def upload(self, path: str | Path, *, file_name: str | None = None,
                     progress: Progress | None = None, chunk_size: int = CHUNK) -> UploadRecord:
        """Stream a file to the gateway (``POST /api/upload``), a chunk at a time read in a thread;
        ``progress(sent, total)`` after each chunk. The stored upload's record."""
        path = Path(path)
        total = (await asyncio.to_thread(path.stat)).st_size
        with aiohttp.MultipartWriter("form-data") as form:
            part = form.append(_read_chunks(path, total, chunk_size, progress))
            part.set_content_disposition("form-data", name="file", filename=file_name or path.name)
            answer = await self.request("POST", "/api/upload", data=form, timeout=0)
        return await self.get_upload(str(answer["upload_id"]))

    async def get_upload(self, upload_id: str) -> UploadRecord:
        return await self._get(f"/api/uploads/{segment(upload_id)}", UploadRecord)

    async def download_upload(self, upload_id: str, dest: str | Path, *, progress: Progress | None = None,
                              chunk_size: int = CHUNK) -> Path:
        """Stream a stored upload's bytes (``GET /api/uploads/{id}/content``) into the file ``dest``."""
        return await self.download(f"/api/uploads/{segment(upload_id)}/content", dest, progress=progress,
                                   chunk_size=chunk_size)

    async def download(self, path: str, dest: str | Path, *, progress: Progress | None = None,
                       chunk_size: int = CHUNK) -> Path:
        """Stream the bytes ``GET path`` answers into the file ``dest``, each chunk written in a thread;
        ``progress(received, total)`` after each. ``dest``."""
        dest = Path(dest)
        try:
            async with self._http().get(self.url + path, timeout=aiohttp.ClientTimeout(total=None)) as resp:
                if resp.status >= 400:
                    raise error_for(resp.status, await resp.json(content_type=None))
                total, received = resp.content_length or 0, 0
                f = await asyncio.to_thread(dest.open, "wb")
                try:
                    async for chunk in resp.content.iter_chunked(chunk_size):
                        await asyncio.to_thread(f.write, chunk)
                        received += len(chunk)
                        if progress is not None:
                            progress(received, total)
                finally:
                    await asyncio.to_thread(f.close)
        except (aiohttp.ClientConnectionError, TimeoutError) as e:
            raise GatewayUnreachable(self.url, str(e) or type(e).__name__) from e
        return dest

    async def uploads(self, *, limit: int = 50, offset: int = 0) -> UploadList:
        return await self._get("/api/uploads", UploadList, {"limit": str(limit), "offset": str(offset)})

    async def delete_upload(self, upload_id: str) -> UploadDeleted:
        body = await self.request("DELETE", f"/api/uploads/{segment(upload_id)}")
        return UploadDeleted.model_validate(body)

    # --- live events -------------------------------------------------------------------------------
    def events(self, topics: Iterable[str] = DEFAULT_TOPICS, *, resume: tuple[str, int] | None = None,
               reconnect_for: float = 30.0) -> EventStream:
        """Live events, typed (`castray.client.events`); ``resume=(epoch, version)`` continues a stream."""
        return EventStream(self, topics, resume=resume, reconnect_for=reconnect_for)


async def _read_chunks(path: Path, total: int, size: int, progress: Progress | None
                       ) -> AsyncIterator[bytes]:
    f = await asyncio.to_thread(path.open, "rb")
    try:
        sent = 0
        while chunk := await asyncio.to_thread(f.read, size):
            yield chunk
            sent += len(chunk)
            if progress is not None:
                progress(sent, total)
    finally:
        await asyncio.to_thread(f.close)
