"""An async client of the Ray dashboard's HTTP API (no Ray import): version, node list, node summary.

Dashboards are not trusted: every request has a timeout, bodies are read up to a cap, JSON is checked
against the shapes we expect, and every failure is a `castray.discovery.errors.ProbeError` in the
manual's terms.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from dataclasses import dataclass
from typing import Any, Literal

import aiohttp
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from castray.discovery import errors

log = logging.getLogger(__name__)

NODES_PATH = "/api/v0/nodes?limit=10000&detail=true"
SUMMARY_PATH = "/nodes?view=summary"
# Ray's state API never lists more (RAY_MAX_LIMIT_FROM_API_SERVER): a longer list is a lie.
MAX_ROWS = 10_000
_NODE_ID_RE = re.compile(r"^[0-9a-fA-F]{12,128}$")
_GCS_PORT_RE = re.compile(r"^--gcs_server_port=(\d{1,5})$")


@dataclass(frozen=True, slots=True)
class VersionInfo:
    ray_version: str
    session_name: str


class NodeRow(BaseModel):
    """One row of ``/api/v0/nodes`` (only the fields we use; rows that do not fit are dropped)."""

    model_config = ConfigDict(extra="ignore")
    node_id: str
    node_ip: str = ""
    is_head_node: bool = False
    state: Literal["ALIVE", "DEAD"]  # anything else: the row is dropped
    state_message: str | None = None
    node_name: str | None = None
    resources_total: dict[str, float] = Field(default_factory=dict)
    labels: dict[str, str] = Field(default_factory=dict)

    @field_validator("node_id")
    @classmethod
    def _hex(cls, v: str) -> str:
        if not _NODE_ID_RE.match(v):
            raise ValueError("not a Ray node id")
        return v.lower()


@dataclass(frozen=True, slots=True)
class SummaryRow:
    """What ``/nodes?view=summary`` adds: the hostname, and on the head the GCS port."""

    node_id: str
    hostname: str | None
    ip: str | None
    is_head: bool
    gcs_port: int | None


class DashboardClient:
    """Requests to one dashboard (``base_url`` like ``http://127.0.0.1:8265``) over a shared session."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        base_url: str,
        *,
        timeout: float,
        max_bytes: int,
        max_rows: int = MAX_ROWS,
    ) -> None:
        self.session = session
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.max_bytes = max_bytes
        self.max_rows = max_rows

    async def get_json(self, path: str, *, what: str = "dashboard") -> Any:
        """GET ``path`` and parse JSON; failures are classified `ProbeError`s."""
        url = self.base_url + path
        try:
            async with asyncio.timeout(self.timeout):
                async with self.session.get(url, allow_redirects=False) as resp:
                    body = await self._read_capped(resp, url)
                    status = resp.status
        except TimeoutError as e:
            raise errors.TimedOut(f"{url} did not answer within {self.timeout:g} s") from e
        except aiohttp.ClientConnectorError as e:
            raise errors.DashboardUnreachable(f"cannot connect to {self.base_url}: {e.os_error}") from e
        except aiohttp.ClientResponseError as e:  # not HTTP at all (a GCS answers HTTP/2 frames)
            raise errors.NotHttp(f"{self.base_url} does not speak HTTP/1.1 (status {e.status})") from e
        except (aiohttp.ClientError, OSError) as e:
            raise errors.DashboardUnreachable(f"{url} failed: {type(e).__name__}: {e}") from e
        if status != 200:
            raise _status_error(status, url, what)
        return _parse_json(body, url)

    async def _read_capped(self, resp: aiohttp.ClientResponse, url: str) -> bytes:
        if resp.content_length is not None and resp.content_length > self.max_bytes:
            raise errors.NotRayDashboard(
                f"{url} answered {resp.content_length} bytes (cap {self.max_bytes})"
            )
        chunks: list[bytes] = []
        size = 0
        async for chunk in resp.content.iter_chunked(64 * 1024):
            size += len(chunk)
            if size > self.max_bytes:
                raise errors.NotRayDashboard(f"{url} answered more than {self.max_bytes} bytes")
            chunks.append(chunk)
        return b"".join(chunks)

    async def version(self) -> VersionInfo:
        """``/api/version``: raises not_ray_dashboard unless it looks like Ray's."""
        data = await self.get_json("/api/version", what="version")
        if not isinstance(data, dict):
            raise errors.NotRayDashboard(f"{self.base_url}/api/version is not a Ray version document")
        ray_version, session = data.get("ray_version"), data.get("session_name")
        if not isinstance(ray_version, str) or not isinstance(session, str) or not ray_version or not session:
            raise errors.NotRayDashboard(
                f"{self.base_url} is not a Ray dashboard (no ray_version/session_name)"
            )
        return VersionInfo(ray_version=ray_version[:40], session_name=session[:200])

    async def nodes(self) -> list[NodeRow]:
        """Rows of ``/api/v0/nodes`` (ALIVE and DEAD); rows that do not fit the shape are dropped."""
        data = await self.get_json(NODES_PATH, what="nodes")
        try:
            rows = data["data"]["result"]["result"]
            if not isinstance(rows, list):
                raise TypeError("result is not a list")
        except (KeyError, TypeError) as e:
            raise errors.NotRayDashboard(f"{self.base_url}/api/v0/nodes has an unexpected shape") from e
        if len(rows) > self.max_rows:
            raise errors.NotRayDashboard(
                f"{self.base_url}/api/v0/nodes listed {len(rows)} nodes (most accepted: {self.max_rows})"
            )
        out: dict[str, NodeRow] = {}
        bad = 0
        for raw in rows:
            try:
                row = NodeRow.model_validate(raw)
            except ValidationError:
                bad += 1
                continue
            out[row.node_id] = row
        if bad:
            log.warning("%s: dropped %d malformed node rows", self.base_url, bad)
        return list(out.values())

    async def summary(self) -> list[SummaryRow]:
        """Rows of ``/nodes?view=summary`` (hostnames; the head's GCS port). Loosely parsed."""
        data = await self.get_json(SUMMARY_PATH, what="summary")
        try:
            rows = data["data"]["summary"]
            if not isinstance(rows, list):
                raise TypeError("summary is not a list")
        except (KeyError, TypeError) as e:
            raise errors.NotRayDashboard(
                f"{self.base_url}/nodes?view=summary has an unexpected shape"
            ) from e
        if len(rows) > self.max_rows:
            raise errors.NotRayDashboard(
                f"{self.base_url}/nodes?view=summary listed {len(rows)} nodes (most: {self.max_rows})"
            )
        return [r for r in (_summary_row(raw) for raw in rows) if r is not None]


