"""The web page: ``/ui``, with its assets under ``/ui/static/`` (``/`` -> ``/ui`` is in ``status_api``).

Everything the page needs is served from this package's ``static/`` folder: plain ES modules and CSS,
no build step and nothing fetched from outside (machines running CastRay may have no internet). A strict
Content-Security-Policy makes the page refuse any script, style or connection that is not the gateway's
own, so even a slip in how data is rendered could not run injected markup.
"""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

from castray.gateway.errors import Handler

STATIC_DIR = Path(__file__).with_name("static")
STATIC_PREFIX = "/ui/static/"

# 'self' covers same-origin ws:/wss: in current browsers; nothing else may be loaded or contacted.
CSP = "; ".join([
    "default-src 'none'",
    "script-src 'self'",
    "style-src 'self'",
    "img-src 'self' data:",
    "font-src 'self'",
    "connect-src 'self'",
    "base-uri 'none'",
    "form-action 'self'",
    "frame-ancestors 'none'",
])
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}


async def index(request: web.Request) -> web.StreamResponse:
    """The page itself (no caching, so an upgraded gateway serves the matching page)."""
    response = web.FileResponse(STATIC_DIR / "index.html")
    response.headers.update(SECURITY_HEADERS)
    response.headers["Cache-Control"] = "no-cache"
    return response


async def ui_slash(request: web.Request) -> web.StreamResponse:
    raise web.HTTPFound("/ui")


@web.middleware
async def static_headers(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Security and revalidation headers on the page's assets (modules are small; ETags keep it cheap)."""
    response = await handler(request)
    if request.path.startswith(STATIC_PREFIX):
        response.headers.update(SECURITY_HEADERS)
        response.headers.setdefault("Cache-Control", "no-cache")
    return response


def setup(app: web.Application) -> None:
    """Add ``/ui`` and ``/ui/static/`` to the gateway."""
    app.router.add_get("/ui", index)
    app.router.add_get("/ui/", ui_slash)
    app.router.add_static(STATIC_PREFIX, STATIC_DIR, name="ui-static", append_version=False)
    app.middlewares.append(static_headers)
