"""A Ray dashboard as it answers in the first seconds after its head started, kept that way on demand.

Ray's ``/nodes?view=summary`` adds the head row's ``gcs`` part (the GCS process, whose command line
names its port) only with the head agent's first report, a few seconds after ``/api/v0/nodes`` lists the
head ALIVE (measured on Ray 2.60: 2.6 s). Discovery probing a cluster in that window finds it without a
GCS address. `DashboardProxy` forwards every GET to a real dashboard and, while ``withhold_gcs`` is set,
drops that part, so a test can hold a real cluster in that window as long as it needs to.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
from aiohttp import web

from castray import local_ray


class DashboardProxy:
    def __init__(self, target: str) -> None:
        self.target = target.rstrip("/")
        self.withhold_gcs = True
        self.url = ""
        self._session: aiohttp.ClientSession | None = None

    async def _forward(self, request: web.Request) -> web.Response:
        assert self._session is not None
        async with self._session.get(self.target + request.path_qs, allow_redirects=False) as resp:
            body = await resp.read()
            status, content_type = resp.status, resp.content_type
        if self.withhold_gcs and request.path == "/nodes" and status == 200:
            body = _without_gcs(body)
        return web.Response(body=body, status=status, content_type=content_type)

    @asynccontextmanager
    async def running(self) -> AsyncIterator[DashboardProxy]:
        app = web.Application()
        app.router.add_get("/{tail:.*}", self._forward)
        runner = web.AppRunner(app)
        await runner.setup()
        port = local_ray.free_port()
        site = web.TCPSite(runner, "127.0.0.1", port)
        self._session = aiohttp.ClientSession()
        try:
            await site.start()
            self.url = f"http://127.0.0.1:{port}"
            yield self
        finally:
            await self._session.close()
            await runner.cleanup()


def _without_gcs(body: bytes) -> bytes:
    data: Any = json.loads(body)
    for row in data.get("data", {}).get("summary", []) or []:
        if isinstance(row, dict):
            row.pop("gcs", None)
    return json.dumps(data).encode()
