"""The image graph: the Python images build FROM the shared runtime (images/pyruntime), and only
the status peer FROM another (the reference node, which it embeds as status-go embeds
libstorage), so a change to one image's folder changes only that image's tag and its embedder's;
the code follows the same graph (no image imports another's package but the status peer the
node's, the toolkit imports none of them)."""

from __future__ import annotations

import ast
import shutil
from pathlib import Path

import pytest

from harness import imagerefs
from harness.engine import images
from harness.paths import IMAGES_DIR, REPO_ROOT

PYTHON_IMAGES = {"codex-ref", "relay", "status-ref", "loadgen"}
EMBEDDED = {"status-ref": "codex-ref"}  # an image built FROM the one whose package it runs in-process


@pytest.fixture
def image_copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of images/ that the tag functions read instead of the repository's."""
    copy = tmp_path / "images"
    shutil.copytree(IMAGES_DIR, copy, ignore=shutil.ignore_patterns(*imagerefs.BUILD_LEFTOVERS))
    monkeypatch.setattr(images, "IMAGES_DIR", copy)
    monkeypatch.setattr(imagerefs, "IMAGES_DIR", copy)  # the base image's tag
    monkeypatch.delenv("BASE_IMAGE", raising=False)
    return copy


def _changed_tags(copy: Path, relative: str) -> set[str]:
    before = images.image_refs(set(images.SERVICE_IMAGES))
    path = copy / relative
    assert path.is_file(), relative
    path.write_text(path.read_text() + "\n# touched\n")
    after = images.image_refs(set(images.SERVICE_IMAGES))
    return {name for name in before if before[name] != after[name]}


def test_the_python_images_build_from_the_runtime_and_only_an_embedder_from_another() -> None:
    parents = {name: image.parent for name, image in images.SERVICE_IMAGES.items()}
    assert {name for name, parent in parents.items() if parent == "pyruntime"} == PYTHON_IMAGES - set(
        EMBEDDED
    )
    assert {name: parents[name] for name in EMBEDDED} == EMBEDDED
    assert parents["pyruntime"] is None
    assert {name for name, parent in parents.items() if parent in PYTHON_IMAGES} == set(EMBEDDED)


@pytest.mark.parametrize(
    ("relative", "image"),
    [
        ("codex-ref/codexref/node.py", "codex-ref"),
        ("codex-ref/Dockerfile", "codex-ref"),
        ("relay/relay.py", "relay"),
        ("status-ref/statusref/api.py", "status-ref"),
        ("status-ref/requirements.txt", "status-ref"),
        ("loadgen/requirements.txt", "loadgen"),
    ],
)
def test_a_change_to_one_image_changes_only_its_tag_and_its_embedders(
    image_copy: Path, relative: str, image: str
) -> None:
    embedders = {name for name, embedded in EMBEDDED.items() if embedded == image}
    assert _changed_tags(image_copy, relative) == {image, *embedders}


def test_a_change_to_the_runtime_changes_the_four_python_images_and_only_them(image_copy: Path) -> None:
    for relative in ("pyruntime/testbed_toolkit/p2p.py", "pyruntime/requirements.txt"):
        assert _changed_tags(image_copy, relative) == {"pyruntime", *PYTHON_IMAGES}, relative


def test_a_change_to_the_base_changes_every_tag(image_copy: Path) -> None:
    assert _changed_tags(image_copy, "base/packages.txt") == set(images.SERVICE_IMAGES)


def _imported_roots(folder: Path) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for path in sorted(folder.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                roots = {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                roots = {node.module.split(".")[0]}
            else:
                continue
            found.setdefault(str(path.relative_to(REPO_ROOT)), set()).update(roots)
    return found


@pytest.mark.parametrize(
    ("folder", "forbidden"),
    [
        ("images/pyruntime", {"codexref", "statusref"}),
        ("images/codex-ref", {"statusref"}),
        ("images/relay", {"codexref", "statusref"}),
        ("suites/load", {"codexref", "statusref"}),
    ],
)
def test_the_code_follows_the_image_graph(folder: str, forbidden: set[str]) -> None:
    imported = _imported_roots(REPO_ROOT / folder)
    wrong = {path: roots & forbidden for path, roots in imported.items() if roots & forbidden}
    assert not wrong, f"imports across images (share it through testbed_toolkit instead): {wrong}"
