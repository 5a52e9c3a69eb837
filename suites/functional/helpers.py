"""Small helpers shared by the functional suites."""

from __future__ import annotations

import hashlib
import os


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def random_bytes(size: int) -> bytes:
    return os.urandom(size)
