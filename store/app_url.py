"""What an app's callback URL may be: the one target a scheduler sends that app's payloads to.

A URL names a target and nothing else:
- scheme `http`, `https` or `grpc`, written in lower case;
- a host (a name or an IP address) and an optional port;
- no userinfo: credentials would go out with every trigger, and `user@host` hides the host
  from whoever reads the URL;
- no query and no fragment, not even an empty one: delivery appends `/job/{name}` to the path,
  and a `?` would turn that suffix into a query, letting a URL reach exactly a route it names
  (`http://node/admin/quiesce?` posts to `/admin/quiesce`);
- `grpc` is gRPC over TCP: `grpc://HOST:PORT`, no path (gRPC's own `unix:` targets would reach
  the node's local sockets);
- printable ASCII without spaces or backslashes, so that every parser on the way reads the same
  host.

The rules are checked at the edge (a 400 naming the problem) and again when the machine applies
a registration, and delivery parses a stored URL before it sends anything.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from store.errors import ValidationError

APP_URL_SCHEMES = ("http", "https", "grpc")
GRPC_SCHEME = "grpc"
IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
# A host name: letters, digits, dots, hyphens and underscores (as DNS names in practice are).
HOST_NAME = re.compile(r"[a-z0-9_][a-z0-9_.-]*")


@dataclass(frozen=True, slots=True)
class AppUrl:
    """A checked app URL, in parts. `host` is lower case, an IPv6 address without brackets."""

    scheme: str
    host: str
    port: int | None
    path: str

    @property
    def netloc(self) -> str:
        """`host[:port]`, an IPv6 address in brackets: the URL's authority."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port is None else f"{host}:{self.port}"

    @property
    def ip(self) -> IpAddress | None:
        """The host as an IP address, or None when it is a name."""
        return ip_of(self.host)


# Delivery parses the URL of every trigger it sends, and a node sends to a few apps: the parts
# of the recent URLs are kept (parsing is pure, and a refusal is raised again each time).
@functools.lru_cache(maxsize=1024)
def parse_app_url(url: str) -> AppUrl:
    """`url` in parts, or a ValidationError naming the first rule it breaks."""
    if not all("!" <= char <= "~" and char != "\\" for char in url):
        raise ValidationError("app url must be printable ASCII without spaces or backslashes")
    scheme, separator, _ = url.partition("://")
    if not separator or scheme not in APP_URL_SCHEMES:
        schemes = ", ".join(f"{s}://" for s in APP_URL_SCHEMES)
        raise ValidationError(f"app url must start with one of {schemes}")
    if "?" in url:
        raise ValidationError("app url must not have a query ('?')")
    if "#" in url:
        raise ValidationError("app url must not have a fragment ('#')")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as error:
        raise ValidationError(f"app url is malformed: {error}") from None
    if "@" in parts.netloc:
        raise ValidationError("app url must not have userinfo ('user@')")
    host = parts.hostname or ""
    if not host:
        raise ValidationError("app url must name a host")
    if not HOST_NAME.fullmatch(host) and ip_of(host) is None:
        raise ValidationError(f"app url host {host!r} is neither a host name nor an IP address")
    if port == 0:
        raise ValidationError("app url port must be between 1 and 65535")
    if scheme == GRPC_SCHEME and (port is None or parts.path not in ("", "/")):
        raise ValidationError("app url of gRPC must be grpc://HOST:PORT, without a path")
    return AppUrl(scheme, host, port, parts.path)


def check_app_url(url: str) -> None:
    """Refuse an app URL that breaks a rule of this module, naming the rule."""
    parse_app_url(url)


# Delivery asks this of its app's host for every trigger it sends (the allow list checks the
# address): parsing it each time was ~5 % of a node's CPU in a burst of due triggers. Pure, and
# the addresses are immutable.
@functools.lru_cache(maxsize=1024)
def ip_of(host: str) -> IpAddress | None:
    """`host` as an IP address (an IPv4-mapped IPv6 address as the IPv4 one), or None when it
    is not one."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address
