"""A hostile Ray dashboard for the tests: a real aiohttp server on 127.0.0.1 that answers ``/api/version``,
``/api/v0/nodes`` and ``/nodes?view=summary`` (the endpoints discovery calls, see
``castray.discovery.dashboard``) like Ray 2.60, until the test sets ``mode`` to one of its lies:

- ``nested``: ~400 KB of nested JSON lists (``RecursionError`` in Python's parser);
- ``huge``: a node list of ``huge_rows`` well-formed rows (more than Ray's state API ever lists);
- ``flood``: an endless body with no Content-Length;
- ``garbage``: random bytes, served as JSON;
- ``slow``: a well-formed answer, one byte a second;
- ``redirect``: every path redirects to another that redirects back (a loop);
- ``churn``: a node list with new node ids on every poll.

``requests`` counts the requests per path, ``nodes_answers`` the node lists served.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections import Counter
from typing import Any

from aiohttp import web

from castray import local_ray

MODES = ("healthy", "nested", "huge", "flood", "garbage", "slow", "redirect", "churn")
SESSION = "session_2026-12-01_00-00-00_000000_4242"
NESTING = 200_000  # 400 KB of brackets, far below discovery's 32 MiB body cap


def node_id(n: int) -> str:
    """56 hex digits, told apart by the first 12 (the view's node ids keep only those)."""
    return f"{n:012x}" + "ab" * 22


def row(n: int, *, head: bool = False) -> dict[str, Any]:
    return {"node_id": node_id(n), "node_ip": "127.0.0.1", "is_head_node": head, "state": "ALIVE",
            "state_message": None, "node_name": "127.0.0.1", "resources_total": {"CPU": 1.0},
            "labels": {"ray.io/node_id": node_id(n)}}


def nodes_body(rows: list[dict[str, Any]]) -> bytes:
    return json.dumps({"result": True, "msg": "", "data": {"result": {"total": len(rows),
                       "num_after_truncation": len(rows), "result": rows}}}).encode()


class HostileDashboard:
    """``await start()`` returns the port; ``await stop()``; set ``mode`` at any time."""

    def __init__(self, *, nodes: int = 2, huge_rows: int = 20_000, churn_rows: int = 5) -> None:
        self.mode = "healthy"
        self.nodes = nodes
        self.huge_rows = huge_rows
        self.churn_rows = churn_rows
        self.requests: Counter[str] = Counter()
        self.nodes_answers = 0
        self.port = 0
        self._runner: web.AppRunner | None = None
        self._random = random.Random(12)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def healthy_rows(self) -> list[dict[str, Any]]:
        return [row(i + 1, head=i == 0) for i in range(self.nodes)]

    async def start(self) -> int:
        app = web.Application()
        app.router.add_get("/api/version", self._version)
        app.router.add_get("/api/v0/nodes", self._nodes)
        app.router.add_get("/nodes", self._summary)
        app.router.add_get("/loop/{n}", self._loop)
        self._runner = web.AppRunner(app, shutdown_timeout=0.1)
        await self._runner.setup()
        self.port = local_ray.free_port()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
        return self.port

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # --- handlers ---------------------------------------------------------------------------------------
    async def _version(self, request: web.Request) -> web.StreamResponse:
        self.requests[request.path] += 1
        if self.mode == "redirect":
            raise web.HTTPFound("/loop/1")
        return web.json_response({"version": "4", "ray_version": "2.60.0", "ray_commit": "x",
                                  "session_name": SESSION})

    async def _summary(self, request: web.Request) -> web.StreamResponse:
        self.requests[request.path] += 1
        rows = [{"hostname": f"hostile-{i}", "ip": "127.0.0.1",
                 "raylet": {"nodeId": node_id(i + 1), "isHeadNode": i == 0}} for i in range(self.nodes)]
        return web.json_response({"result": True, "data": {"summary": rows}})

    async def _loop(self, request: web.Request) -> web.StreamResponse:
        self.requests["/loop"] += 1
        raise web.HTTPFound("/api/v0/nodes" if request.match_info["n"] == "1" else "/loop/1")

    async def _nodes(self, request: web.Request) -> web.StreamResponse:
        self.requests[request.path] += 1
        self.nodes_answers += 1
        mode = self.mode
        if mode == "redirect":
            raise web.HTTPFound("/loop/2")
        if mode in ("flood", "slow"):
            return await self._stream(request, mode)
        return web.Response(body=self._body(mode), content_type="application/json")

    def _body(self, mode: str) -> bytes:
        if mode == "nested":
            deep = b"[" * NESTING + b"]" * NESTING
            return b'{"result": true, "data": {"result": {"result": ' + deep + b"}}}"
        if mode == "huge":
            return nodes_body([row(i + 1, head=i == 0) for i in range(self.huge_rows)])
        if mode == "garbage":
            return self._random.randbytes(64 * 1024)
        if mode == "churn":  # a new set of ids each time; the head stays, so the cluster is still "one"
            first = 1_000 + self.nodes_answers * self.churn_rows
            return nodes_body([row(1, head=True)] + [row(first + i) for i in range(self.churn_rows)])
        return nodes_body(self.healthy_rows())

    async def _stream(self, request: web.Request, mode: str) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "application/json"})
        await resp.prepare(request)
        try:
            if mode == "slow":
                for byte in nodes_body(self.healthy_rows()):
                    await resp.write(bytes([byte]))
                    await asyncio.sleep(1.0)
            else:
                chunk = b"[" + b"0," * 32 * 1024
                while True:
                    await resp.write(chunk)
        except ConnectionError:  # the client gave up, as it should
            pass
        return resp
