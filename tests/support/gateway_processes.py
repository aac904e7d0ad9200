"""A ``castray gateway`` of several processes on one port, as a real process tree, and clients that note
which process answered each of their connections (``X-CastRay-Instance``)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import aiohttp
import psutil

INSTANCE = "X-CastRay-Instance"


def gateway_env(namespace: str, redis_url: str, port: int, data_dir: Path, processes: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CASTRAY_")}
    env.update(CASTRAY_NAMESPACE=namespace, CASTRAY_REDIS_URL=redis_url, CASTRAY_PORT=str(port),
               CASTRAY_DATA_DIR=str(data_dir), CASTRAY_GATEWAY_PROCESSES=str(processes),
               CASTRAY_SERVICE_BEAT_S="0.2", CASTRAY_LOG_LEVEL="WARNING")
    return env


@contextmanager
def gateway_tree(env: dict[str, str]) -> Iterator[subprocess.Popen[bytes]]:
    """``castray gateway`` in a process group of its own; the whole group is killed afterwards."""
    proc = subprocess.Popen([sys.executable, "-m", "castray.cli", "gateway"], env=env,
                            stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        yield proc
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(timeout=10)


def extra_pids(first: int) -> list[int]:
    """The gateway processes the first one started (its children)."""
    return [child.pid for child in psutil.Process(first).children()]


class NotingSession:
    """An aiohttp session whose every connection is new, noting the instance that answered each request
    (a WebSocket's too: its handshake is a request)."""

    def __init__(self) -> None:
        trace = aiohttp.TraceConfig()
        trace.on_request_end.append(self._noted)
        self.last: str | None = None
        self.http = aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True, limit=0),
                                          trace_configs=[trace])

    async def _noted(self, _session: aiohttp.ClientSession, _ctx: SimpleNamespace,
                     params: aiohttp.TraceRequestEndParams) -> None:
        self.last = params.response.headers.get(INSTANCE)

    async def get(self, url: str) -> tuple[str, int, Any]:
        """(instance, status, JSON body) of one GET on a new connection."""
        async with self.http.get(url) as resp:
            return resp.headers[INSTANCE], resp.status, await resp.json()

    async def ws(self, url: str) -> tuple[str, aiohttp.ClientWebSocketResponse]:
        ws = await self.http.ws_connect(url)
        assert self.last is not None, "the handshake named no instance"
        return self.last, ws

    async def close(self) -> None:
        await self.http.close()
