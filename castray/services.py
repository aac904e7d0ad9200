"""The CastRay services: each one's ``castray`` subcommand and the module whose ``main()`` runs it.

The one list both the CLI (a subcommand per service) and ``castray up`` (a child per service) read, kept
apart from both so that neither has to import the other.
"""

from __future__ import annotations

SERVICES: dict[str, str] = {
    "discovery": "castray.discovery.main",
    "registry": "castray.node_registry.main",
    "transfer": "castray.transfer.main",
    "gateway": "castray.gateway.main",
}
