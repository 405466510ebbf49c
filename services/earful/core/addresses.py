"""The SSRF guard: outgoing HTTP requests do not reach private, loopback or link-local addresses.

URLs that come from elsewhere (a webhook receiver in a configuration file, the target of a
redirect a polled feed or Mastodon instance answers with) may name any host, so a connection is
checked on the address actually connected to: a hostname that resolves, or re-resolves, to a
private address is refused, not only a literal one. Networks the operator allows in a setting are
exempt, and so are the origins (host and port) the operator configured to be fetched as given.
Both HTTP clients in use are guarded: httpx (`guarded_transport`) and aiohttp (`guarded_session`,
for WebSockets).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import httpcore
import httpx
from aiohttp.abc import AbstractResolver, ResolveResult
from yarl import URL

_DEFAULT_PORTS = {"http": 80, "https": 443}


class AddressRefused(OSError):
    """A connection to an address the policy refuses (raised before anything is sent)."""


class AddressPolicy:
    """Refuses private, loopback, link-local and other non-public addresses, unless an allowed
    network contains them. `setting` names the allow-list setting, for the refusal message."""

    def __init__(self, allowed_networks: Iterable[str] = (), setting: str = "the allowed networks") -> None:
        self.allowed = tuple(ipaddress.ip_network(n, strict=False) for n in allowed_networks)
        self.setting = setting

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
                return f"{ip} is a {kind.replace('_', '-')} address (allow it with {self.setting})"
        if not ip.is_global:
            return f"{ip} is not a public address (allow it with {self.setting})"
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
                raise AddressRefused(f"{host}: {reason}")
        return addresses


def origin(url: str) -> tuple[str, int]:
    """(host, port) of a URL as httpcore connects to it: IDNA-encoded lower-case host, default port filled in."""
    parsed = httpx.URL(url)
    return parsed.raw_host.decode("ascii"), parsed.port or _DEFAULT_PORTS.get(parsed.scheme, 0)


class GuardedBackend(httpcore.AsyncNetworkBackend):
    """httpcore's network backend, connecting only to addresses the policy allows, or to a trusted origin."""

    def __init__(self, policy: AddressPolicy, inner: httpcore.AsyncNetworkBackend | None = None,
                 trusted: Iterable[tuple[str, int]] = ()) -> None:
        self.policy = policy
        self.inner = inner or httpcore.AnyIOBackend()
        self.trusted = frozenset(trusted)

    async def connect_tcp(self, host: str, port: int, timeout: float | None = None, local_address: str | None = None,  # noqa: ASYNC109 - httpcore's backend interface
                          socket_options: Iterable[Any] | None = None) -> httpcore.AsyncNetworkStream:
        if (host, port) in self.trusted:
            return await self.inner.connect_tcp(host, port, timeout=timeout, local_address=local_address,
                                                socket_options=socket_options)
        addresses = await self.policy.resolve(host, port)
        error: Exception | None = None
        for address in addresses:  # TLS still verifies and sends SNI for `host` (httpcore's start_tls)
            try:
                return await self.inner.connect_tcp(address, port, timeout=timeout, local_address=local_address,
                                                    socket_options=socket_options)
            except (httpcore.ConnectError, httpcore.ConnectTimeout, OSError) as exc:
                error = exc
        raise error or httpcore.ConnectError(f"no address for {host}")

    async def connect_unix_socket(self, path: str, timeout: float | None = None,  # noqa: ASYNC109 - httpcore's backend interface
                                  socket_options: Iterable[Any] | None = None) -> httpcore.AsyncNetworkStream:
        raise AddressRefused("unix sockets are not allowed targets")

    async def sleep(self, seconds: float) -> None:
        await self.inner.sleep(seconds)


def guarded_transport(policy: AddressPolicy, trusted_urls: Iterable[str] = (), *,
                      trust_env: bool = True) -> httpx.AsyncHTTPTransport:
    """An httpx transport whose connections pass the policy, except to the origins of `trusted_urls`.

    A client using it does not take proxies from the environment (a proxy would hide the target).
    """
    transport = httpx.AsyncHTTPTransport(trust_env=trust_env)
    transport._pool._network_backend = GuardedBackend(policy, trusted=(origin(u) for u in trusted_urls))  # no public hook
    return transport


