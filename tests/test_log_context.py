"""The log lines' fields (issue 13 item 6): service and instance on every line; the transfer, cluster and
node ids inside `log_context` (or after `bind`) and not outside; followed into asyncio tasks and
``asyncio.to_thread``, and into a plain thread only when it is given the context; the gateway's relay of
Redis events names the ids of the event a line is about."""

from __future__ import annotations

import asyncio
import contextvars
import logging
import threading
from datetime import datetime

import redis.asyncio as aioredis
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from castray.gateway import keys
from castray.gateway.log_ids import log_ids_middleware
from castray.gateway.view_cache import SharedRead
from castray.shared.bus import Bus
from castray.shared.events import Event, TransferCancelled, TransferFailed
from castray.shared.log import IDS, bind, log_context, log_ids, without_ids
from castray.shared.names import Names
from tests.support.gateway import ViewWriter, cluster, node
from tests.support.gateway_fixtures import GatewayFactory
from tests.support.json_logs import about, captured, parse
from tests.support.waiting import wait_for

pytest_plugins = ("tests.support.gateway_fixtures",)  # make_gateway, view
log = logging.getLogger("castray.test.log_context")


def _lines(text: str) -> list[dict[str, object]]:
    lines, other = parse(text)
    assert other == [], f"lines that are not JSON objects: {other}"
    return lines


def test_every_json_line_names_its_service_and_instance_with_time_level_logger_and_message() -> None:
    with captured(service="transfer", instance="transfer@h:7:abcdef") as text:
        log.info("hello %s", "there")
        try:
            raise ValueError("boom")
        except ValueError:
            log.exception("it failed")
    hello, failed = _lines(text())
    assert {k: hello[k] for k in ("level", "service", "instance", "logger", "message")} == {
        "level": "INFO", "service": "transfer", "instance": "transfer@h:7:abcdef",
        "logger": "castray.test.log_context", "message": "hello there"}
    assert datetime.fromisoformat(str(hello["time"]).replace("Z", "+00:00")).tzinfo is not None
    assert not set(IDS) & hello.keys()  # no id where there is none, not even a null
    assert failed["level"] == "ERROR" and "ValueError: boom" in str(failed["exc_info"])


def test_a_line_inside_log_context_carries_its_ids_and_a_line_outside_does_not() -> None:
    with captured() as text:
        log.info("before")
        with log_context(transfer_id="t1", cluster_id="c1"):
            log.info("transfer")
            with log_context(node_id="n1"):
                log.info("destination")
            log.info("transfer again")
        log.info("after")
    lines = {line["message"]: line for line in _lines(text())}
    assert lines["transfer"]["transfer_id"] == "t1" and lines["transfer"]["cluster_id"] == "c1"
    assert "node_id" not in lines["transfer"] and "node_id" not in lines["transfer again"]
    assert (lines["destination"]["transfer_id"], lines["destination"]["node_id"]) == ("t1", "n1")
    for outside in ("before", "after"):
        assert not set(IDS) & lines[outside].keys()
    assert log_ids() == {}


def test_an_id_given_in_extra_wins_over_the_context() -> None:
    with captured() as text, log_context(transfer_id="t1", node_id="n1"):
        log.info("explicit", extra={"node_id": "n2"})
    (line,) = _lines(text())
    assert (line["transfer_id"], line["node_id"]) == ("t1", "n2")


async def test_ids_follow_asyncio_tasks_and_to_thread_and_each_task_binds_its_own() -> None:
    async def job(tid: str) -> None:
        bind(transfer_id=tid)  # for the rest of this task only
        await asyncio.sleep(0)
        log.info("job step")
        await asyncio.to_thread(log.info, "job thread")
        await asyncio.create_task(_child())

    async def _child() -> None:
        log.info("child task")

    with captured() as text:
        with log_context(cluster_id="c1"):
            await asyncio.gather(job("t1"), job("t2"))
        log.info("done")
    lines = _lines(text())
    for tid in ("t1", "t2"):
        mine = about(lines, transfer_id=tid)
        assert sorted(str(line["message"]) for line in mine) == ["child task", "job step", "job thread"]
        assert all(line["cluster_id"] == "c1" for line in mine)
    (done,) = about(lines, message="done")
    assert not set(IDS) & done.keys()  # the tasks' binds stayed in the tasks


def test_a_plain_thread_starts_without_ids_unless_it_runs_in_a_copy_of_the_context() -> None:
    with captured() as text, log_context(transfer_id="t1"):
        bare = threading.Thread(target=log.info, args=("bare thread",))
        copied = threading.Thread(target=contextvars.copy_context().run, args=(log.info, "copied thread"))
        for t in (bare, copied):
            t.start()
            t.join()
    lines = _lines(text())
    assert "transfer_id" not in about(lines, message="bare thread")[0]
    assert about(lines, message="copied thread")[0]["transfer_id"] == "t1"


