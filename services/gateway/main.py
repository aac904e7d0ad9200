"""``castray gateway``: settings from the environment (which ``--host``/``--port`` set), then serve until a
signal. With ``CASTRAY_GATEWAY_PROCESSES`` above 1 it starts the other processes once it serves
(``processes.py``).

A busy port is one clear line on stderr and exit status 1, never a traceback. Bad settings, and a
non-loopback bind without a token (unless ``CASTRAY_ALLOW_UNAUTHENTICATED_NETWORK``), are one line and
exit status 2.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import sys

from aiohttp import web
from pydantic import ValidationError

from castray.gateway.app import create_app
from castray.gateway.errors import PortInUse
from castray.gateway.processes import GatewayProcesses
from castray.gateway.settings import GatewaySettings
from castray.shared import exposure
from castray.shared.lifecycle import freeze_startup, run_service
from castray.shared.log import setup_logging

log = logging.getLogger(__name__)


class GatewayServer:
    """The gateway as a service for `shared.lifecycle`: ``run()`` serves until ``close()``."""

    name = "gateway"

    def __init__(self, *, settings: GatewaySettings, instance: str | None = None) -> None:
        self.settings, self.instance = settings, instance
        self.runner: web.AppRunner | None = None
        self.extras: GatewayProcesses | None = None
        self._stopped = asyncio.Event()

    async def run(self) -> None:
        settings = self.settings
        self.runner = web.AppRunner(create_app(settings, instance=self.instance), access_log=None)
        await self.runner.setup()
        shared = settings.reuse_port or settings.gateway_processes > 1
        site = web.TCPSite(self.runner, settings.host, settings.port, shutdown_timeout=3.0,
                           reuse_port=shared or None)
        try:
            await site.start()
        except OSError as e:
            if e.errno == errno.EADDRINUSE:
                raise PortInUse(settings.host, settings.port) from e
            raise
        port = bound_port(self.runner, settings.port)
        freeze_startup()  # with 1,000 WebSocket clients: full passes of 60 ms instead of 135, and fewer
        log.info("gateway serving on http://%s:%d (UI at /ui, API docs at /api/docs)%s", settings.host, port,
                 f", {settings.gateway_processes} processes" if settings.gateway_processes > 1 else "")
        if settings.gateway_processes > 1:
            self.extras = GatewayProcesses(settings.gateway_processes, port)
            self.extras.start()
        await self._stopped.wait()

    async def close(self) -> None:
        self._stopped.set()
        extras, self.extras = self.extras, None
        runner, self.runner = self.runner, None
        await asyncio.gather(extras.close() if extras else asyncio.sleep(0),
                             runner.cleanup() if runner else asyncio.sleep(0))


def bound_port(runner: web.AppRunner, asked: int) -> int:
    """The port the site bound (``asked``, or the one the system chose for 0)."""
    for address in runner.addresses:
        if isinstance(address, tuple) and len(address) >= 2:
            return int(address[1])
    return asked


def main() -> None:
    """Entry point: the environment alone decides (``castray gateway --host/--port`` set it)."""
    try:
        settings = GatewaySettings()
    except ValidationError as e:
        problems = "; ".join(f"{'.'.join(map(str, err['loc']))}: {err['msg']}" for err in e.errors())
        print(f"castray gateway: bad settings: {problems}", file=sys.stderr)
        sys.exit(2)
    refusal = exposure.unguarded_bind(settings.host, settings.api_token,
                                      settings.allow_unauthenticated_network)
    if refusal is not None:
        print(f"castray gateway: {refusal}", file=sys.stderr)
        sys.exit(2)
    instance = setup_logging(settings.log_level, json_lines=settings.log_json, service="gateway")
    try:
        run_service(GatewayServer(settings=settings, instance=instance))
    except PortInUse as e:
        print(f"castray gateway: {e}", file=sys.stderr)
        sys.exit(1)
    except OSError as e:
        print(f"castray gateway: cannot serve on {settings.host}:{settings.port}: {e.strerror or e}",
              file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
