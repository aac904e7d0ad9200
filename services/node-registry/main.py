"""``castray registry``: run the node-registry service until SIGINT/SIGTERM."""

from __future__ import annotations

import gc

from castray.node_registry.settings import RegistrySettings
from castray.node_registry.worker import RegistryWorker
from castray.shared.lifecycle import run_service
from castray.shared.log import setup_logging


def main() -> None:
    settings = RegistrySettings()
    instance = setup_logging(settings.log_level, json_lines=settings.log_json, service="node-registry")
    worker = RegistryWorker(settings=settings, instance=instance)
    # What start-up built (modules, pydantic schemas, the Redis client) lives as long as the process:
    # frozen, the collector's full passes skip it (measured: 20 ms pauses on the event path otherwise).
    gc.collect()
    gc.freeze()
    run_service(worker)


if __name__ == "__main__":
    main()
