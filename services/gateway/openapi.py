"""The OpenAPI description, built from the routes themselves.

Each handler is decorated with `doc` (summary, request body model, typed query parameters, success status,
the refusals it can give); the spec is generated from the app's router at start-up, so it can never list a
route that does not exist or miss one that does. What every route can answer whatever its handler does is
added here, from the middlewares' rules: 401 (`auth`), 403 (`origin`), 503 when Redis is down
(`errors`), and for a JSON body 400, 413 and 415. ``tests/test_gateway_openapi.py`` validates the result.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from aiohttp import web
from pydantic import BaseModel

from castray.gateway import auth, keys

F = TypeVar("F", bound=Callable[..., Any])
_REF = "#/components/schemas/{model}"
_PARAM = re.compile(r"\{([^}:]+)(?::[^}]*)?\}")
SUCCESS = {101: "Switching Protocols: the WebSocket is open", 200: "OK", 202: "Accepted: the work goes on",
           302: "Found: see Location"}
REDIS_DOWN = "Redis unavailable"


@dataclass(frozen=True)
class Param:
    """A query parameter: what it means and its JSON schema. In `doc(query=...)` a bare string is a
    string parameter with that description."""

    description: str
    schema: dict[str, Any] = field(default_factory=lambda: {"type": "string"})
    comma_separated: bool = False  # an array written ``a,b,c`` (style form, explode false)

    def spec(self, name: str) -> dict[str, Any]:
        out = {"name": name, "in": "query", "required": False, "description": self.description,
               "schema": self.schema}
        if self.comma_separated:
            out.update(style="form", explode=False)
        return out


def integer(description: str, *, minimum: int, maximum: int | None = None,
            default: int | None = None) -> Param:
    schema: dict[str, Any] = {"type": "integer", "minimum": minimum}
    if maximum is not None:
        schema["maximum"] = maximum
    if default is not None:
        schema["default"] = default
    return Param(description, schema)


def boolean(description: str) -> Param:
    return Param(description, {"type": "boolean"})


def one_of(description: str, values: Iterable[str]) -> Param:
    return Param(description, {"type": "string", "enum": list(values)})


def comma_list(description: str, values: Iterable[str]) -> Param:
    """Some of ``values``, comma-separated (``fields=id,state``)."""
    items = {"type": "string", "enum": list(values)}
    return Param(description, {"type": "array", "items": items, "uniqueItems": True}, comma_separated=True)


@dataclass
class RouteDoc:
    summary: str
    tag: str = "castray"
    body: type[BaseModel] | None = None
    files: tuple[str, ...] = ()  # a multipart/form-data body: these fields carry a file each
    query: dict[str, Param] = field(default_factory=dict)
    responses: dict[int, str] = field(default_factory=dict)
    response_model: type[BaseModel] | tuple[type[BaseModel], ...] | None = None  # a tuple: any of them
    content_type: str | None = None  # of a success that is not JSON (e.g. the Prometheus text format)
    status: int = 200  # of a success (202: accepted, the work goes on after the answer)
    store: bool = True  # reads or writes Redis, so answers 503 when Redis is down
    same_body: tuple[int, ...] = ()  # refusals whose body is the success's (a health check's 503)


def doc(
    summary: str,
    *,
    tag: str = "castray",
    body: type[BaseModel] | None = None,
    query: dict[str, str | Param] | None = None,
    responses: dict[int, str] | None = None,
    response_model: type[BaseModel] | tuple[type[BaseModel], ...] | None = None,
    content_type: str | None = None,
    status: int = 200,
    store: bool = True,
    files: tuple[str, ...] = (),
    same_body: tuple[int, ...] = (),
) -> Callable[[F], F]:
    """Describe a handler for the OpenAPI spec (``store=False``: it never touches Redis; ``files``: its
    body is multipart/form-data with a file in each of these fields; ``same_body``: these statuses answer
    the success's shape, not an Error)."""
    params = {n: p if isinstance(p, Param) else Param(p) for n, p in (query or {}).items()}

    def mark(handler: F) -> F:
        handler.__openapi__ = RouteDoc(summary, tag, body, files, params,  # type: ignore[attr-defined]
                                       dict(responses or {}), response_model, content_type, status, store,
                                       same_body)
        return handler

    return mark


def _schema_ref(model: type[BaseModel], schemas: dict[str, Any]) -> dict[str, str]:
    schemas[model.__name__] = model.model_json_schema(ref_template=_REF)
    return {"$ref": _REF.format(model=model.__name__)}


def _ok_response(rdoc: RouteDoc, schemas: dict[str, Any]) -> dict[str, Any]:
    ok: dict[str, Any] = {"description": SUCCESS.get(rdoc.status, "OK")}
    if rdoc.status == 302:
        ok["headers"] = {"Location": {"schema": {"type": "string"}}}
    if isinstance(rdoc.response_model, tuple):
        any_of = [_schema_ref(model, schemas) for model in rdoc.response_model]
        ok["content"] = {"application/json": {"schema": {"anyOf": any_of}}}
    elif rdoc.response_model is not None:
        ok["content"] = {"application/json": {"schema": _schema_ref(rdoc.response_model, schemas)}}
    if rdoc.content_type is not None:
        ok["content"] = {rdoc.content_type: {"schema": {"type": "string"}}}
    return ok


def _refusals(rdoc: RouteDoc, method: str, path: str) -> dict[int, str]:
    """The handler's own refusals, then what the middlewares add on this route."""
    out = dict(rdoc.responses)
    if auth.is_protected(path):
        out.setdefault(401, "No token or a wrong one, on a gateway with CASTRAY_API_TOKEN")
    if method not in ("GET", "HEAD") or path == "/ws":
        out.setdefault(403, "Refused: a page of another site (Origin), or a Host this gateway does not "
                       "answer to")
    else:
        out.setdefault(403, "Refused: a Host this gateway does not answer to")
    if rdoc.body is not None:
        out.setdefault(400, "The body is not a JSON object, or not valid for its schema (the fields named)")
        out.setdefault(413, "The body is over CASTRAY_MAX_BODY_BYTES")
        out.setdefault(415, "The body is not labelled Content-Type: application/json")
    if rdoc.store:
        out.setdefault(503, REDIS_DOWN)
    return out


def _refusal(status: int, text: str) -> dict[str, Any]:
    if status < 400:
        return {"description": text}  # 304: no body
    out: dict[str, Any] = {"description": text, "content": {"application/json": {
        "schema": {"$ref": "#/components/schemas/Error"}}}}
    if status == 401:
        out["headers"] = {"WWW-Authenticate": {"description": 'Bearer realm="castray"',
                                               "schema": {"type": "string"}}}
    return out


def _files(fields: tuple[str, ...]) -> dict[str, Any]:
    one = {"type": "string", "format": "binary", "contentMediaType": "application/octet-stream"}
    return {"type": "object", "required": list(fields), "properties": {name: one for name in fields}}


def _operation(rdoc: RouteDoc, method: str, path: str, schemas: dict[str, Any]) -> dict[str, Any]:
    op: dict[str, Any] = {"summary": rdoc.summary, "tags": [rdoc.tag], "responses": {}}
    op["operationId"] = f"{method.lower()}_{re.sub(r'[^a-zA-Z0-9]+', '_', path).strip('_') or 'root'}"
    params = [{"name": n, "in": "path", "required": True, "schema": {"type": "string", "minLength": 1}}
              for n in _PARAM.findall(path)]
    params += [p.spec(n) for n, p in rdoc.query.items()]
    if params:
        op["parameters"] = params
    if rdoc.body is not None:
        op["requestBody"] = {"required": True, "content": {"application/json": {
            "schema": _schema_ref(rdoc.body, schemas)}}}
    if rdoc.files:
        form = {"multipart/form-data": {"schema": _files(rdoc.files)}}
        op["requestBody"] = {"required": True, "content": form}
    op["responses"][str(rdoc.status)] = _ok_response(rdoc, schemas)
    for status, text in sorted(_refusals(rdoc, method, path).items()):
        op["responses"][str(status)] = _refusal(status, text)
        if status in rdoc.same_body:
            any_json = {"application/json": {"schema": {"type": "object"}}}
            op["responses"][str(status)]["content"] = _ok_response(rdoc, schemas).get("content", any_json)
    if not auth.is_protected(path):
        op["security"] = []  # open even on a gateway with a token (health probes, the docs page)
    return op


def _routes(app: web.Application) -> Iterable[tuple[str, str, RouteDoc]]:
    for route in app.router.routes():
        info = route.resource.get_info() if route.resource else {}
        path = info.get("path") or info.get("formatter")
        rdoc: RouteDoc | None = getattr(route.handler, "__openapi__", None)
        if path and rdoc is not None and route.method not in ("HEAD", "*"):
            yield route.method, path, rdoc


ERROR_SCHEMA = {"type": "object", "required": ["success", "error", "code", "status"], "properties": {
    "success": {"type": "boolean"}, "error": {"type": "string"}, "code": {"type": "string"},
    "status": {"type": "integer"},
    "message": {"type": "string", "description": "The text of 'error' again, on the original CastRay's "
                "endpoints (its page reads this key)"}}}
# The token is optional (CASTRAY_API_TOKEN): either a bearer token or nothing. /ws also takes it as the
# subprotocol castray.bearer.<base64url token>, which OpenAPI cannot describe (see /ws's summary).
BEARER = {"type": "http", "scheme": "bearer", "description": "CASTRAY_API_TOKEN, when the gateway has one "
          "(without one, no token is needed). Browsers' cross-site requests are refused whatever they carry "
          "(Origin, Host checks)."}


def build_spec(app: web.Application, *, title: str = "CastRay", version: str = "0.1.0") -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    schemas: dict[str, Any] = {}
    for method, path, rdoc in _routes(app):
        op = _operation(rdoc, method, path, schemas)
        paths.setdefault(_PARAM.sub(r"{\1}", path), {})[method.lower()] = op
    for schema in list(schemas.values()):
        for name, sub in schema.pop("$defs", {}).items():
            schemas.setdefault(name, sub)
    schemas["Error"] = ERROR_SCHEMA
    return {"openapi": "3.1.0", "info": {"title": title, "version": version}, "paths": paths,
            "components": {"schemas": schemas, "securitySchemes": {"bearer": BEARER}},
            "security": [{"bearer": []}, {}]}


# --- serving it ----------------------------------------------------------------------------------


@doc("This API's OpenAPI 3.1 description (what /api/docs renders)", tag="meta", store=False)
async def openapi_json(request: web.Request) -> web.Response:
    return web.json_response(request.app[keys.OPENAPI])


async def _build_on_startup(app: web.Application) -> None:
    # Built once every feature has added its routes (on_startup runs after the router is frozen).
    app[keys.OPENAPI] = build_spec(app)


def setup(app: web.Application) -> None:
    app.router.add_get("/api/openapi.json", openapi_json)
    app.on_startup.append(_build_on_startup)
