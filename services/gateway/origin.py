"""Browsers cannot be turned against the user: Host and Origin checks in one middleware.

- **DNS rebinding.** A page of ``attacker.example`` whose name is made to resolve to 127.0.0.1 talks to
  the gateway as its own origin, so only the ``Host`` header gives it away. Every request (health probes
  excepted) must name a host this gateway answers to: loopback names and addresses, the bind address,
  on a wildcard bind any IP address and this machine's name, and ``CASTRAY_ALLOWED_HOSTS``. Others: 403.
- **CSRF and cross-site WebSocket hijacking.** A page of another origin can send a form, a multipart
  upload or a ``text/plain`` fetch without a CORS preflight, and open a WebSocket with the user's
  network position. Each state-changing request (any method but GET/HEAD/OPTIONS) and every ``/ws``
  handshake is refused (403, before the upgrade) when its ``Origin`` is neither the gateway's own (the
  ``Host`` it was sent to) nor in ``CASTRAY_ALLOWED_ORIGINS``, or, with no ``Origin``, when
  ``Sec-Fetch-Site`` says another site sent it. Programs (curl, the CastRay services) send neither
  header and are not affected. JSON bodies must also say ``application/json`` (see ``errors.read_json``).

Modelled on Ray's ``get_browser_request_middleware`` and Jupyter's ``check_origin``/``check_host``.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass

from aiohttp import web

from castray.gateway import keys
from castray.gateway.errors import ApiError, Handler
from castray.gateway.settings import GatewaySettings, normalize_origin
from castray.shared import exposure
from castray.shared.hosts import bare_host, ip_of

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# Orchestrators probe health by IP or service name; what these answer is no secret.
HOST_CHECK_EXEMPT = frozenset({"/health", "/api/health", "/api/ready"})
BROWSER_SITES_OK = frozenset({"same-origin", "none"})  # "none": the user typed or bookmarked the URL


def split_host(host_header: str) -> tuple[str, str]:
    """``("name", "port")`` of a Host header (IPv6 in brackets kept whole; port "" when absent)."""
    value = host_header.strip().lower()
    if value.startswith("["):
        name, _, rest = value.partition("]")
        return f"{name}]", rest.removeprefix(":")
    name, _, port = value.partition(":")
    return name, port


@dataclass(frozen=True)
class BrowserPolicy:
    """Which Hosts and Origins a gateway accepts, built once from its settings."""

    hosts: frozenset[str]
    suffixes: tuple[str, ...]
    any_host: bool
    any_ip: bool
    origins: frozenset[str]

    @classmethod
    def from_settings(cls, settings: GatewaySettings) -> BrowserPolicy:
        names = {h for h in settings.allowed_hosts if not h.startswith(".") and h != "*"}
        names |= {split_host(o.split("://", 1)[1])[0] for o in settings.allowed_origins}
        wildcard = exposure.is_wildcard(settings.host)
        if wildcard or not exposure.is_loopback(settings.host):
            names.add(socket.gethostname().lower())
        if not wildcard:
            names.add(settings.host)
        return cls(hosts=frozenset(bare_host(n) for n in names),
                   suffixes=tuple(h for h in settings.allowed_hosts if h.startswith(".")),
                   any_host="*" in settings.allowed_hosts, any_ip=wildcard,
                   origins=frozenset(settings.allowed_origins))

    def host_allowed(self, host_header: str | None) -> bool:
        if self.any_host:
            return True
        if not host_header:
            return False  # HTTP/1.1 requires it; a client without one is no browser we serve
        bare = bare_host(split_host(host_header)[0])
        if exposure.is_loopback(bare) or bare in self.hosts or (self.any_ip and ip_of(bare) is not None):
            return True
        return any(bare.endswith(suffix) for suffix in self.suffixes)

    def origin_allowed(self, origin: str, host_header: str | None) -> bool:
        try:
            normal = normalize_origin(origin)
        except ValueError:
            return False  # "null" (a sandboxed frame, a file:// page) and anything malformed
        if normal in self.origins:
            return True
        if not host_header:
            return False
        return normal.split("://", 1)[1] == _without_default_port(host_header.strip().lower(), normal)

    def cross_site_reason(self, request: web.Request) -> str | None:
        """Why a browser-sent ``request`` must be refused, or None when it came from our own pages."""
        origin = request.headers.get("Origin")
        site = request.headers.get("Sec-Fetch-Site", "").lower()
        if origin is not None:
            if self.origin_allowed(origin, request.headers.get("Host")):
                return None
            # Our page sends no Referer (Referrer-Policy), so its own form posts say "Origin: null"; the
            # browser's Sec-Fetch-Site, which no page can set, tells those from a sandboxed foreign frame.
            if origin == "null" and site == "same-origin":
                return None
            return (f"cross-origin request refused: Origin {origin!r} is not this gateway's own; "
                    "a page served elsewhere must be listed in CASTRAY_ALLOWED_ORIGINS")
        if site and site not in BROWSER_SITES_OK:
            return f"cross-site request refused (Sec-Fetch-Site: {site})"
        return None


def _without_default_port(host_header: str, origin: str) -> str:
    """The Host header as the origin writes it: a browser leaves the scheme's default port out."""
    name, port = split_host(host_header)
    default = "443" if origin.startswith("https://") else "80"
    return name if port in ("", default) else f"{name}:{port}"


@web.middleware
async def browser_guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Refuse a foreign Host (DNS rebinding) and cross-site mutations or WebSockets (CSRF, CSWSH)."""
    policy = request.app[keys.BROWSER_POLICY]
    host = request.headers.get("Host")
    if request.path not in HOST_CHECK_EXEMPT and not policy.host_allowed(host):
        raise ApiError(403, f"this gateway does not answer to Host {host!r}; if that name is really this "
                       "gateway, add it to CASTRAY_ALLOWED_HOSTS", code="host_not_allowed")
    if request.method not in SAFE_METHODS or request.path == "/ws":
        reason = policy.cross_site_reason(request)
        if reason is not None:
            raise ApiError(403, reason, code="cross_origin")
    return await handler(request)