def _parse_json(body: bytes, url: str) -> Any:
    """JSON from a dashboard that may lie: deep nesting (``RecursionError`` in the parser) is refused too."""
    try:
        return json.loads(body)
    except RecursionError as e:
        raise errors.NotRayDashboard(f"{url} answered JSON nested too deeply") from e
    except ValueError as e:
        raise errors.NotRayDashboard(f"{url} answered something that is not JSON") from e


def _status_error(status: int, url: str, what: str) -> errors.ProbeError:
    if 300 <= status < 400:
        return errors.NotRayDashboard(f"{url} answered a redirect (HTTP {status}), which is not followed")
    if what == "nodes" and status == 404:
        return errors.IncompatibleVersion(f"{url} answered 404: this Ray has no state API")
    if what == "nodes" and status >= 500:
        return errors.GcsUnreachable(f"{url} answered {status}: the dashboard cannot reach its GCS")
    if what == "version":
        return errors.NotRayDashboard(f"{url} answered HTTP {status}: not a Ray dashboard")
    return errors.DashboardUnreachable(f"{url} answered HTTP {status}")


def _summary_row(raw: Any) -> SummaryRow | None:
    if not isinstance(raw, dict):
        return None
    raylet = raw.get("raylet")
    if not isinstance(raylet, dict) or not isinstance(raylet.get("nodeId"), str):
        return None
    hostname = raw.get("hostname")
    ip = raw.get("ip")
    return SummaryRow(
        node_id=raylet["nodeId"].lower(),
        hostname=hostname[:253] if isinstance(hostname, str) and hostname else None,
        ip=ip if isinstance(ip, str) and ip else None,
        is_head=raylet.get("isHeadNode") is True,
        gcs_port=_gcs_port(raw.get("gcs")),
    )


def _gcs_port(gcs: Any) -> int | None:
    """The head row's ``gcs.cmdline`` holds ``--gcs_server_port=N`` (measured on Ray 2.60)."""
    cmdline = gcs.get("cmdline") if isinstance(gcs, dict) else None
    if not isinstance(cmdline, list):
        return None
    for arg in cmdline:
        m = _GCS_PORT_RE.match(arg) if isinstance(arg, str) else None
        if m and 0 < int(m.group(1)) < 65536:
            return int(m.group(1))
    return None
