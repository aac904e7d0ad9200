"""The OpenAPI description, built from the routes themselves.

Each handler is decorated with `doc` (summary, request body model, query parameters, responses); the
spec is generated from the app's router at start-up, so it can never list a route that does not exist
or miss one that does.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from aiohttp import web
from pydantic import BaseModel

from castray.gateway import auth, keys

F = TypeVar("F", bound=Callable[..., Any])


@dataclass
class RouteDoc:
    summary: str
    tag: str = "castray"
    body: type[BaseModel] | None = None
    query: dict[str, str] = field(default_factory=dict)
    responses: dict[int, str] = field(default_factory=dict)
    response_model: type[BaseModel] | None = None
    content_type: str | None = None  # of a success that is not JSON (e.g. the Prometheus text format)
    status: int = 200  # of a success (202: accepted, the work goes on after the answer)


def doc(
    summary: str,
    *,
    tag: str = "castray",
    body: type[BaseModel] | None = None,
    query: dict[str, str] | None = None,
    responses: dict[int, str] | None = None,
    response_model: type[BaseModel] | None = None,
    content_type: str | None = None,
    status: int = 200,
) -> Callable[[F], F]:
    """Describe a handler for the OpenAPI spec."""

    def mark(handler: F) -> F:
        handler.__openapi__ = RouteDoc(summary, tag, body, dict(query or {}), dict(responses or {}),  # type: ignore[attr-defined]
                                       response_model, content_type, status)
        return handler

    return mark


_REF = "#/components/schemas/{model}"
_PARAM = re.compile(r"\{([^}:]+)(?::[^}]*)?\}")


def _ok_response(rdoc: RouteDoc, schemas: dict[str, Any]) -> dict[str, Any]:
    ok: dict[str, Any] = {"description": "Accepted" if rdoc.status == 202 else "OK"}
    if rdoc.response_model is not None:
        name = rdoc.response_model.__name__
        schemas[name] = rdoc.response_model.model_json_schema(ref_template="#/components/schemas/{model}")
        ok["content"] = {"application/json": {"schema": {"$ref": f"#/components/schemas/{name}"}}}
    if rdoc.content_type is not None:
        ok["content"] = {rdoc.content_type: {"schema": {"type": "string"}}}
    return ok


def build_spec(app: web.Application, *, title: str = "CastRay", version: str = "0.1.0") -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    schemas: dict[str, Any] = {}
    for route in app.router.routes():
        info = route.resource.get_info() if route.resource else {}
        path = info.get("path") or info.get("formatter")
        if not path or route.method in ("HEAD", "*"):
            continue
        rdoc: RouteDoc | None = getattr(route.handler, "__openapi__", None)
        if rdoc is None:
            continue
        op: dict[str, Any] = {"summary": rdoc.summary, "tags": [rdoc.tag], "responses": {}}
        params = [{"name": n, "in": "path", "required": True, "schema": {"type": "string"}}
                  for n in _PARAM.findall(path)]
        params += [{"name": n, "in": "query", "required": False, "description": d,
                    "schema": {"type": "string"}} for n, d in rdoc.query.items()]
        if params:
            op["parameters"] = params
        if rdoc.body is not None:
            schemas[rdoc.body.__name__] = rdoc.body.model_json_schema(ref_template=_REF)
            op["requestBody"] = {"required": True, "content": {"application/json": {
                "schema": {"$ref": f"#/components/schemas/{rdoc.body.__name__}"}}}}
        op["responses"][str(rdoc.status)] = _ok_response(rdoc, schemas)
        refusals = dict(rdoc.responses)
        if auth.is_protected(path):
            refusals.setdefault(401, "No token or a wrong one, on a gateway with CASTRAY_API_TOKEN")
        if route.method not in ("GET", "HEAD") or path == "/ws":
            refusals.setdefault(403, "Refused: a page of another site (Origin), or a Host this gateway "
                                "does not answer to")
        else:
            refusals.setdefault(403, "Refused: a Host this gateway does not answer to")
        if rdoc.body is not None:
            refusals.setdefault(415, "The body is not labelled Content-Type: application/json")
        for status, text in refusals.items():
            op["responses"][str(status)] = {"description": text, "content": {"application/json": {
                "schema": {"$ref": "#/components/schemas/Error"}}}}
        paths.setdefault(_PARAM.sub(r"{\1}", path), {})[route.method.lower()] = op
    for schema in list(schemas.values()):
        for name, sub in schema.pop("$defs", {}).items():
            schemas.setdefault(name, sub)
    schemas["Error"] = {"type": "object", "required": ["success", "error", "code", "status"], "properties": {
        "success": {"type": "boolean"}, "error": {"type": "string"}, "code": {"type": "string"},
        "status": {"type": "integer"},
        "message": {"type": "string", "description": "The text of 'error' again, on the original CastRay's "
                    "endpoints (its page reads this key)"}}}
    # The token is optional (CASTRAY_API_TOKEN): either a bearer token or nothing. /ws also takes it as the
    # subprotocol castray.bearer.<base64url token>, which OpenAPI cannot describe (see /ws's summary).
    bearer = {"type": "http", "scheme": "bearer", "description": "CASTRAY_API_TOKEN, when the gateway has "
              "one. Browsers' cross-site requests are refused whatever they carry (Origin, Host checks)."}
    return {"openapi": "3.1.0", "info": {"title": title, "version": version}, "paths": paths,
            "components": {"schemas": schemas, "securitySchemes": {"bearer": bearer}},
            "security": [{"bearer": []}, {}]}


# --- serving it ----------------------------------------------------------------------------------


@doc("This API's OpenAPI 3.1 description", tag="meta")
async def openapi_json(request: web.Request) -> web.Response:
    return web.json_response(request.app[keys.OPENAPI])


@doc("A plain page listing every endpoint (no external assets)", tag="meta")
async def docs_page(request: web.Request) -> web.Response:
    spec = request.app[keys.OPENAPI]
    rows = []
    for path, ops in sorted(spec["paths"].items()):
        for method, op in sorted(ops.items()):
            rows.append(f"<tr><td><code>{html.escape(method.upper())}</code></td><td><code>{html.escape(path)}"
                        f"</code></td><td>{html.escape(op['summary'])}</td></tr>")
    page = (
        "<!doctype html><html><head><meta charset='utf-8'><title>CastRay API</title><style>"
        "body{font-family:sans-serif;margin:2em}td{padding:.3em 1em;border-bottom:1px solid #ddd}"
        "</style></head><body><h1>CastRay API</h1><p>Machine-readable: "
        "<a href='/api/openapi.json'>/api/openapi.json</a></p><table>" + "".join(rows)
        + "</table></body></html>"
    )
    return web.Response(text=page, content_type="text/html")


async def _build_on_startup(app: web.Application) -> None:
    # Built once every feature has added its routes (on_startup runs after the router is frozen).
    app[keys.OPENAPI] = build_spec(app)


def setup(app: web.Application) -> None:
    app.router.add_get("/api/openapi.json", openapi_json)
    app.router.add_get("/api/docs", docs_page)
    app.on_startup.append(_build_on_startup)
