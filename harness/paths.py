"""Where the project keeps its files: repo root, cache, generated compose files, artifacts."""

from __future__ import annotations

import os
from pathlib import Path

from harness.labels import check_project

REPO_ROOT = Path(__file__).resolve().parent.parent
IMAGES_DIR = REPO_ROOT / "images"
TOPOLOGIES_DIR = REPO_ROOT / "compose" / "topologies"
SCENARIOS_DIR = REPO_ROOT / "compose" / "scenarios"  # repro scenarios (harness/experiments/repro)
TEMPLATES_DIR = REPO_ROOT / "compose" / "templates"


def cache_dir() -> Path:
    """The project's cache (wheelhouse, base rootfs, dockerd log, allocation lock)."""
    path = Path(os.environ.get("TESTBED_CACHE_DIR", REPO_ROOT / ".cache"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def generated_dir(project: str) -> Path:
    """A project's rendered files; the name is checked, so the folder is always inside the root."""
    root = Path(os.environ.get("TESTBED_GENERATED_DIR", REPO_ROOT / "compose" / "generated"))
    return root / check_project(project)


def artifacts_root() -> Path:
    return Path(os.environ.get("TESTBED_ARTIFACTS_DIR", REPO_ROOT / "artifacts"))


def artifacts_dir(project: str) -> Path:
    return artifacts_root() / check_project(project)
