"""The OpenAPI description lists every route of the real app (compared with its router), and /api/docs."""

from __future__ import annotations

import re

from castray.gateway import keys

pytest_plugins = ("tests.support.gateway_fixtures",)  # make_gateway, gateway, view

_PARAM = re.compile(r"\{([^}:]+)(?::[^}]*)?\}")


def app_routes(app) -> set[tuple[str, str]]:
    """(method, path) of every route the router serves, HEAD (added with GET) and static files aside."""
    out = set()
    for route in app.router.routes():
        info = route.resource.get_info() if route.resource else {}
        path = info.get("path") or info.get("formatter")
        if path is None or route.method in ("HEAD", "*"):
            continue  # static directories have a prefix, not a path
        out.add((route.method.lower(), _PARAM.sub(r"{\1}", path)))
    return out


async def test_every_api_route_is_in_the_spec(gateway) -> None:
    spec = await (await gateway.get("/api/openapi.json")).json()
    assert spec["openapi"].startswith("3.")
    documented = {(method, path) for path, ops in spec["paths"].items() for method in ops}
    routes = app_routes(gateway.server.app)
    api = {r for r in routes if r[1].startswith("/api/")}
    assert len(api) >= 15
    assert api - documented == set(), "routes without @doc"
    assert documented - routes == set(), "documented routes that do not exist"
    for needed in [
        ("post", "/api/cluster/discover-external"),
        ("get", "/api/cluster/external-info"),
        ("post", "/api/cluster/connect-external"),
        ("delete", "/api/cluster/disconnect-external"),
        ("get", "/api/nodes/external"),
        ("get", "/api/nodes/{node_id}"),
        ("get", "/api/clusters/{cluster_id}"),
        ("get", "/api/status"),
        ("get", "/ws"),
    ]:
        assert needed in documented


async def test_spec_operations_are_complete(gateway) -> None:
    spec = gateway.server.app[keys.OPENAPI]
    for path, ops in spec["paths"].items():
        for method, op in ops.items():
            assert op["summary"] and {"200", "202"} & set(op["responses"]), (method, path)
            for name in re.findall(r"\{(\w+)\}", path):
                assert {"name": name, "in": "path"}.items() <= next(
                    p for p in op["parameters"] if p["name"] == name
                ).items()
    queued = spec["paths"]["/api/transfers"]["post"]["responses"]
    assert "202" in queued and "200" not in queued  # what POST /api/transfers answers
    connect = spec["paths"]["/api/cluster/connect-external"]["post"]
    ref = connect["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    schema = spec["components"]["schemas"][ref.rsplit("/", 1)[-1]]
    assert schema["required"] == ["cluster_address"]
    assert {"400", "422", "503"} <= set(connect["responses"])


async def test_docs_page_lists_every_endpoint(gateway) -> None:
    resp = await gateway.get("/api/docs")
    assert resp.status == 200 and resp.content_type == "text/html"
    page = await resp.text()
    assert "<script" not in page and "http://" not in page and "https://" not in page  # no external assets
    spec = gateway.server.app[keys.OPENAPI]
    for path in spec["paths"]:
        assert f"<code>{path}</code>" in page


async def test_spec_names_the_optional_bearer_token(gateway) -> None:
    spec = await (await gateway.get("/api/openapi.json")).json()
    assert spec["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    assert spec["security"] == [{"bearer": []}, {}]  # a token, or none when the gateway has none
