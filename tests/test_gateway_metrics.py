"""``GET /metrics``: the Prometheus text format read back with prometheus_client's own parser; request
counters move by exactly the requests made, labelled by route (never the raw path); the WebSocket gauge
follows a client; the view's gauges; the token."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from tests.support.gateway import ViewWriter, cluster, node
from tests.support.waiting import wait_for

pytest_plugins = ("tests.support.gateway_fixtures",)  # make_gateway, gateway, view

TOKEN = "metrics-token-0123456789"


async def scrape(client, **headers: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """``{(sample name, sorted labels): value}`` of one scrape."""
    resp = await client.get("/metrics", headers=headers)
    assert resp.status == 200, await resp.text()
    assert resp.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    out = {}
    for family in text_string_to_metric_families(await resp.text()):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def requests(samples, method: str, route: str, status: str) -> float:
    key = ("castray_gateway_http_requests_total",
           tuple(sorted({"method": method, "route": route, "status": status}.items())))
    return samples.get(key, 0.0)


def durations(samples, route: str) -> float:
    return samples.get(("castray_gateway_http_request_duration_seconds_count", (("route", route),)), 0.0)


async def test_request_counters_move_by_exactly_the_requests_made(gateway, view: ViewWriter) -> None:
    await view.reset(clusters=[cluster("c1")], nodes=[node("a", "c1"), node("b", "c1", state="DEAD")])
    before = await scrape(gateway)
    for _ in range(3):
        assert (await gateway.get("/api/nodes")).status == 200
    for nid in ("c1-a", "c1-b", "nope"):
        await gateway.get(f"/api/nodes/{nid}")
    assert (await gateway.get("/no/such/path")).status == 404
    after = await scrape(gateway)

    assert requests(after, "GET", "/api/nodes", "200") - requests(before, "GET", "/api/nodes", "200") == 3
    assert durations(after, "/api/nodes") - durations(before, "/api/nodes") == 3
    node_route = next(r.resource.canonical for r in gateway.app.router.routes()
                      if r.resource is not None and r.resource.canonical.startswith("/api/nodes/{"))
    assert requests(after, "GET", node_route, "200") - requests(before, "GET", node_route, "200") == 2
    assert requests(after, "GET", node_route, "404") - requests(before, "GET", node_route, "404") == 1
    assert requests(after, "GET", "unmatched", "404") - requests(before, "GET", "unmatched", "404") == 1
    routes = {dict(labels).get("route") for (_, labels) in after}
    assert not any(r and ("c1-a" in r or "nope" in r or "/no/such" in r) for r in routes)  # bounded
    # the first scrape is counted by the second, not by itself
    assert requests(after, "GET", "/metrics", "200") - requests(before, "GET", "/metrics", "200") == 1

    assert after[("castray_view_version", ())] == view.version
    assert after[("castray_nodes", (("state", "ALIVE"),))] == 1
    assert after[("castray_nodes", (("state", "DEAD"),))] == 1
    assert after[("castray_clusters", (("state", "alive"),))] == 1
    assert after[("castray_gateway_events_subscribed", ())] == 1


async def test_websocket_gauge_follows_a_client(gateway) -> None:
    gauge = ("castray_gateway_websocket_clients", ())
    assert (await scrape(gateway))[gauge] == 0
    async with gateway.ws_connect("/ws") as ws:
        await ws.receive_json()  # the snapshot: the handler has registered the client
        assert (await scrape(gateway))[gauge] == 1

    async def gone() -> bool:
        return (await scrape(gateway))[gauge] == 0

    await wait_for(gone, what="the WebSocket gauge back to 0")


async def test_metrics_needs_the_token_and_is_get_only(make_gateway) -> None:
    client = await make_gateway(api_token=TOKEN)
    resp = await client.get("/metrics")
    assert resp.status == 401
    assert (await client.get("/metrics", headers={"Authorization": "Bearer wrong"})).status == 401
    samples = await scrape(client, Authorization=f"Bearer {TOKEN}")
    assert requests(samples, "GET", "/metrics", "401") == 2
    assert (await client.post("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})).status == 405
    assert (await client.head("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})).status == 405
    spec = await (await client.get("/api/openapi.json", headers={"Authorization": f"Bearer {TOKEN}"})).json()
    op = spec["paths"]["/metrics"]["get"]
    assert list(op) and set(op["responses"]) >= {"200", "401"}
    assert "text/plain; version=0.0.4" in op["responses"]["200"]["content"]
    assert list(spec["paths"]["/metrics"]) == ["get"]
