"""The gateway's features, in the order their routes are added. Each module has ``setup(app)``.

``event_hub`` comes first: it opens the view and the shared event listener the others use.
Order matters for routes only where a fixed path and a variable one overlap (see ``nodes_api``);
``openapi`` builds its description at start-up, so its place (and ``api_docs``'s) does not matter.
"""

from __future__ import annotations

from types import ModuleType

from castray.gateway import (
    api_docs,
    backpressure,
    clusters_api,
    event_hub,
    files_api,
    legacy_transfers_api,
    messages_api,
    metrics,
    nodes_api,
    openapi,
    services_api,
    status_api,
    transfers_api,
    ui,
    uploads_api,
    ws,
)

ALL: list[ModuleType] = [event_hub, backpressure, status_api, clusters_api, nodes_api, ws, transfers_api,
                         files_api, uploads_api, legacy_transfers_api, messages_api, metrics, services_api,
                         ui, openapi, api_docs]
