"""``/api/docs``: the OpenAPI description (``/api/openapi.json``) in Swagger UI, all served by the gateway.

Swagger UI is vendored, unchanged, under ``static/vendor/swagger-ui/`` (swagger-ui-dist from npm; its
``VERSION`` file says which, why not a wheel, and the checksums; licenses beside it). So the page works
with no internet, and under the same strict Content-Security-Policy as ``/ui``: no inline script or style,
no eval, nothing fetched from elsewhere.
Our one script, ``static/docs/docs.js``, fetches the spec with the page's token and starts Swagger UI;
"Try it out" calls this same gateway (same origin, so the browser guard lets its POSTs through too).

The page itself is open, like ``/ui``: it holds no data, and the spec and every call it makes ask for the
token as usual.
"""

from __future__ import annotations

from aiohttp import web

from castray.gateway.openapi import doc
from castray.gateway.ui import SECURITY_HEADERS, STATIC_DIR

PAGE = STATIC_DIR / "docs" / "index.html"


@doc("This API's interactive documentation (Swagger UI, served by the gateway: nothing fetched elsewhere); "
     "Try it out calls this gateway with the token the page has", tag="meta", content_type="text/html",
     store=False)
async def docs_page(request: web.Request) -> web.StreamResponse:
    response = web.FileResponse(PAGE)
    response.headers.update(SECURITY_HEADERS)
    response.headers["Cache-Control"] = "no-cache"  # an upgraded gateway serves the matching page
    return response


def setup(app: web.Application) -> None:
    app.router.add_get("/api/docs", docs_page)
