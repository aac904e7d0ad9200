"""Browsers cannot be turned against the user (issue 12): the real gateway refuses a foreign Host (DNS
rebinding), another origin's POST, DELETE, upload or WebSocket (CSRF, cross-site WebSocket hijacking) and
a JSON body not labelled JSON, while programs that send no Origin keep working. Checked against Redis and
the data directory: a refused request leaves nothing behind. (The same from a real browser page on another
origin: ``test_ui_cross_site.py``.)"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp
import pytest
import redis.asyncio as aioredis
from aiohttp.test_utils import TestClient

from castray.gateway.origin import BrowserPolicy
from castray.gateway.settings import GatewaySettings
from castray.shared.names import Names
from tests.support.gateway import recv
from tests.support.gateway_files import STANDARD_VIEW, files_under, gateway, seed_view

GEN = "/api/file-generator"
EVIL = "http://evil.example"
JSON = {"Content-Type": "application/json"}


@pytest.fixture
async def view(redis_client: aioredis.Redis, names: Names) -> None:
    await seed_view(redis_client, names, STANDARD_VIEW)


def own_origin(client: TestClient) -> str:
    return f"http://127.0.0.1:{client.port}"


async def status_of(resp: aiohttp.ClientResponse) -> tuple[int, dict[str, Any]]:
    return resp.status, await resp.json()


async def nothing_stored(redis: aioredis.Redis, names: Names, data_dir: Path) -> None:
    """No transfer, message or upload record in Redis, and no file in the data directory."""
    assert await redis.xlen(names.transfer_requests) == 0
    assert [k async for k in redis.scan_iter(match=f"{names.ns}:*") if b"view" not in k] == []
    assert files_under(data_dir) == []


@pytest.mark.parametrize("host", ["attacker.example", "attacker.example:8000", "127.0.0.1.nip.io:80",
                                  "evil.localhost.example"])
@pytest.mark.parametrize("path", ["/api/status", "/ui", "/api/nodes", "/ws"])
async def test_a_foreign_host_is_refused_dns_rebinding(namespace: str, tmp_path: Path, host: str,
                                                       path: str) -> None:
    async with gateway(namespace, tmp_path / "data") as client:
        status, body = await status_of(await client.get(path, headers={"Host": host}))
        assert (status, body["code"]) == (403, "host_not_allowed")
        assert "CASTRAY_ALLOWED_HOSTS" in body["error"]
        for ok in ("localhost", f"localhost:{client.port}", f"127.0.0.1:{client.port}", "[::1]:8000",
                   "castray.localhost"):
            assert (await client.get("/api/status", headers={"Host": ok})).status == 200, ok
        assert (await client.get("/api/health", headers={"Host": host})).status == 200  # probes


async def test_configured_hosts_and_origins_are_answered(namespace: str, tmp_path: Path) -> None:
    async with gateway(namespace, tmp_path / "data", allowed_hosts="Castray.LAN:8000,.corp.example",
                       allowed_origins="https://castray.example.com") as client:
        for host in ("castray.lan", "castray.lan:8000", "a.corp.example", "castray.example.com"):
            assert (await client.get("/api/status", headers={"Host": host})).status == 200, host
        for host in ("corp.example.evil", "castray.lan.evil", "10.1.2.3"):
            assert (await client.get("/api/status", headers={"Host": host})).status == 403, host


def test_a_wildcard_bind_answers_ip_addresses_but_not_other_names() -> None:
    policy = BrowserPolicy.from_settings(GatewaySettings(host="0.0.0.0", api_token="t" * 16))
    assert policy.host_allowed("10.1.2.3:8000") and policy.host_allowed("[fe80::1]:8000")
    assert not policy.host_allowed("attacker.example:8000")
    loopback = BrowserPolicy.from_settings(GatewaySettings())
    assert not loopback.host_allowed("10.1.2.3:8000") and not loopback.host_allowed(None)


async def test_cross_origin_posts_are_refused_and_change_nothing(namespace: str, names: Names, tmp_path: Path,
                                                                 redis_client: aioredis.Redis,
                                                                 view: None) -> None:
    data_dir = tmp_path / "data"
    forged: list[tuple[str, dict[str, Any]]] = [
        (f"{GEN}/create", {"data": '{"size": "1KB"}', "headers": {"Content-Type": "text/plain"}}),
        (f"{GEN}/create", {"json": {"size": "1KB"}}),
        (f"{GEN}/create-preset", {"data": {"preset": "small"}}),  # an HTML form
        ("/api/send", {"data": '{"cast_type": "broadcast", "content": "x"}',
                       "headers": {"Content-Type": "text/plain"}}),
        ("/api/transfers", {"json": {"source": {"generate": {"size": "1KB"}}, "mode": "broadcast"}}),
        ("/api/file-transfers/manual", {"json": {"file_name": "x", "recipients": ["c1-w1"]}}),
        ("/api/cluster/connect-external", {"json": {"cluster_address": "127.0.0.1:8265"}}),
    ]
    async with gateway(namespace, data_dir) as client:
        for origin in (EVIL, "null", f"http://127.0.0.1:{client.port + 1}", f"http://localhost:{client.port}"):
            for path, kw in forged:
                headers = {**kw.get("headers", {}), "Origin": origin}
                rest = {k: v for k, v in kw.items() if k != "headers"}
                status, body = await status_of(await client.post(path, headers=headers, **rest))
                assert (status, body["code"]) == (403, "cross_origin"), (origin, path, body)
            form = aiohttp.FormData()
            form.add_field("file", b"evil bytes", filename="evil.txt")
            status, body = await status_of(await client.post("/api/upload", data=form,
                                                             headers={"Origin": origin}))
            assert (status, body["code"]) == (403, "cross_origin")
            for method, path in (("DELETE", "/api/cluster/disconnect-external"),
                                 ("DELETE", f"{GEN}/files/x.txt"), ("DELETE", "/api/transfers/t1")):
                resp = await client.request(method, path, headers={"Origin": origin})
                assert resp.status == 403, (method, path)
        # Without Origin, Fetch Metadata still tells another site's request apart.
        for site in ("cross-site", "same-site"):
            resp = await client.post(f"{GEN}/create", json={"size": "1KB"}, headers={"Sec-Fetch-Site": site})
            assert resp.status == 403
    await nothing_stored(redis_client, names, data_dir)


async def test_json_bodies_must_say_json_415(namespace: str, names: Names, tmp_path: Path,
                                             redis_client: aioredis.Redis, view: None) -> None:
    data_dir = tmp_path / "data"
    async with gateway(namespace, data_dir) as client:
        for content_type in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data; b=x",
                             None):
            headers = {} if content_type is None else {"Content-Type": content_type}
            for path in (f"{GEN}/create", "/api/send", "/api/transfers"):
                status, body = await status_of(await client.post(
                    path, data=b'{"size": "1KB", "cast_type": "broadcast"}', headers=headers,
                    skip_auto_headers=["Content-Type"]))
                assert (status, body["code"]) == (415, "unsupported_media_type"), (content_type, path)
                assert "application/json" in body["error"]
    await nothing_stored(redis_client, names, data_dir)


async def test_the_gateways_own_pages_and_programs_keep_working(namespace: str, tmp_path: Path,
                                                                view: None) -> None:
    async with gateway(namespace, tmp_path / "data") as client:
        same = {"Origin": own_origin(client), "Sec-Fetch-Site": "same-origin"}
        resp = await client.post(f"{GEN}/create", json={"size": "1KB"}, headers=same)
        assert resp.status == 200, await resp.text()
        localhost = {"Origin": f"http://localhost:{client.port}", "Host": f"localhost:{client.port}"}
        assert (await client.post(f"{GEN}/create", json={"size": "1KB"}, headers=localhost)).status == 200
        # curl: no Origin, no Sec-Fetch-*; JSON with its Content-Type, a multipart upload, no body at all.
        assert (await client.post(f"{GEN}/create", json={"size": "1KB"})).status == 200
        form = aiohttp.FormData()
        form.add_field("file", b"mine", filename="mine.txt")
        assert (await client.post("/api/upload", data=form)).status == 200
        assert (await client.post(f"{GEN}/create", data=b"", headers={"Content-Type": "text/plain"})).status \
            == 400  # an empty body is a 400 whatever its label
        async with client.ws_connect("/ws", headers=same) as ws:
            assert (await recv(ws))["type"] == "snapshot"
        # The page's own form posts say "Origin: null" (it sends no Referer); the browser vouches for them.
        own_form = {"Origin": "null", "Sec-Fetch-Site": "same-origin"}
        assert (await client.post(f"{GEN}/create", json={"size": "1KB"}, headers=own_form)).status == 200
        foreign_frame = {"Origin": "null", "Sec-Fetch-Site": "cross-site"}
        assert (await client.post(f"{GEN}/create", json={"size": "1KB"}, headers=foreign_frame)).status == 403


async def test_a_configured_origin_works_behind_a_proxy(namespace: str, tmp_path: Path, view: None) -> None:
    proxy = "https://castray.example.com"
    async with gateway(namespace, tmp_path / "data", allowed_origins=f"{proxy}/") as client:
        # The proxy rewrote Host to the gateway's own address; the page's Origin is the proxy's.
        assert (await client.post(f"{GEN}/create", json={"size": "1KB"}, headers={"Origin": proxy})).status \
            == 200
        async with client.ws_connect("/ws", headers={"Origin": proxy}) as ws:
            assert (await recv(ws))["type"] == "snapshot"
        assert (await client.post(f"{GEN}/create", json={"size": "1KB"},
                                  headers={"Origin": "https://evil.castray.example.com"})).status == 403


async def test_a_cross_origin_websocket_is_refused_before_the_upgrade(namespace: str, tmp_path: Path) -> None:
    async with gateway(namespace, tmp_path / "data") as client:
        for headers in ({"Origin": EVIL}, {"Origin": "null"}, {"Host": "attacker.example"},
                        {"Sec-Fetch-Site": "cross-site"}):
            with pytest.raises(aiohttp.WSServerHandshakeError) as e:
                await client.ws_connect("/ws", headers=headers)
            assert e.value.status == 403, headers  # a JSON refusal, never 101


@pytest.mark.parametrize("bad", ["evil.example", "ftp://x.example", "https://x.example/path", "https://"])
def test_allowed_origins_must_be_origins(bad: str) -> None:
    with pytest.raises(ValueError, match="not an origin"):
        GatewaySettings(allowed_origins=bad)
