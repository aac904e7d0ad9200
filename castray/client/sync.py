"""`Client`: `AsyncClient` for code without an event loop. It runs one loop in a thread of its own and
hands each call to it, so a script (or a notebook, whose own loop is already running) calls it plainly."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, TypeVar

from castray.client.aio import AsyncClient
from castray.client.events import DEFAULT_TOPICS, EventStream, LiveEvent
from castray.client.original import OriginalCalls
from castray.client.paths import Progress
from castray.shared.api import (
    ClusterDetail,
    ClusterSummary,
    ConnectResult,
    DisconnectResult,
    DiscoverResult,
    Readiness,
    ServiceList,
    TransferList,
    TransferQueued,
    UploadDeleted,
    UploadList,
)
from castray.shared.events import NodeInfo
from castray.shared.transfers import TransferRecord, TransferRequest, UploadRecord

T = TypeVar("T")


class Client(OriginalCalls):
    """The same operations as `AsyncClient`, each a blocking call. Close it (or use ``with``) when done."""

    aio: AsyncClient

    def __init__(self, url: str | None = None, token: str | None = None, *, timeout: float = 30.0) -> None:
        self.aio = AsyncClient(url, token, timeout=timeout)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="castray-client", daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return self.aio.url

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    def close(self) -> None:
        if self._loop.is_closed():
            return
        self._run(self.aio.close())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()

    def request(self, method: str, path: str, *, params: Mapping[str, str] | None = None,
                json: Any = None) -> Any:
        """Any endpoint (the original CastRay's, say), its JSON answer: as `AsyncClient.request`."""
        return self._run(self.aio.request(method, path, params=params, json=json))

    def status(self) -> dict[str, Any]:
        return self._run(self.aio.status())

    def health(self) -> dict[str, Any]:
        return self._run(self.aio.health())

    def ready(self) -> Readiness:
        return self._run(self.aio.ready())

    def services(self) -> ServiceList:
        return self._run(self.aio.services())

    def metrics(self) -> str:
        return self._run(self.aio.metrics())

    def openapi(self) -> dict[str, Any]:
        return self._run(self.aio.openapi())

    def clusters(self) -> list[ClusterSummary]:
        return self._run(self.aio.clusters())

    def cluster(self, cluster_id: str) -> ClusterDetail:
        return self._run(self.aio.cluster(cluster_id))

    def nodes(self, *, cluster: str | None = None, state: str | None = None,
              external: bool | None = None) -> list[NodeInfo]:
        return self._run(self.aio.nodes(cluster=cluster, state=state, external=external))

    def node(self, node_id: str) -> NodeInfo:
        return self._run(self.aio.node(node_id))

    def discover(self) -> DiscoverResult:
        return self._run(self.aio.discover())

    def connect(self, address: str) -> ConnectResult:
        return self._run(self.aio.connect(address))

    def disconnect(self, cluster: str | None = None) -> DisconnectResult:
        return self._run(self.aio.disconnect(cluster))

    def create_transfer(self, request: TransferRequest) -> TransferQueued:
        return self._run(self.aio.create_transfer(request))

    def transfer(self, transfer_id: str) -> TransferRecord:
        return self._run(self.aio.transfer(transfer_id))

    def transfers(self, *, limit: int = 50, offset: int = 0) -> TransferList:
        return self._run(self.aio.transfers(limit=limit, offset=offset))

    def cancel(self, transfer_id: str) -> TransferRecord:
        return self._run(self.aio.cancel(transfer_id))

    def wait(self, transfer_id: str, *, timeout: float | None = None,
             interval: float = 0.25) -> TransferRecord:
        return self._run(self.aio.wait(transfer_id, timeout=timeout, interval=interval))

    def upload(self, path: str | Path, *, file_name: str | None = None,
               progress: Progress | None = None) -> UploadRecord:
        """As `AsyncClient.upload`; ``progress`` is called from the client's thread."""
        return self._run(self.aio.upload(path, file_name=file_name, progress=progress))

    def get_upload(self, upload_id: str) -> UploadRecord:
        return self._run(self.aio.get_upload(upload_id))

    def download_upload(self, upload_id: str, dest: str | Path, *, progress: Progress | None = None) -> Path:
        return self._run(self.aio.download_upload(upload_id, dest, progress=progress))

    def uploads(self, *, limit: int = 50, offset: int = 0) -> UploadList:
        return self._run(self.aio.uploads(limit=limit, offset=offset))

    def delete_upload(self, upload_id: str) -> UploadDeleted:
        return self._run(self.aio.delete_upload(upload_id))

    def events(self, topics: Iterable[str] = DEFAULT_TOPICS, *, resume: tuple[str, int] | None = None,
               reconnect_for: float = 30.0) -> Iterator[LiveEvent]:
        """Live events, one blocking ``next`` at a time; closing the generator closes the stream."""
        stream: EventStream = self.aio.events(topics, resume=resume, reconnect_for=reconnect_for)
        try:
            while True:
                try:
                    yield self._run(stream.__anext__())
                except StopAsyncIteration:
                    return
        finally:
            if not self._loop.is_closed():
                self._run(stream.close())