# --- aiohttp ----------------------------------------------------------------------------------------


def aiohttp_origin(url: str | URL) -> tuple[str, int] | None:
    """(host, port) of a URL as aiohttp's connector asks for it (raw host, default port of the scheme)."""
    parsed = URL(url) if isinstance(url, str) else url
    if parsed.raw_host is None or parsed.port is None:
        return None
    return parsed.raw_host, parsed.port


def _aiohttp_takes_as_ip(host: str) -> bool:
    """Whether aiohttp connects to `host` without resolving it (its own test: a colon, or only digits and dots)."""
    return ":" in host or host.replace(".", "").isdigit()


class GuardedResolver(AbstractResolver):
    """aiohttp's resolver, refusing a host any of whose addresses the policy refuses (the addresses
    returned are the ones connected to, so a name that re-resolves elsewhere is checked again);
    the `trusted` origins resolve as usual."""

    def __init__(self, policy: AddressPolicy, trusted: Iterable[tuple[str, int]] = ()) -> None:
        self.policy = policy
        self.trusted = frozenset(trusted)
        self._inner: AbstractResolver | None = None

    async def resolve(self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET) -> list[ResolveResult]:
        if self._inner is None:
            self._inner = aiohttp.DefaultResolver()
        results = await self._inner.resolve(host, port, family)
        if (host, port) in self.trusted:
            return results
        for result in results:
            reason = self.policy.refusal(result["host"])
            if reason:
                raise AddressRefused(f"{host}: {reason}")
        return results

    async def close(self) -> None:
        if self._inner is not None:
            await self._inner.close()


def redirect_guard(policy: AddressPolicy, trusted: Iterable[tuple[str, int]] = ()) -> aiohttp.TraceConfig:
    """A trace config refusing a redirect to an IP address the policy refuses (aiohttp connects to
    those without its resolver, so `GuardedResolver` never sees them), unless its origin is trusted."""
    trusted = frozenset(trusted)

    async def on_redirect(session: aiohttp.ClientSession, context: object, params: aiohttp.TraceRequestRedirectParams) -> None:
        location = params.response.headers.get("Location") or params.response.headers.get("URI")
        if not location:
            return
        try:
            target = params.url.join(URL(location))
            where = aiohttp_origin(target)
        except ValueError:
            return  # aiohttp refuses a Location that is not a URL itself
        if where is None or where in trusted or not _aiohttp_takes_as_ip(where[0]):
            return  # a name: the resolver checks what it resolves to
        reason = policy.refusal(where[0])
        if reason:
            params.response.close()
            raise AddressRefused(f"redirect to {where[0]}:{where[1]}: {reason}")

    config = aiohttp.TraceConfig()
    config.on_request_redirect.append(on_redirect)
    return config


def guarded_session(policy: AddressPolicy, trusted_urls: Iterable[str] = (), **session_options: Any) -> aiohttp.ClientSession:
    """An aiohttp session whose connections pass the policy, except to the origins of `trusted_urls`
    (which are connected as given). Call it inside the event loop; it takes no proxy from the environment."""
    trusted = [o for o in (aiohttp_origin(u) for u in trusted_urls) if o is not None]
    connector = aiohttp.TCPConnector(resolver=GuardedResolver(policy, trusted))
    return aiohttp.ClientSession(connector=connector, trace_configs=[redirect_guard(policy, trusted)], trust_env=False,
                                 **session_options)


def refused_in(exc: BaseException) -> AddressRefused | None:
    """The AddressRefused behind an error, if that is what it is (aiohttp wraps the resolver's)."""
    seen: BaseException | None = exc
    for _ in range(5):
        if seen is None or isinstance(seen, AddressRefused):
            return seen
        seen = getattr(seen, "os_error", None) or seen.__cause__
    return None
