"""Where the project keeps its files: repo root, cache, generated compose files, artifacts."""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
IMAGES_DIR = REPO_ROOT / "images"
TOPOLOGIES_DIR = REPO_ROOT / "compose" / "topologies"
TEMPLATES_DIR = REPO_ROOT / "compose" / "templates"


def cache_dir() -> Path:
    """The project's cache (wheelhouse, base rootfs, dockerd log, allocation lock)."""
    path = Path(os.environ.get("TESTBED_CACHE_DIR", REPO_ROOT / ".cache"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def generated_dir(project: str) -> Path:
    return Path(os.environ.get("TESTBED_GENERATED_DIR", REPO_ROOT / "compose" / "generated")) / project


def artifacts_dir(project: str) -> Path:
    return Path(os.environ.get("TESTBED_ARTIFACTS_DIR", REPO_ROOT / "artifacts")) / project
