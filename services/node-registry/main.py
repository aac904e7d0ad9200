"""``castray registry``: run the node-registry service until SIGINT/SIGTERM."""

from __future__ import annotations

from castray.node_registry.settings import RegistrySettings
from castray.node_registry.worker import RegistryWorker
from castray.shared.lifecycle import freeze_startup, run_service
from castray.shared.log import setup_logging


def main() -> None:
    settings = RegistrySettings()
    instance = setup_logging(settings.log_level, json_lines=settings.log_json, service="node-registry")
    worker = RegistryWorker(settings=settings, instance=instance)
    # Measured: 20 ms pauses on the event path without it.
    freeze_startup()
    run_service(worker)


if __name__ == "__main__":
    main()
