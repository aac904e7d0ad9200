"""Who can reach a gateway: loopback or the network, and the token that must then guard it.

Used by the gateway's settings and entry point and by ``castray up`` (which generates a token instead of
refusing). A bind address is loopback only when every address it stands for is: ``127.0.0.1``, ``::1``,
``localhost``. A wildcard (``0.0.0.0``, ``::``, empty) or any other name or address reaches the network.
"""

from __future__ import annotations

import ipaddress
import secrets
from typing import Final

from pydantic import Field, field_validator

from castray.shared.hosts import normal
from castray.shared.settings import CommonSettings

MIN_TOKEN_LENGTH: Final = 16
LOOPBACK_NAMES: Final = frozenset({"localhost", "localhost.localdomain", "ip6-localhost"})
WILDCARDS: Final = frozenset({"", "0.0.0.0", "::", "[::]", "*"})
OPT_OUT: Final = "CASTRAY_ALLOW_UNAUTHENTICATED_NETWORK"


def is_loopback(host: str) -> bool:
    """True for an address or name that only this machine can reach."""
    name = normal(host)
    if name in LOOPBACK_NAMES or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def is_wildcard(host: str) -> bool:
    return host.strip().lower() in WILDCARDS


def check_token(value: str | None) -> str | None:
    """The token as given, or ValueError when it is empty or too short to guess-proof (a validator)."""
    if value is None:
        return None
    if not value.strip():
        raise ValueError("CASTRAY_API_TOKEN is set but empty: set a token of at least "
                         f"{MIN_TOKEN_LENGTH} characters, or unset it")
    if value != value.strip():
        raise ValueError("CASTRAY_API_TOKEN has leading or trailing white space")
    if len(value) < MIN_TOKEN_LENGTH:
        raise ValueError(f"CASTRAY_API_TOKEN is {len(value)} characters; use at least {MIN_TOKEN_LENGTH} "
                         "(e.g. python -c 'import secrets; print(secrets.token_urlsafe(32))')")
    return value


def generate_token() -> str:
    """A fresh random token (43 URL-safe characters), as ``castray up`` makes one for a network bind."""
    return secrets.token_urlsafe(32)


def unguarded_bind(host: str, token: str | None, allow_unauthenticated: bool) -> str | None:
    """The one-line reason to refuse serving on ``host``, or None when that is safe or explicitly allowed."""
    if token or allow_unauthenticated or is_loopback(host):
        return None
    where = "every interface" if is_wildcard(host) else host
    return (f"refusing to serve on {where} ({host or '0.0.0.0'}) without a token: anyone on the network "
            f"could drive CastRay. Set CASTRAY_API_TOKEN (at least {MIN_TOKEN_LENGTH} characters), bind "
            f"127.0.0.1, or set {OPT_OUT}=true to accept that")


class ExposureSettings(CommonSettings):
    """The token and the opt-out, read by the gateway (`GatewaySettings` extends this) and ``castray up``."""

    api_token: str | None = Field(
        default=None, description="If set, REST and /ws require this bearer token "
        f"(at least {MIN_TOKEN_LENGTH} characters; an empty one is an error, not 'no token'). "
        "`castray up` on a non-loopback --host without one generates one and prints the URL with it once.")
    allow_unauthenticated_network: bool = Field(
        default=False, description="Serve on a non-loopback address without CASTRAY_API_TOKEN. Off: the "
        "gateway refuses to start (exit 2). Only for a port published on loopback (e.g. compose's default).")

    @field_validator("api_token")
    @classmethod
    def _token_long_enough(cls, value: str | None) -> str | None:
        return check_token(value)
