"""Files out of containers (reports, captures): the engine's archive API, no shared volumes."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

from docker.models.containers import Container


def copy_out(container: Container, folder: str, dest: Path, prefix: str = "") -> list[Path]:
    """Every regular file under `folder` in the container, into `dest` (flattened, names
    prefixed with `prefix`). Returns the files written."""
    stream, _ = container.get_archive(f"{folder}/.")
    dest.mkdir(parents=True, exist_ok=True)
    written = []
    with tarfile.open(fileobj=io.BytesIO(b"".join(stream))) as archive:
        for member in archive.getmembers():
            extracted = archive.extractfile(member) if member.isfile() else None
            if extracted is not None:
                target = dest / f"{prefix}{Path(member.name).name}"
                target.write_bytes(extracted.read())
                written.append(target)
    return written
