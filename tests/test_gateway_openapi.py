"""The OpenAPI description lists every route of the real app (compared with its router), is valid
OpenAPI 3.1 (openapi-spec-validator), types its parameters and says each route's real statuses; and
/api/docs is the gateway's own page (Swagger UI in a browser: tests/test_api_docs_page.py)."""

from __future__ import annotations

import hashlib
import re
from html.parser import HTMLParser

from openapi_spec_validator import validate

from castray.gateway import keys
from castray.gateway.ui import CSP, STATIC_DIR

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
            assert op["summary"] and {"101", "200", "202", "302"} & set(op["responses"]), (method, path)
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


async def test_spec_is_valid_openapi_3_1(gateway) -> None:
    spec = await (await gateway.get("/api/openapi.json")).json()
    assert spec["openapi"] == "3.1.0"
    validate(spec)  # raises with the path of the first error


def _params(spec: dict, method: str, path: str) -> dict[str, dict]:
    return {p["name"]: p for p in spec["paths"][path][method].get("parameters", [])}


async def test_query_and_path_parameters_are_typed(gateway) -> None:
    spec = gateway.server.app[keys.OPENAPI]
    nodes = _params(spec, "get", "/api/nodes")
    assert nodes["limit"]["schema"] == {"type": "integer", "minimum": 1, "maximum": 10_000}
    assert nodes["state"]["schema"] == {"type": "string", "enum": ["ALIVE", "DEAD", "UNREACHABLE"]}
    assert nodes["external"]["schema"] == {"type": "boolean"}
    assert nodes["cursor"]["schema"] == nodes["cluster"]["schema"] == {"type": "string"}
    fields = nodes["fields"]
    assert fields["schema"]["type"] == "array" and "state" in fields["schema"]["items"]["enum"]
    assert (fields["style"], fields["explode"]) == ("form", False)  # fields=id,state
    ok = spec["paths"]["/api/nodes"]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
    assert [ref["$ref"].rsplit("/", 1)[-1] for ref in ok["anyOf"]] == ["NodeList", "NodeFieldList"]
    assert spec["components"]["schemas"]["SomeNodeFields"]["required"] == ["id"]  # fields=: only those
    for path in ("/api/transfers", "/api/uploads"):
        page = _params(spec, "get", path)
        assert page["limit"]["schema"]["type"] == page["offset"]["schema"]["type"] == "integer"
        assert page["limit"]["schema"]["default"] == 50
    assert _params(spec, "get", "/api/nodes/{node_id}/messages")["count"]["schema"]["maximum"] == 1000
    ws = _params(spec, "get", "/ws")
    assert ws["since"]["schema"]["type"] == "integer" and "status" in ws["topics"]["schema"]["items"]["enum"]
    for path, ops in spec["paths"].items():
        for op in ops.values():
            for param in op.get("parameters", []):
                assert param["in"] in ("path", "query") and param["schema"], (path, param)
                assert param["required"] == (param["in"] == "path"), (path, param)


async def test_each_operation_names_its_real_statuses(gateway) -> None:
    spec = gateway.server.app[keys.OPENAPI]

    def statuses(method: str, path: str) -> set[str]:
        return set(spec["paths"][path][method]["responses"])

    assert "302" in statuses("get", "/") and "200" not in statuses("get", "/")  # a redirect to /ui
    assert "101" in statuses("get", "/ws") and "200" not in statuses("get", "/ws")  # the upgrade
    queued = statuses("post", "/api/transfers")
    assert {"202", "400", "401", "403", "404", "409", "413", "415", "503"} == queued
    assert {"200", "304", "401", "403", "503"} == statuses("get", "/api/status")
    assert {"413", "507"} <= statuses("post", "/api/upload")
    form = spec["paths"]["/api/upload"]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"]
    assert form["required"] == ["file"] and form["properties"]["file"]["format"] == "binary"  # a file picker
    for path, ops in spec["paths"].items():
        for method, op in ops.items():
            got = set(op["responses"])
            if "application/json" in op.get("requestBody", {}).get("content", {}):
                assert {"400", "413", "415"} <= got, (method, path)
            assert ("401" in got) == (op.get("security") != []), (method, path)
    for open_path in ("/api/health", "/api/ready", "/api/docs", "/health"):
        assert spec["paths"][open_path]["get"]["security"] == []  # no token, even on a gateway with one
    assert "503" not in statuses("get", "/api/file-generator/presets")  # never touches Redis
    not_ready = spec["paths"]["/api/ready"]["get"]["responses"]["503"]["content"]["application/json"]
    assert not_ready["schema"]["$ref"].endswith("/Readiness")  # a health check's 503 is its own body
    sick = spec["paths"]["/api/health"]["get"]["responses"]["503"]["content"]["application/json"]
    assert sick["schema"] == {"type": "object"}


class _Refs(HTMLParser):
    """Every script and stylesheet a page loads, and whether any script is inline."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []
        self.inline_scripts = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "script":
            if a.get("src"):
                self.urls.append(a["src"] or "")
            else:
                self.inline_scripts += 1
        elif tag == "link" and a.get("href"):
            self.urls.append(a["href"] or "")


async def test_docs_page_and_its_assets_come_from_the_gateway_under_its_policy(gateway) -> None:
    resp = await gateway.get("/api/docs")
    assert resp.status == 200 and resp.content_type == "text/html"
    assert resp.headers["Content-Security-Policy"] == CSP  # the web page's own policy: no inline, no eval
    page = await resp.text()
    refs = _Refs()
    refs.feed(page)
    assert refs.inline_scripts == 0 and "style=" not in page and "<style" not in page
    assert "/ui/static/vendor/swagger-ui/swagger-ui-bundle.js" in refs.urls
    for url in refs.urls:
        assert url.startswith("/") and not url.startswith("//"), url  # nothing from another host
        asset = await gateway.get(url)
        assert asset.status == 200, url
    for name in ("LICENSE", "NOTICE", "VERSION", "swagger-ui-bundle.js.LICENSE.txt"):
        assert (await gateway.get(f"/ui/static/vendor/swagger-ui/{name}")).status == 200


def test_vendored_swagger_ui_is_the_release_its_version_file_names() -> None:
    folder = STATIC_DIR / "vendor" / "swagger-ui"
    listed = re.findall(r"^([0-9a-f]{64})  (\S+)$", (folder / "VERSION").read_text(), re.MULTILINE)
    assert {name for _, name in listed} == {"swagger-ui-bundle.js", "swagger-ui-bundle.js.LICENSE.txt",
                                             "swagger-ui.css"}
    for digest, name in listed:
        assert hashlib.sha256((folder / name).read_bytes()).hexdigest() == digest, f"{name} was changed"


async def test_docs_page_is_open_but_its_spec_needs_the_token(make_gateway) -> None:
    token = "docs-token-0123456789abcdef"
    client = await make_gateway(api_token=token)
    assert (await client.get("/api/docs")).status == 200  # a static page, like /ui
    assert (await client.get("/api/openapi.json")).status == 401
    ok = await client.get("/api/openapi.json", headers={"Authorization": f"Bearer {token}"})
    assert ok.status == 200


async def test_spec_names_the_optional_bearer_token(gateway) -> None:
    spec = await (await gateway.get("/api/openapi.json")).json()
    assert spec["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    assert spec["security"] == [{"bearer": []}, {}]  # a token, or none when the gateway has none
