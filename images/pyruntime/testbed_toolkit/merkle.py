"""Codex's keyed SHA-256 Merkle tree over block digests, with proofs (nim-codex
`codex/merkletree/codex/codex.nim`, bd360322).

Each pair (2i, 2i+1) hashes as H(left || right || key); an odd last node is paired with 32 zero
bytes. Keys: 0x01 pair on the bottom layer, 0x00 pair above, 0x03 odd node on the bottom layer,
0x02 odd node above. The bottom layer is always reduced once, so one leaf still hashes.
"""

from __future__ import annotations

import hashlib
from typing import NamedTuple

from testbed_toolkit.protobuf import DecodeError, bytes_field, iter_fields, varint_field

ZERO = bytes(32)
KEY_PAIR_BOTTOM, KEY_PAIR, KEY_ODD_BOTTOM, KEY_ODD = b"\x01", b"\x00", b"\x03", b"\x02"
SHA2_256 = 0x12


def _compress(left: bytes, right: bytes, key: bytes) -> bytes:
    return hashlib.sha256(left + right + key).digest()


def _reduce(layer: list[bytes], bottom: bool) -> list[bytes]:
    pair_key, odd_key = (KEY_PAIR_BOTTOM, KEY_ODD_BOTTOM) if bottom else (KEY_PAIR, KEY_ODD)
    out = []
    for i in range(0, len(layer), 2):
        if i + 1 < len(layer):
            out.append(_compress(layer[i], layer[i + 1], pair_key))
        else:
            out.append(_compress(layer[i], ZERO, odd_key))
    return out


def layers(leaves: list[bytes]) -> list[list[bytes]]:
    """All layers from the leaves up to the one-node root layer."""
    if not leaves:
        raise ValueError("Empty leaves")
    result = [list(leaves)]
    result.append(_reduce(result[-1], bottom=True))
    while len(result[-1]) > 1:
        result.append(_reduce(result[-1], bottom=False))
    return result


def root(leaves: list[bytes]) -> bytes:
    return layers(leaves)[-1][0]


class Proof(NamedTuple):
    index: int
    nleaves: int
    path: tuple[bytes, ...]

    def encode(self) -> bytes:
        """CodexProof wire form: 1 mcodec, 2 index, 3 nleaves, 4 repeated {1: node}."""
        head = varint_field(1, SHA2_256) + varint_field(2, self.index) + varint_field(3, self.nleaves)
        return head + b"".join(bytes_field(4, bytes_field(1, node)) for node in self.path)

    @classmethod
    def decode(cls, data: bytes) -> Proof:
        index = nleaves = 0
        path: list[bytes] = []
        for number, _, value in iter_fields(data):
            if number == 2:
                index = int(value)  # type: ignore[arg-type]
            elif number == 3:
                nleaves = int(value)  # type: ignore[arg-type]
            elif number == 4:
                path.append(_path_node(value))  # type: ignore[arg-type]
        return cls(index, nleaves, tuple(path))


def _path_node(entry: bytes | memoryview) -> bytes:
    """The node of one path entry (field 4: {1: node})."""
    nodes = [bytes(v) for n, _, v in iter_fields(entry) if n == 1]  # type: ignore[arg-type]
    if len(nodes) != 1:
        raise DecodeError("proof path entry without exactly one node")
    return nodes[0]


def prove(tree_layers: list[list[bytes]], index: int) -> Proof:
    path = []
    i = index
    for layer in tree_layers[:-1]:
        sibling = i ^ 1
        path.append(layer[sibling] if sibling < len(layer) else ZERO)
        i //= 2
    return Proof(index, len(tree_layers[0]), tuple(path))


def _parent(node: bytes, index: int, width: int, sibling: bytes, bottom: bool) -> bytes:
    """The node above `node` (at `index` of a layer `width` wide), given its proof sibling."""
    pair_key, odd_key = (KEY_PAIR_BOTTOM, KEY_ODD_BOTTOM) if bottom else (KEY_PAIR, KEY_ODD)
    if index ^ 1 >= width:
        return _compress(node, ZERO, odd_key)
    return _compress(node, sibling, pair_key) if index % 2 == 0 else _compress(sibling, node, pair_key)


def verify(proof: Proof, leaf: bytes, expected_root: bytes) -> bool:
    if not 0 <= proof.index < proof.nleaves:
        return False
    node, i, width = leaf, proof.index, proof.nleaves
    for level, sibling in enumerate(proof.path):
        node = _parent(node, i, width, sibling, bottom=level == 0)
        i, width = i // 2, (width + 1) // 2
    return node == expected_root


def height(nleaves: int) -> int:
    """Layers above the leaves: the bottom layer is always reduced once."""
    return max(1, (nleaves - 1).bit_length())


class CheckedNodes:
    """The nodes of one tree that checked proofs have shown to lead to its root.

    Proofs of neighbouring leaves share most of their path, so a proof is followed only up to
    the first node already known (a leaf shown by an earlier proof needs no hashing at all), and
    every node a proof computed or used is known from then on. A proof for any leaf shown so far
    is built from these nodes, so a tree still downloading is served with proofs made of checked
    nodes, never with bytes a peer sent."""

    def __init__(self, root: bytes, nleaves: int) -> None:
        self.nleaves = nleaves
        self.height = height(nleaves)
        self.nodes: dict[tuple[int, int], bytes] = {(self.height, 0): root}  # (level, index)

    def leaf(self, index: int) -> bytes | None:
        return self.nodes.get((0, index))

    def check(self, proof: Proof, leaf: bytes) -> bool:
        """Whether `leaf` is at `proof.index` of this tree; what the proof showed is kept if so."""
        if (
            proof.nleaves != self.nleaves
            or len(proof.path) != self.height
            or not 0 <= proof.index < self.nleaves
        ):
            return False
        shown: dict[tuple[int, int], bytes] = {}
        node, i, width = leaf, proof.index, self.nleaves
        for level in range(self.height + 1):  # the root is known: the loop ends there at the latest
            known = self.nodes.get((level, i))
            if known is not None:
                if known != node:
                    return False
                self.nodes.update(shown)
                return True
            sibling = proof.path[level]
            shown[(level, i)] = node
            if i ^ 1 < width:
                shown[(level, i ^ 1)] = sibling
            node = _parent(node, i, width, sibling, bottom=level == 0)
            i, width = i // 2, (width + 1) // 2
        raise AssertionError("unreachable: the root is a known node")

    def prove(self, index: int) -> Proof | None:
        """A proof for a leaf shown here (its path's siblings were all shown with it), else None."""
        if (0, index) not in self.nodes:
            return None
        path, i, width = [], index, self.nleaves
        for level in range(self.height):
            path.append(self.nodes[(level, i ^ 1)] if i ^ 1 < width else ZERO)
            i, width = i // 2, (width + 1) // 2
        return Proof(index, self.nleaves, tuple(path))
