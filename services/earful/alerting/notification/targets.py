"""The SSRF guard: webhook requests never reach private, loopback or link-local addresses.

Receiver URLs come from configuration and may name any host, so every connection is checked on
the address actually connected to (a hostname that resolves, or re-resolves, to a private address
is refused), and literal addresses already when the configuration is loaded. Networks the
operator allows (`EARFUL_WEBHOOK_ALLOWED_NETWORKS`) are exempt.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from urllib.parse import urlsplit


class TargetPolicy:
    """Refuses targets on private, loopback, link-local and other non-public addresses, unless an
    allow-listed network contains them. Checked on the address actually connected to."""

    def __init__(self, allowed_networks: tuple[str, ...] = ()) -> None:
        self.allowed = tuple(ipaddress.ip_network(n, strict=False) for n in allowed_networks)

    def refusal(self, address: str) -> str | None:
        """Why `address` (an IP) is refused, or None if it may be contacted."""
        try:
            ip = ipaddress.ip_address(address.split("%")[0])
        except ValueError:
            return f"{address!r} is not an IP address"
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
            ip = ip.ipv4_mapped
        if any(ip in net for net in self.allowed):
            return None
        for kind in ("loopback", "link_local", "private", "multicast", "reserved", "unspecified"):
            if getattr(ip, f"is_{kind}"):
                return f"{ip} is a {kind.replace('_', '-')} address (allow it with EARFUL_WEBHOOK_ALLOWED_NETWORKS)"
        if not ip.is_global:
            return f"{ip} is not a public address (allow it with EARFUL_WEBHOOK_ALLOWED_NETWORKS)"
        return None

    def check_literal(self, url: str) -> str | None:
        """A refusal for URLs whose host is a literal IP address (hostnames are checked on connect)."""
        host = urlsplit(url).hostname or ""
        try:
            ipaddress.ip_address(host)
        except ValueError:
            return None if host not in ("localhost",) else self.refusal("127.0.0.1")
        return self.refusal(host)

    async def resolve(self, host: str, port: int) -> list[str]:
        """The addresses of `host`, all of which must pass (one refused address refuses the host)."""
        loop = asyncio.get_running_loop()
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
        for address in addresses:
            reason = self.refusal(address)
            if reason:
                raise TargetRefused(f"{host}: {reason}")
        return addresses


class TargetRefused(OSError):
    """A webhook target resolved to an address the SSRF guard refuses."""
