"""Node identity: a persisted secp256k1 key, its libp2p peer id (`16Uiu2HA...`) and `spr:` records.

As upstream's (nim-codex `codex/utils/keyutils.nim`, nim-libp2p `libp2p/routing_record.nim`): the
key file holds the libp2p-protobuf private key {1: KeyType secp256k1 (2), 2: 32-byte secret},
mode 0600; an SPR is `spr:` + unpadded base64url of a libp2p signed envelope around a PeerRecord.
"""

from __future__ import annotations

import base64
import os
import time
from dataclasses import dataclass
from pathlib import Path

import base58
import coincurve

from testbed_toolkit.protobuf import bytes_field, decode_varint, encode_varint, varint_field

SECP256K1 = 2
IDENTITY_MULTIHASH = 0x00
SHA2_256_MULTIHASH = 0x12
MAX_PEER_ID_TEXT = 128  # ours are 53 characters; base58 decoding is quadratic
PEER_RECORD_PAYLOAD_TYPE = b"\x03\x01"
ENVELOPE_DOMAIN = b"libp2p-routing-state"


class KeyFileError(RuntimeError):
    pass


class PeerIdError(ValueError):
    """Carries upstream's 400 text for a peer id that does not parse."""


# nim-libp2p's PeerId.init wording (libp2p/peerid.nim @ aa8ce46f, the version nim-codex bd360322
# pins), which upstream's REST answers verbatim.
INVALID_PEER_ID = "peerid: incorrect PeerId string"


def parse_peer_id(text: str) -> bytes:
    """The bytes of a base58btc peer id: one whole identity or sha2-256 multihash, as
    nim-libp2p validates it. Anything else, non-ASCII text included, is PeerIdError."""
    if len(text) > MAX_PEER_ID_TEXT:
        raise PeerIdError(INVALID_PEER_ID)
    try:
        raw = base58.b58decode(text.encode("ascii"))
        code, pos = decode_varint(raw)
        length, pos = decode_varint(raw, pos)
    except ValueError as exc:  # base58's, a non-ASCII character's and a truncated varint's
        raise PeerIdError(INVALID_PEER_ID) from exc
    known = code == IDENTITY_MULTIHASH or (code == SHA2_256_MULTIHASH and length == 32)
    if not known or len(raw) - pos != length:
        raise PeerIdError(INVALID_PEER_ID)
    return raw


@dataclass(frozen=True)
class Identity:
    private_key: coincurve.PrivateKey

    @property
    def public_key_proto(self) -> bytes:
        return varint_field(1, SECP256K1) + bytes_field(
            2, self.private_key.public_key.format(compressed=True)
        )

    @property
    def peer_id_bytes(self) -> bytes:
        key = self.public_key_proto
        return encode_varint(IDENTITY_MULTIHASH) + encode_varint(len(key)) + key

    @property
    def peer_id(self) -> str:
        return base58.b58encode(self.peer_id_bytes).decode()

    def signed_peer_record(self, multiaddrs: list[bytes], seq: int | None = None) -> str:
        """A `spr:` URI carrying the given binary multiaddrs."""
        record = bytes_field(1, self.peer_id_bytes) + varint_field(
            2, seq if seq is not None else int(time.time())
        )
        for addr in multiaddrs:
            record += bytes_field(3, bytes_field(1, addr))
        unsigned = b"".join(
            encode_varint(len(part)) + part for part in (ENVELOPE_DOMAIN, PEER_RECORD_PAYLOAD_TYPE, record)
        )
        signature = self.private_key.sign(unsigned)  # DER ECDSA over sha256
        envelope = (
            bytes_field(1, self.public_key_proto)
            + bytes_field(2, PEER_RECORD_PAYLOAD_TYPE)
            + bytes_field(3, record)
            + bytes_field(5, signature)
        )
        return "spr:" + base64.urlsafe_b64encode(envelope).rstrip(b"=").decode()


def load_or_create(path: Path) -> Identity:
    """Load the key file (refusing loose permissions, as upstream does) or create it with 0600."""
    if path.exists():
        mode = path.stat().st_mode & 0o777
        if mode & 0o077:
            raise KeyFileError(f"{path} has mode {mode:o}; it must be 0600")
        raw = path.read_bytes()
        secret = raw[-32:]  # {1: 2, 2: <32 bytes>}: the secret is the trailing 32 bytes
        return Identity(coincurve.PrivateKey(secret))
    key = coincurve.PrivateKey()
    blob = varint_field(1, SECP256K1) + bytes_field(2, key.secret)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(blob)
    return Identity(key)
