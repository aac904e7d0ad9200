"""A minimal reverse proxy for the browser tests: every request and WebSocket to it goes to ``target``, with
the Host header rewritten to the target's (as nginx's plain ``proxy_pass`` does) and Origin passed on.
The page it serves therefore lives at the proxy's origin, which the gateway must be told about
(``CASTRAY_ALLOWED_ORIGINS``)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Mapping

import aiohttp
from aiohttp import web

HOP = frozenset({"host", "connection", "keep-alive", "upgrade", "transfer-encoding", "content-length",
                 "content-encoding", "te", "trailer", "proxy-authorization", "proxy-connection"})
WS_HEADERS = frozenset({"sec-websocket-key", "sec-websocket-version", "sec-websocket-extensions",
                        "sec-websocket-protocol", "sec-websocket-accept"})


def _forwarded(headers: Mapping[str, str]) -> dict[str, str]:
    return {k: v for k, v in headers.items() if k.lower() not in HOP | WS_HEADERS}


async def _pump(source: web.WebSocketResponse | aiohttp.ClientWebSocketResponse,
                sink: web.WebSocketResponse | aiohttp.ClientWebSocketResponse) -> None:
    async for msg in source:
        if msg.type == aiohttp.WSMsgType.TEXT:
            await sink.send_str(msg.data)
        elif msg.type == aiohttp.WSMsgType.BINARY:
            await sink.send_bytes(msg.data)
    await sink.close()


def proxy_app(target: str) -> web.Application:
    """Forward everything to ``target`` (``http://host:port``)."""
    ws_target = "ws://" + target.split("://", 1)[1]

    async def websocket(request: web.Request, session: aiohttp.ClientSession) -> web.StreamResponse:
        asked = request.headers.get("Sec-WebSocket-Protocol", "")
        offered = [p.strip() for p in asked.split(",") if p.strip()]
        try:
            upstream = await session.ws_connect(ws_target + request.rel_url.path_qs, protocols=offered,
                                                headers=_forwarded(request.headers))
        except aiohttp.WSServerHandshakeError as e:
            return web.Response(status=e.status, text="refused upstream")
        down = web.WebSocketResponse(protocols=(upstream.protocol,) if upstream.protocol else ())
        await down.prepare(request)
        pumps = [asyncio.ensure_future(_pump(upstream, down)), asyncio.ensure_future(_pump(down, upstream))]
        await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        for task in pumps:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, ConnectionError, RuntimeError):
                await task
        await upstream.close()
        return down

    async def forward(request: web.Request) -> web.StreamResponse:
        session = request.app[SESSION]
        if request.headers.get("Upgrade", "").lower() == "websocket":
            return await websocket(request, session)
        async with session.request(request.method, target + request.rel_url.path_qs,
                                   headers=_forwarded(request.headers), data=await request.read(),
                                   allow_redirects=False) as upstream:
            body = await upstream.read()
            return web.Response(status=upstream.status, body=body, headers=_forwarded(upstream.headers))

    async def session_ctx(app: web.Application) -> AsyncIterator[None]:
        app[SESSION] = aiohttp.ClientSession(auto_decompress=False)
        yield
        await app[SESSION].close()

    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.cleanup_ctx.append(session_ctx)
    app.router.add_route("*", "/{tail:.*}", forward)
    return app


SESSION = web.AppKey("session", aiohttp.ClientSession)


async def serve(target: str, port: int) -> web.AppRunner:
    """Start a proxy to ``target`` on 127.0.0.1:``port``; stop it with ``cleanup()``."""
    runner = web.AppRunner(proxy_app(target), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner
