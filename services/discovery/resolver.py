"""An aiohttp resolver that applies the address policy when a connection is made, not only when an
address is checked: a name that resolved to an allowed address a moment ago and to another one now (DNS
rebinding) is refused at connect time. (Literal addresses skip resolvers: `Prober` checks them.)"""

from __future__ import annotations

import socket
from typing import Any

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

from castray.shared.address_policy import AddressPolicy


class PolicyResolver(AbstractResolver):
    """Resolves with aiohttp's default resolver, keeping only the addresses the policy allows."""

    def __init__(self, policy: AddressPolicy) -> None:
        self.policy = policy
        self._inner = DefaultResolver()

    async def resolve(self, host: str, port: int = 0, family: Any = socket.AF_INET) -> list[ResolveResult]:
        allowed = set(await self.policy.check(host))  # AddressNotAllowed if none: the request fails
        infos = await self._inner.resolve(host, port, family)
        kept = [i for i in infos if i["host"] in allowed]
        if not kept:
            raise OSError(f"{host} resolves to no address CastRay may contact")
        return kept

    async def close(self) -> None:
        await self._inner.close()
