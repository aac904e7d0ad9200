"""The original CastRay's endpoints, which the gateway still answers (its page and its scripts call them):
external clusters and nodes in the seed's shapes, messages, the file generator and the by-name transfers.

Requests are the gateway's own models (`castray.shared.api`: `CastMessage`, `CreateFile`, `CreatePreset`,
`CreateDemo`, `CreateAndTransfer`, `ManualTransfer`, `AutoToggle`); answers the original gave as free-form
JSON come back as that JSON (``dict``), except ``/api/send``'s, which has a model (`CastResponse`).
`AsyncClient` and `Client` have these methods through `OriginalApi` and `OriginalCalls`.
"""

from __future__ import annotations

from collections.abc import Coroutine, Mapping
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel

from castray.client.paths import Progress, segment
from castray.shared.api import (
    AutoToggle,
    CastMessage,
    CastResponse,
    CreateAndTransfer,
    CreateDemo,
    CreateFile,
    CreatePreset,
    ManualTransfer,
)

GEN = "/api/file-generator"  # castray.gateway.original.files.GEN
T = TypeVar("T")


def _wire(body: BaseModel) -> Any:
    return body.model_dump(mode="json", exclude_none=True)


class OriginalApi:
    """The original's endpoints on `AsyncClient` (which supplies `request` and `download`)."""

    async def request(self, method: str, path: str, *, params: Mapping[str, str] | None = None,
                      json: Any = None, data: Any = None, timeout: float | None = None) -> Any:
        raise NotImplementedError

    async def download(self, path: str, dest: str | Path, *, progress: Progress | None = None,
                       chunk_size: int = 1024 * 1024) -> Path:
        raise NotImplementedError

    async def external_info(self) -> dict[str, Any]:
        """``GET /api/cluster/external-info``: is_connected, connected_cluster (host:port),
        connected_clusters, and external_nodes keyed by node id."""
        return dict(await self.request("GET", "/api/cluster/external-info"))

    async def external_nodes(self) -> dict[str, Any]:
        """``GET /api/nodes/external``: success, external_nodes (a list), count."""
        return dict(await self.request("GET", "/api/nodes/external"))

    async def create_node(self, node_id: str) -> dict[str, Any]:
        """``POST /api/nodes``: the original's node creation, always refused (`BadRequest`, its reason in
        the message) since CastRay's nodes are Ray's."""
        return dict(await self.request("POST", "/api/nodes", json={"node_id": node_id}))

    async def delete_node(self, node_id: str) -> dict[str, Any]:
        """``DELETE /api/nodes/{id}``: the original's node removal, always refused (`BadRequest`)."""
        return dict(await self.request("DELETE", f"/api/nodes/{segment(node_id)}"))

    # --- messages ---------------------------------------------------------------------------------
    async def send_message(self, message: CastMessage) -> CastResponse:
        """``POST /api/send``: a text or JSON message to one node, several, or every alive node."""
        return CastResponse.model_validate(await self.request("POST", "/api/send", json=_wire(message)))

    async def node_messages(self, node_id: str, *, count: int = 50) -> list[dict[str, Any]]:
        """``GET /api/nodes/{id}/messages``: the node's messages, newest first."""
        path = f"/api/nodes/{segment(node_id)}/messages"
        return list(await self.request("GET", path, params={"count": str(count)}))

    # --- the file generator ---------------------------------------------------------------------------
    async def file_presets(self) -> dict[str, Any]:
        return dict(await self.request("GET", f"{GEN}/presets"))

    async def file_generator_info(self) -> dict[str, Any]:
        return dict(await self.request("GET", f"{GEN}/info"))

    async def create_file(self, body: CreateFile) -> dict[str, Any]:
        """Generate a file of an exact size in the generator's folder."""
        return dict(await self.request("POST", f"{GEN}/create", json=_wire(body), timeout=0))

    async def create_preset_file(self, body: CreatePreset) -> dict[str, Any]:
        return dict(await self.request("POST", f"{GEN}/create-preset", json=_wire(body), timeout=0))

    async def create_demo_file(self, body: CreateDemo) -> dict[str, Any]:
        """Generate a file in demo_files/, to send by name with `manual_transfer`."""
        return dict(await self.request("POST", f"{GEN}/create-demo", json=_wire(body), timeout=0))

    async def create_and_transfer(self, body: CreateAndTransfer) -> dict[str, Any]:
        """Generate a file and queue a transfer of it (its id is ``transfer_id``)."""
        return dict(await self.request("POST", f"{GEN}/create-and-transfer", json=_wire(body), timeout=0))

    async def generated_files(self) -> dict[str, Any]:
        """``GET /api/file-generator/files``: the generator's folder (``files``, ``total_size``...)."""
        return dict(await self.request("GET", f"{GEN}/files"))

    async def download_generated(self, name: str, dest: str | Path, *,
                                 progress: Progress | None = None) -> Path:
        return await self.download(f"{GEN}/download/{segment(name)}", dest, progress=progress)

    async def delete_generated(self, name: str) -> dict[str, Any]:
        return dict(await self.request("DELETE", f"{GEN}/files/{segment(name)}"))

    # --- transfers by file name -----------------------------------------------------------------------
    async def manual_transfer(self, body: ManualTransfer) -> dict[str, Any]:
        """``POST /api/file-transfers/manual``: a demo, generated or uploaded file, by name."""
        return dict(await self.request("POST", "/api/file-transfers/manual", json=_wire(body)))

    async def file_transfer_stats(self) -> dict[str, Any]:
        """``GET /api/file-transfers/status``: per-node statistics, keyed by node id."""
        return dict(await self.request("GET", "/api/file-transfers/status"))

    async def auto_transfers(self, body: AutoToggle) -> dict[str, Any]:
        """``POST /api/file-transfers/auto/toggle``: ``enabled`` false is what every node is; true is
        refused (`Conflict`: this CastRay sends nothing unless asked)."""
        return dict(await self.request("POST", "/api/file-transfers/auto/toggle", json=_wire(body)))


