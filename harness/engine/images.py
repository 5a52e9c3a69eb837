"""Offline image builds: debootstrap base -> docker import; host wheelhouse; content-hashed tags.

No registry is reachable, so nothing is pulled. The base image is a debootstrapped Debian
bookworm imported into the engine; every service image builds FROM it and installs its Python
dependencies from wheels built on the host (`pip install --no-index`). A tag carries the content
hash of the image folder (and of its base), so any change rebuilds and nothing stale is reused;
the names (namespace, hash, the base image's ref) are harness/imagerefs.py's.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import docker
from docker.errors import BuildError, ImageNotFound

from harness.errors import ImageBuildError
from harness.imagerefs import BUILD_LEFTOVERS, DEBIAN_SUITE, base_image_ref, folder_hash, namespace
from harness.paths import IMAGES_DIR, REPO_ROOT, cache_dir

LABEL = {"testbed.image": "true"}


def rebuild_requested() -> bool:
    """`make images` in CI rebuilds everything from scratch so a cache cannot hide a broken recipe."""
    return os.environ.get("TESTBED_REBUILD", "") == "1" or os.environ.get("CI", "") == "true"


@contextmanager
def _build_lock():
    """Parallel test workers (xdist) must not build the same image twice at once."""
    with (cache_dir() / "images.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _base_packages() -> list[str]:
    lines = (IMAGES_DIR / "base" / "packages.txt").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def debian_mirror() -> str:
    """The Debian mirror the host's apt already uses (so a local mirror or proxy is honoured);
    TESTBED_DEBIAN_MIRROR overrides it."""
    if env := os.environ.get("TESTBED_DEBIAN_MIRROR"):
        return env
    deb822 = Path("/etc/apt/sources.list.d/debian.sources")
    if deb822.exists():
        for line in deb822.read_text().splitlines():
            if line.startswith("URIs:") and "security" not in line:
                return line.split()[1]
    legacy = Path("/etc/apt/sources.list")
    if legacy.exists():
        for line in legacy.read_text().splitlines():
            parts = line.split()
            if len(parts) >= 3 and parts[0] == "deb" and "security" not in parts[1]:
                return parts[2] if parts[1].startswith("[") else parts[1]
    raise ImageBuildError("no Debian mirror in the host's apt sources: set TESTBED_DEBIAN_MIRROR")


def _image_exists(client: docker.DockerClient, ref: str) -> bool:
    try:
        client.images.get(ref)
        return True
    except ImageNotFound:
        return False


def build_base_image(client: docker.DockerClient, rebuild: bool, log=print) -> str:
    """debootstrap bookworm minbase into a temp dir, tar it, docker import it. Returns the ref."""
    ref = base_image_ref()
    if os.environ.get("BASE_IMAGE"):
        if not _image_exists(client, ref):
            raise ImageBuildError(f"BASE_IMAGE={ref} is not in the local engine; pull or load it first")
        return ref
    if _image_exists(client, ref) and not rebuild:
        return ref
    if shutil.which("debootstrap") is None:
        raise ImageBuildError("debootstrap is not installed (apt-get install debootstrap), or set BASE_IMAGE")
    log(f"base: debootstrap {DEBIAN_SUITE} minbase from {debian_mirror()} ...")
    with tempfile.TemporaryDirectory(dir=cache_dir()) as tmp:
        rootfs = Path(tmp) / "rootfs"
        cmd = [
            "debootstrap",
            "--variant=minbase",
            f"--include={','.join(_base_packages())}",
            DEBIAN_SUITE,
            str(rootfs),
            debian_mirror(),
        ]
        result = subprocess.run(cmd, capture_output=True, text=True)
        if result.returncode != 0:
            raise ImageBuildError(f"debootstrap failed ({result.returncode}):\n{result.stdout[-3000:]}")
        for junk in ("var/cache/apt/archives", "var/lib/apt/lists", "usr/share/doc", "usr/share/man"):
            shutil.rmtree(rootfs / junk, ignore_errors=True)
        tarball = Path(tmp) / "rootfs.tar"
        subprocess.run(["tar", "-C", str(rootfs), "-cf", str(tarball), "."], check=True)
        repo, tag = ref.rsplit(":", 1)
        client.api.import_image_from_file(
            str(tarball),
            repository=repo,
            tag=tag,
            changes=['CMD ["/bin/bash"]', "ENV LANG=C.UTF-8", "LABEL testbed.image=true"],
        )
    log(f"base: imported {ref}")
    return ref


def build_wheelhouse(image_dir: Path, dest: Path) -> None:
    """Build (or fetch) wheels for the image's requirements on the host, where PyPI answers."""
    requirements = image_dir / "requirements.txt"
    dest.mkdir(parents=True, exist_ok=True)
    if not requirements.exists():
        return
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "wheel",
        "-q",
        "--disable-pip-version-check",
        "-r",
        str(requirements),
        "-w",
        str(dest),
    ]
    # In the image's folder: requirements may name local packages by relative path.
    result = subprocess.run(cmd, capture_output=True, text=True, cwd=image_dir)
    if result.returncode != 0:
        raise ImageBuildError(f"wheelhouse for {image_dir.name} failed:\n{result.stderr[-3000:]}")


