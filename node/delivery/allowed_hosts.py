"""Where deliveries may go: `--app-host-allow HOST|CIDR`, repeatable; without it, anywhere.

An entry is a host name, an IP address or a network (CIDR). A name allows itself, whatever it
resolves to: the operator trusts that name's DNS. An address or a network allows the addresses
it covers. A URL whose host is an address must lie in a network; a URL whose host is a name that
is not allowed itself must resolve to addresses in the networks.

The check is made on the addresses, at registration (every address the name resolves to must be
allowed, else 400) and again at every delivery, where only the resolved addresses that are
allowed are dialled. A name that resolved to an allowed address when it was registered and
resolves to another one later (DNS rebinding) therefore reaches nothing it should not: what is
checked is what is dialled.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Sequence

from store.app_url import HOST_NAME, AppUrl, IpAddress, ip_of
from store.errors import ValidationError

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def _name(host: str) -> str:
    """A host name as compared: lower case, without the root's trailing dot."""
    return host.lower().rstrip(".")


class AllowedHosts:
    """The allow list of one node; empty, every host is allowed."""

    def __init__(self, entries: Sequence[str] = ()) -> None:
        self._names: set[str] = set()
        self._networks: list[Network] = []
        for entry in entries:
            try:
                self._networks.append(ipaddress.ip_network(entry, strict=False))
                continue
            except ValueError:
                pass
            if not HOST_NAME.fullmatch(_name(entry)):
                raise ValidationError(
                    f"app_host_allow: {entry!r} is neither a host name, an address nor a CIDR"
                )
            self._names.add(_name(entry))

    @property
    def restricted(self) -> bool:
        return bool(self._names or self._networks)

    def allows_name(self, host: str) -> bool:
        """Whether `host` is allowed by name alone (always, without an allow list)."""
        return not self.restricted or _name(host) in self._names

    def allows_address(self, address: str | IpAddress) -> bool:
        ip = ip_of(address) if isinstance(address, str) else address
        if not self.restricted:
            return True
        return ip is not None and any(ip in network for network in self._networks)

    async def check(self, url: AppUrl) -> None:
        """At registration: refuse (400) a URL whose target is not allowed, naming the host."""
        if self.allows_name(url.host):
            return
        ip = url.ip
        if ip is not None:
            if not self.allows_address(ip):
                raise ValidationError(f"app url host {url.host} is not in --app-host-allow")
            return
        try:
            addresses = await _resolve(url.host, url.port or 0)
        except OSError as error:
            raise ValidationError(f"app url host {url.host!r} does not resolve: {error}") from None
        refused = sorted({str(a) for a in addresses if not self.allows_address(a)})
        if refused:
            raise ValidationError(
                f"app url host {url.host!r} resolves to {', '.join(refused)}, "
                "not in --app-host-allow"
            )

    async def addresses(self, host: str, port: int) -> list[IpAddress]:
        """At delivery, for a host not allowed by name: the allowed addresses it resolves to
        now (itself for an address); OSError when there is none, so that nothing is dialled."""
        ip = ip_of(host)
        found = [ip] if ip is not None else await _resolve(host, port)
        allowed = [address for address in found if self.allows_address(address)]
        if not allowed:
            raise OSError(f"{host} resolves to no address allowed by --app-host-allow")
        return allowed


async def _resolve(host: str, port: int) -> list[IpAddress]:
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    found = [ip_of(str(info[4][0])) for info in infos]
    return [ip for ip in found if ip is not None]