class OriginalCalls:
    """The same, blocking, on `Client` (which supplies ``aio`` and ``_run``)."""

    aio: OriginalApi

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        raise NotImplementedError

    def external_info(self) -> dict[str, Any]:
        return self._run(self.aio.external_info())

    def external_nodes(self) -> dict[str, Any]:
        return self._run(self.aio.external_nodes())

    def create_node(self, node_id: str) -> dict[str, Any]:
        return self._run(self.aio.create_node(node_id))

    def delete_node(self, node_id: str) -> dict[str, Any]:
        return self._run(self.aio.delete_node(node_id))

    def send_message(self, message: CastMessage) -> CastResponse:
        return self._run(self.aio.send_message(message))

    def node_messages(self, node_id: str, *, count: int = 50) -> list[dict[str, Any]]:
        return self._run(self.aio.node_messages(node_id, count=count))

    def file_presets(self) -> dict[str, Any]:
        return self._run(self.aio.file_presets())

    def file_generator_info(self) -> dict[str, Any]:
        return self._run(self.aio.file_generator_info())

    def create_file(self, body: CreateFile) -> dict[str, Any]:
        return self._run(self.aio.create_file(body))

    def create_preset_file(self, body: CreatePreset) -> dict[str, Any]:
        return self._run(self.aio.create_preset_file(body))

    def create_demo_file(self, body: CreateDemo) -> dict[str, Any]:
        return self._run(self.aio.create_demo_file(body))

    def create_and_transfer(self, body: CreateAndTransfer) -> dict[str, Any]:
        return self._run(self.aio.create_and_transfer(body))

    def generated_files(self) -> dict[str, Any]:
        return self._run(self.aio.generated_files())

    def download_generated(self, name: str, dest: str | Path, *, progress: Progress | None = None) -> Path:
        return self._run(self.aio.download_generated(name, dest, progress=progress))

    def delete_generated(self, name: str) -> dict[str, Any]:
        return self._run(self.aio.delete_generated(name))

    def manual_transfer(self, body: ManualTransfer) -> dict[str, Any]:
        return self._run(self.aio.manual_transfer(body))

    def file_transfer_stats(self) -> dict[str, Any]:
        return self._run(self.aio.file_transfer_stats())

    def auto_transfers(self, body: AutoToggle) -> dict[str, Any]:
        return self._run(self.aio.auto_transfers(body))
