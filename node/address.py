"""The form of an address a node is given: `HOST:PORT`."""

from __future__ import annotations

from store.errors import ValidationError


def parse_address(text: str) -> tuple[str, int]:
    """`HOST:PORT` with a loopback or named host; the port must be a real TCP port."""
    host, sep, port_text = text.rpartition(":")
    if not sep or not host or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValidationError(f"address {text!r} is not HOST:PORT")
    return host, int(port_text)
