"""What the testbed calls its images: the namespace, the content hash a tag carries, the base
image's ref.

Naming only, no engine call: what runs on the base image (the network helper,
harness/net/plumbing.py) names it here, and harness/engine/images.py builds under these names.
"""

from __future__ import annotations

import hashlib
import os
import re
from fnmatch import fnmatch
from pathlib import Path

from harness.errors import ImageBuildError
from harness.paths import IMAGES_DIR

DEFAULT_NAMESPACE = "testbed"
DEBIAN_SUITE = "bookworm"
# A namespace is the first part of every image name the testbed builds (`<namespace>/base`,
# `<namespace>/codex-ref`): lower-case, as docker requires of repository names.
NAMESPACE_RE = re.compile(r"[a-z0-9]+(?:[._-][a-z0-9]+)*")


def namespace() -> str:
    """TESTBED_IMAGE_NAMESPACE, or `testbed`. CI builds under a namespace of its own run, so no
    image an earlier run left in the engine can stand in for a missing build step."""
    value = os.environ.get("TESTBED_IMAGE_NAMESPACE") or DEFAULT_NAMESPACE
    if not NAMESPACE_RE.fullmatch(value) or len(value) > 64:
        raise ImageBuildError(
            f"TESTBED_IMAGE_NAMESPACE={value[:80]!r} is not a docker repository name "
            "(lower-case letters, digits, and . _ - between them; at most 64 characters)"
        )
    return value


# What building leaves in an image folder (bytecode; setuptools' output for a local package the
# wheelhouse builds): not an input of the image, so neither hashed nor sent to the build.
BUILD_LEFTOVERS = ("__pycache__", "build", "*.egg-info")


def _is_leftover(path: Path, folder: Path) -> bool:
    parts = path.relative_to(folder).parts
    return any(fnmatch(part, pattern) for part in parts for pattern in BUILD_LEFTOVERS)


def folder_hash(folder: Path, extra: str = "") -> str:
    digest = hashlib.sha256(extra.encode())
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and not _is_leftover(p, folder)):
        digest.update(str(path.relative_to(folder)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def base_image_ref() -> str:
    return (
        os.environ.get("BASE_IMAGE")
        or f"{namespace()}/base:{DEBIAN_SUITE}-{folder_hash(IMAGES_DIR / 'base')}"
    )
