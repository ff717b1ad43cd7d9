"""Which addresses a TCP port listens on, as the kernel reports it (/proc/net/tcp and tcp6).

Reading the kernel's table, rather than trying to connect, sees a listener on 0.0.0.0 for what
it is: reachable from every interface, which a connect to 127.0.0.1 cannot tell apart.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path

_LISTEN = "0A"  # the TCP_LISTEN state in /proc/net/tcp


def listening_hosts(port: int) -> set[str]:
    """The local addresses with a listening socket on `port` ('0.0.0.0' or '::' for all)."""
    hosts: set[str] = set()
    for table in (Path("/proc/net/tcp"), Path("/proc/net/tcp6")):
        if not table.exists():
            continue
        for line in table.read_text().splitlines()[1:]:
            fields = line.split()
            local, state = fields[1], fields[3]
            address, _, port_hex = local.partition(":")
            if state == _LISTEN and int(port_hex, 16) == port:
                hosts.add(_address(address))
    return hosts


def _address(hexadecimal: str) -> str:
    # The kernel prints each 32-bit word of the address in host (little-endian) byte order.
    raw = bytes.fromhex(hexadecimal)
    words = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
    return str(ipaddress.ip_address(words))
