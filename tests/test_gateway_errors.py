"""Hostile input against the real gateway: every mistake is a clean JSON error with the right status, and
the service stays healthy afterwards. Also the optional bearer token."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

pytest_plugins = ("tests.support.gateway_fixtures",)  # make_gateway, gateway, view

CONNECT = "/api/cluster/connect-external"
TOKEN = "s3cret-token-of-24-chars"


async def assert_json_error(resp, status: int) -> dict:
    assert resp.status == status
    assert resp.content_type == "application/json"
    body = await resp.json()
    assert body["success"] is False and body["status"] == status and body["error"] and body["code"]
    return body


async def assert_healthy(client) -> None:
    assert (await client.get("/api/health")).status == 200


@pytest.mark.parametrize("path", ["/api/nope", "/api/cluster", "/api/nodes/a/b/c", "/api/clusters/x/y"])
async def test_unknown_api_paths_are_404_json(gateway, path: str) -> None:
    body = await assert_json_error(await gateway.get(path), 404)
    assert path in body["error"]


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("PUT", "/api/status"),
        ("DELETE", "/api/nodes"),
        ("GET", CONNECT),
        ("POST", "/api/cluster/disconnect-external"),
        ("PATCH", "/api/clusters/c1"),
    ],
)
async def test_wrong_methods_are_405_json_with_allow(gateway, method: str, path: str) -> None:
    resp = await gateway.request(method, path)
    body = await assert_json_error(resp, 405)
    assert resp.headers["Allow"] and method in body["error"]


@pytest.mark.parametrize(
    "raw",
    [b"{", b'{"cluster_address": }', b"\xff\xfe\x00", b"nul\x00l", b"[" * 100_000 + b"]" * 100_000, b"NaN"],
)
async def test_malformed_json_is_400(gateway, raw: bytes) -> None:
    resp = await gateway.post(CONNECT, data=raw, headers={"Content-Type": "application/json"})
    await assert_json_error(resp, 400)
    await assert_healthy(gateway)


async def test_empty_body_is_400(gateway) -> None:
    body = await assert_json_error(await gateway.post(CONNECT), 400)
    assert "empty" in body["error"]


async def test_huge_bodies_are_413_with_or_without_a_length(gateway) -> None:
    big = b'{"cluster_address": "' + b"x" * (3 * 1024 * 1024) + b'"}'
    json_type = {"Content-Type": "application/json"}
    await assert_json_error(await gateway.post(CONNECT, data=big, headers=json_type), 413)

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(64):
            yield b"x" * 65536

    await assert_json_error(await gateway.post(CONNECT, data=chunks(), headers=json_type), 413)
    await assert_healthy(gateway)


async def test_validation_errors_name_the_field(gateway) -> None:
    body = await assert_json_error(await gateway.post(CONNECT, json={"cluster_address": 1}), 400)
    assert body["code"] == "validation_error" and body["fields"][0]["field"] == "cluster_address"


async def test_token_protects_api_but_not_health_or_ui(make_gateway) -> None:
    client = await make_gateway(api_token=TOKEN)
    resp = await client.get("/api/status")
    await assert_json_error(resp, 401)
    assert resp.headers["WWW-Authenticate"].startswith("Bearer")
    body = await assert_json_error(
        await client.get("/api/status", headers={"Authorization": "Bearer nope"}), 401
    )
    assert body["code"] == "bad_token"
    await assert_json_error(await client.get(f"/api/status?token={TOKEN}"), 401)  # never in a URL
    assert (await client.get("/api/status", headers={"Authorization": f"Bearer {TOKEN}"})).status == 200
    assert (await client.get("/api/health")).status == 200
    assert (await client.get("/health")).status == 200
    assert (await client.get("/", allow_redirects=False)).status == 302


async def test_a_burst_of_garbage_leaves_the_service_working(gateway, view) -> None:
    from tests.support.gateway import cluster

    await view.reset(epoch="e1", clusters=[cluster("c1")])
    for raw in (b"{", b"[]", b'"x"', b"1", b'{"cluster_address": {"a": 1}}') * 20:
        resp = await gateway.post(CONNECT, data=raw, headers={"Content-Type": "application/json"})
        assert resp.status == 400
    body = await (await gateway.get("/api/clusters")).json()
    assert body["count"] == 1
