"""The few multiaddrs a Codex node announces: /ip4/<a>/tcp/<p> and /ip4/<a>/udp/<p>, text and binary."""

from __future__ import annotations

import ipaddress

from testbed_toolkit.protobuf import encode_varint

PROTOCOLS = {"ip4": 0x04, "tcp": 0x06, "udp": 0x0111}


def to_bytes(text: str) -> bytes:
    parts = text.strip("/").split("/")
    if len(parts) != 4 or parts[0] != "ip4" or parts[2] not in ("tcp", "udp"):
        raise ValueError(f"unsupported multiaddr {text!r} (expected /ip4/<addr>/tcp|udp/<port>)")
    address = ipaddress.IPv4Address(parts[1]).packed
    port = int(parts[3])
    return (
        encode_varint(PROTOCOLS["ip4"])
        + address
        + encode_varint(PROTOCOLS[parts[2]])
        + port.to_bytes(2, "big")
    )


def with_ip(text: str, ip: str) -> str:
    parts = text.strip("/").split("/")
    parts[1] = ip
    return "/" + "/".join(parts)
