"""``/api/transfers``: queue a transfer, read one, list them, cancel one.

The gateway validates and queues (`transfer_intake`); transfer workers run the transfer and keep the
record at ``names.transfer(id)`` up to date.
"""

from __future__ import annotations

import logging

from aiohttp import web

from castray.gateway import keys
from castray.gateway import transfer_store as store
from castray.gateway.errors import ApiError, parse_body
from castray.gateway.openapi import Param, doc, integer
from castray.gateway.transfer_intake import accept, enqueue
from castray.shared.api import TransferList, TransferQueued
from castray.shared.events import TransferCancelled
from castray.shared.transfers import TransferRecord, TransferRequest

log = logging.getLogger(__name__)
TAG = "transfers"
MAX_PAGE = 500
PAGE_QUERY: dict[str, str | Param] = {
    "limit": integer("At most this many", minimum=1, maximum=MAX_PAGE, default=50),
    "offset": integer("Skip this many", minimum=0, maximum=10**9, default=0)}


@doc("Queue a transfer (unicast, multicast or broadcast) of an upload, a node's file or a generated file",
     tag=TAG, body=TransferRequest, response_model=TransferQueued, status=202,
     responses={400: "Invalid request", 404: "Unknown upload or node",
                409: "A node is not alive"})
async def create_transfer(request: web.Request) -> web.Response:
    req = await parse_body(request, TransferRequest)
    record = await accept(request.app, req)
    await enqueue(request.app, record)
    body = TransferQueued(id=record.id, targets=[d.node_id for d in record.destinations])
    return web.json_response(body.model_dump(), status=202)


@doc("A transfer's state, with each destination's progress, path and sha256", tag=TAG,
     response_model=TransferRecord, responses={404: "Unknown transfer"})
async def get_transfer(request: web.Request) -> web.Response:
    transfer_id = request.match_info["transfer_id"]
    record = await store.get_transfer(request.app[keys.REDIS], request.app[keys.NAMES], transfer_id)
    if record is None:
        raise ApiError(404, f"no transfer {transfer_id!r}")
    return web.json_response(record.model_dump(mode="json"))


@doc("Transfers, newest first", tag=TAG, response_model=TransferList, query=PAGE_QUERY,
     responses={400: "Bad limit or offset"})
async def list_transfers(request: web.Request) -> web.Response:
    limit, offset = page_params(request)
    records, total = await store.list_transfers(request.app[keys.REDIS], request.app[keys.NAMES],
                                                limit=limit, offset=offset)
    body = TransferList(transfers=records, total=total, limit=limit, offset=offset)
    return web.json_response(body.model_dump(mode="json"))


@doc("Cancel a transfer (at once if still queued; a running one stops and its temp files are removed)",
     tag=TAG, response_model=TransferRecord, responses={404: "Unknown transfer", 409: "Already finished"})
async def cancel_transfer(request: web.Request) -> web.Response:
    transfer_id = request.match_info["transfer_id"]
    app = request.app
    record = await store.request_cancel(app[keys.REDIS], app[keys.NAMES], transfer_id)
    log.info("transfer %s: cancel requested (%s)", transfer_id, record.state)  # the id: log_ids_middleware
    if record.state == "cancelled":  # it never started: no worker will announce it
        await app[keys.BUS].publish(app[keys.NAMES].transfer_events, TransferCancelled(transfer_id=record.id))
    return web.json_response(record.model_dump(mode="json"))


def page_params(request: web.Request) -> tuple[int, int]:
    """``limit`` (1 to MAX_PAGE, default 50) and ``offset`` (default 0) of a paginated list; 400 otherwise."""
    return query_int(request, "limit", 50, 1, MAX_PAGE), query_int(request, "offset", 0, 0, 10**9)


def query_int(request: web.Request, name: str, default: int, low: int, high: int) -> int:
    """An integer query parameter in ``[low, high]``; 400 otherwise."""
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError as e:
        raise ApiError(400, f"{name} must be an integer (got {raw!r})") from e
    if not low <= value <= high:
        raise ApiError(400, f"{name} must be between {low} and {high} (got {value})")
    return value


def setup(app: web.Application) -> None:
    app.router.add_post("/api/transfers", create_transfer)
    app.router.add_get("/api/transfers", list_transfers)
    app.router.add_get("/api/transfers/{transfer_id}", get_transfer)
    app.router.add_delete("/api/transfers/{transfer_id}", cancel_transfer)
