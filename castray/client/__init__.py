"""CastRay's Python SDK: `AsyncClient` (aiohttp) and `Client` (the same, blocking) for a gateway's API.

Results are the gateway's own pydantic models (`castray.shared.api`, `castray.shared.transfers`,
`castray.shared.events`); errors are `castray.client.errors` classes, all `CastRayError`s. It imports
neither the gateway nor Ray::

    from castray.client import Client
    from castray.shared.transfers import TransferRequest, UploadSource

    with Client("http://127.0.0.1:8000") as api:          # or CASTRAY_GATEWAY_URL, CASTRAY_API_TOKEN
        upload = api.upload("data.bin", progress=lambda sent, total: print(sent, total))
        queued = api.create_transfer(TransferRequest(source=UploadSource(upload_id=upload.upload_id),
                                                     mode="broadcast"))
        print(api.wait(queued.id).destinations)
"""

from castray.client.aio import DEFAULT_URL, AsyncClient
from castray.client.errors import (
    BadRequest,
    ClientError,
    Conflict,
    Forbidden,
    GatewayError,
    GatewayUnreachable,
    NotFound,
    TooLarge,
    Unauthorized,
    Unavailable,
)
from castray.client.events import EventStream, LiveEvent, Resumed, SnapshotMessage, StreamError
from castray.client.paths import Progress
from castray.client.sync import Client

__all__ = [
    "DEFAULT_URL", "AsyncClient", "BadRequest", "Client", "ClientError", "Conflict", "EventStream",
    "Forbidden", "GatewayError", "GatewayUnreachable", "LiveEvent", "NotFound", "Progress", "Resumed",
    "SnapshotMessage", "StreamError", "TooLarge", "Unauthorized", "Unavailable",
]