async def test_a_task_started_in_without_ids_has_none() -> None:
    with captured() as text, log_context(transfer_id="t1"):
        await asyncio.create_task(asyncio.to_thread(log.info, "shared reader"), context=without_ids())
    (line,) = _lines(text())
    assert "transfer_id" not in line


def test_text_lines_end_with_the_ids() -> None:
    with captured(service="discovery", json_lines=False) as text:
        with log_context(cluster_id="c7", node_id="c7-abc"):
            log.warning("cluster lost")
        log.warning("no ids")
    with_ids, without = text().splitlines()
    assert with_ids.endswith(" discovery WARNING castray.test.log_context: cluster lost "
                             "[cluster_id=c7 node_id=c7-abc]")
    assert without.endswith("castray.test.log_context: no ids")


def test_an_id_with_a_newline_cannot_forge_a_text_line() -> None:
    with captured(service="gateway", json_lines=False) as text:
        with log_context(node_id="n1\n2026-12-02 gateway ERROR forged: yes"):
            log.warning("about a node")
    (line,) = text().splitlines()
    assert line.endswith("about a node [node_id='n1\\n2026-12-02 gateway ERROR forged: yes']"), line


async def test_a_gateway_request_logs_the_ids_of_its_route_and_the_next_request_does_not() -> None:
    async def handler(request: web.Request) -> web.Response:
        log.info("handling %s", request.path)
        return web.Response(text="ok")

    app = web.Application(middlewares=[log_ids_middleware])
    app.router.add_get("/api/transfers/{transfer_id}", handler)
    app.router.add_get("/api/nodes/{node_id}", handler)
    app.router.add_get("/api/status", handler)
    with captured(service="gateway") as text:
        async with TestClient(TestServer(app, host="127.0.0.1")) as client:  # one keep-alive connection
            for path in ("/api/transfers/abc123", "/api/nodes/c1-n1", "/api/status"):
                assert (await client.get(path)).status == 200
    lines = {line["message"]: line for line in _lines(text())}
    assert lines["handling /api/transfers/abc123"]["transfer_id"] == "abc123"
    assert lines["handling /api/nodes/c1-n1"]["node_id"] == "c1-n1"
    assert "transfer_id" not in lines["handling /api/nodes/c1-n1"]
    assert not set(IDS) & lines["handling /api/status"].keys()


async def test_a_shared_read_started_by_one_request_carries_none_of_its_ids() -> None:
    """The gateway's `SharedRead` serves every caller of a round: its lines must not name the request
    that happened to start it."""
    seen: list[dict[str, str]] = []

    async def read() -> int:
        seen.append(log_ids())
        return len(seen)

    shared = SharedRead(read)
    with log_context(node_id="n1", cluster_id="c1"):
        assert await shared() == 1
    assert seen == [{}]


async def test_a_failure_to_relay_an_event_names_the_transfer_cluster_or_node_it_is_about(
    make_gateway: GatewayFactory, redis_client: aioredis.Redis, names: Names, view: ViewWriter,
) -> None:
    """The gateway's relay of Redis events to /ws clients: a bug with one event is logged with that
    event's ids (an observer of the hub that fails stands for the bug)."""
    gateway = await make_gateway()

    def broken(event: Event) -> None:
        raise RuntimeError(f"cannot count {event.type}")

    gateway.server.app[keys.HUB].observers.append(broken)
    bus = Bus(redis_client, names, source="test-transfer")
    with captured(service="gateway") as text:
        await view.reset()
        await bus.publish(names.transfer_events, TransferFailed(transfer_id="t1", node_id="c1-n1", error="x"))
        await bus.publish(names.transfer_events, TransferCancelled(transfer_id="t2"))
        await view.found(cluster("c1"))
        await view.change("node", "added", "c2-n2", node("n2", "c2"))
        await wait_for(lambda: text().count("could not relay") == 5, "the five failures logged")
    failed = [line for line in _lines(text()) if str(line["message"]).startswith("could not relay")]
    assert all(line["level"] == "ERROR" and "cannot count" in str(line["exc_info"]) for line in failed)
    ids = sorted((str(line["message"]), sorted((k, line[k]) for k in IDS if k in line)) for line in failed)
    assert ids == [
        ("could not relay transfer-cancelled", [("transfer_id", "t2")]),
        ("could not relay transfer-failed", [("node_id", "c1-n1"), ("transfer_id", "t1")]),
        ("could not relay view-changed", [("cluster_id", "c1")]),
        ("could not relay view-changed", [("cluster_id", "c2"), ("node_id", "c2-n2")]),
        ("could not relay view-reset", []),  # about the whole view
    ]
