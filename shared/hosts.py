"""The one reading of a host string, for every place that compares hosts: the address policy (discovery
and transfer), the gateway's Host and bind-address checks, and its allowed-hosts setting.

A host is compared bare: lower case, without IPv6 brackets or a trailing dot, and an address in its
canonical form (an IPv4-mapped IPv6 address as the IPv4 address it is, no zone), so that two spellings of
one host never compare unequal.
"""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

IP = ipaddress.IPv4Address | ipaddress.IPv6Address


def ip_of(text: str) -> IP | None:
    """The address ``text`` is, IPv4-mapped IPv6 ones as the IPv4 address they are; None for a name."""
    try:
        ip = ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return None
    mapped = ip.ipv4_mapped if isinstance(ip, ipaddress.IPv6Address) else None
    return mapped or ip


def normal(host: str) -> str:
    """``host`` (a name or an address, no port) lower case, without brackets or a trailing dot."""
    return host.strip().strip("[]").rstrip(".").lower()


def bare_host(host: str) -> str:
    """``host`` (a name or an address, no port) as hosts are compared: `normal`, an address canonical."""
    name = normal(host)
    ip = ip_of(name)
    return name if ip is None else str(ip)


def host_of(address: str) -> str:
    """The bare host of ``http://h:p``, ``h:p``, ``[v6]:p``, a bare host or address ("" if none)."""
    text = address.strip()
    ip = ip_of(text.strip("[]"))
    if ip is not None:
        return str(ip)
    try:
        host = urlsplit(text if "://" in text else f"//{text}").hostname
    except ValueError:
        return ""
    return bare_host(host or "")