@dataclass(frozen=True)
class ServiceImage:
    """An image folder under images/. `parent` names the service image it builds FROM (the base
    otherwise; a parent is built before its children); `extra` lists repository files copied into
    its build context (path in the repo -> path in the context), so one copy of a file serves both
    the host and the image."""

    name: str
    parent: str | None = None
    extra: tuple[tuple[str, str], ...] = ()

    @property
    def folder(self) -> Path:
        return IMAGES_DIR / self.name

    def ref(self, from_ref: str) -> str:
        extras = "".join(f"{dest}:{(REPO_ROOT / src).read_text()}" for src, dest in self.extra)
        return f"{namespace()}/{self.name}:{folder_hash(self.folder, extra=from_ref + extras)}"


def build_service_image(
    client: docker.DockerClient, image: ServiceImage, from_ref: str, rebuild: bool, log=print
) -> str:
    ref = image.ref(from_ref)
    if _image_exists(client, ref) and not rebuild:
        return ref
    log(f"image: building {ref} ...")
    with tempfile.TemporaryDirectory(dir=cache_dir()) as tmp:
        context = Path(tmp) / "context"
        shutil.copytree(image.folder, context, ignore=shutil.ignore_patterns(*BUILD_LEFTOVERS))
        for src, dest in image.extra:
            (context / dest).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(REPO_ROOT / src, context / dest)
        build_wheelhouse(image.folder, context / "wheelhouse")
        try:
            client.images.build(
                path=str(context),
                tag=ref,
                buildargs={"BASE_IMAGE": from_ref},
                rm=True,
                forcerm=True,
                nocache=rebuild,
                labels=LABEL,
                network_mode="none",
            )
        except BuildError as exc:
            lines = [chunk.get("stream", chunk.get("error", "")) for chunk in exc.build_log]
            raise ImageBuildError(f"{image.name}: {exc.msg}\n{''.join(lines)[-3000:]}") from exc
    log(f"image: built {ref}")
    return ref


SERVICE_IMAGES = {
    image.name: image
    for image in (
        # The Python runtime the four Python images share: the venv (py-libp2p, trio, hypercorn,
        # starlette, ...) and testbed_toolkit (identity, libp2p host, protobuf codec, CIDs/Merkle,
        # BlockExchange wire format, NAT helpers, serving). Only the status peer builds FROM another
        # (the node it embeds), so a change to one's folder changes only the tags of that image and
        # what embeds it; a change here changes all four.
        ServiceImage("pyruntime"),
        ServiceImage("codex-ref", parent="pyruntime"),
        ServiceImage("router"),
        ServiceImage("stun"),
        # Link conditions on kernels without netem (harness.net.plumbing.start_link_stage).
        ServiceImage("linkstage"),
        # The reference status-go peer: the reference node (status-go embeds its storage node)
        # plus httpx and statusref; a change to the node changes the peer's tag too.
        ServiceImage("status-ref", parent="codex-ref"),
        # The circuit relay v2 (hop) on the runtime's py-libp2p and testbed_toolkit.
        ServiceImage("relay", parent="pyruntime"),
        # Locust master/workers for distributed load: the runtime (trio, py-libp2p and
        # testbed_toolkit for the BlockExchange agent) plus Locust, and the load suite's two files.
        ServiceImage(
            "loadgen",
            parent="pyruntime",
            extra=(
                ("suites/load/locustfile.py", "load/locustfile.py"),
                ("suites/load/bxagent.py", "load/bxagent.py"),
            ),
        ),
    )
}


def _resolve(names: set[str], base_ref: str, make) -> dict[str, str]:
    """name -> ref; `make(image, from_ref)` builds (or names) one image once its parent has a ref."""
    refs: dict[str, str] = {}

    def ref_of(name: str) -> str:
        if name not in refs:
            image = SERVICE_IMAGES[name]
            refs[name] = make(image, ref_of(image.parent) if image.parent else base_ref)
        return refs[name]

    return {name: ref_of(name) for name in sorted(names)}


def ensure_images(names: set[str] | None = None, rebuild: bool = False, log=print) -> dict[str, str]:
    """Build the images that are missing (all of them, from scratch, with rebuild); name -> ref."""
    client = docker.from_env()
    wanted = names if names is not None else set(SERVICE_IMAGES)
    with _build_lock():
        base_ref = build_base_image(client, rebuild, log)
        return _resolve(
            wanted,
            base_ref,
            lambda image, from_ref: build_service_image(client, image, from_ref, rebuild, log),
        )


def image_refs(names: set[str]) -> dict[str, str]:
    """The refs images would have, without building (for rendering)."""
    return _resolve(names, base_image_ref(), lambda image, from_ref: image.ref(from_ref))


def _tags_in_namespace(image) -> list[str]:
    return [tag for tag in image.tags if tag.startswith(f"{namespace()}/")]


def present_images(client: docker.DockerClient) -> set[str]:
    """Every tag of the testbed's own images (by label) in this namespace."""
    labelled = client.images.list(filters={"label": "testbed.image=true"})
    return {tag for image in labelled for tag in _tags_in_namespace(image)}


def remove_images(log=print) -> list[str]:
    """Untag (and so delete) this namespace's images; other images, and images still used by a
    container, are left alone (the latter are reported). Returns the tags removed."""
    client = docker.from_env()
    removed = []
    for tag in sorted(present_images(client)):
        try:
            client.images.remove(tag)
            removed.append(tag)
        except docker.errors.APIError as exc:
            log(f"image: kept {tag}: {exc.explanation}")
    return removed
