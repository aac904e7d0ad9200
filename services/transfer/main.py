"""``castray transfer``: settings from the environment, logging, then run until SIGINT/SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib

from castray.shared.bus import connect
from castray.shared.lifecycle import serve
from castray.shared.log import setup_logging
from castray.transfer.settings import TransferSettings
from castray.transfer.worker import TransferWorker


async def _main(settings: TransferSettings, instance: str) -> None:
    redis = connect(settings.redis_url, socket_timeout=10)
    try:
        await serve(TransferWorker(settings=settings, redis=redis, instance=instance), shutdown_timeout=15)
    finally:
        await redis.aclose()


def main() -> None:
    settings = TransferSettings()
    instance = setup_logging(settings.log_level, json_lines=settings.log_json, service="transfer")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_main(settings, instance))


if __name__ == "__main__":
    main()
