"""``castray discovery``: settings from the environment, logging, then run until SIGINT/SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib

from castray.discovery.settings import DiscoverySettings
from castray.discovery.worker import DiscoveryWorker
from castray.shared.bus import connect
from castray.shared.lifecycle import serve
from castray.shared.log import setup_logging


async def _main(settings: DiscoverySettings, instance: str) -> None:
    # A socket timeout so a hung Redis fails the write (and triggers a rewrite) instead of stalling us.
    redis = connect(settings.redis_url, socket_timeout=5)
    try:
        await serve(DiscoveryWorker(settings=settings, redis=redis, source=instance))
    finally:
        await redis.aclose()


def main() -> None:
    settings = DiscoverySettings()
    instance = setup_logging(settings.log_level, json_lines=settings.log_json, service="discovery")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_main(settings, instance))


if __name__ == "__main__":
    main()
