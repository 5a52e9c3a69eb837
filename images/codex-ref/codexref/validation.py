"""Upload header rules of upstream's `POST /data`: MIME types Nim knows, Nim's `isValidFilename`."""

from __future__ import annotations

import mimetypes

# Python's built-in table (not /etc/mime.types, so every machine agrees) stands in for Nim's
# std/mimetypes; both come from the same IANA/Apache lists, for the common types they agree.
_MIME_DB = mimetypes.MimeTypes(filenames=())
_INVALID_CHARS = set('/\\:*?"<>|^\0')
_RESERVED = {"CON", "PRN", "AUX", "NUL", *(f"COM{i}" for i in range(10)), *(f"LPT{i}" for i in range(10))}
MAX_FILENAME = 259


def is_known_mimetype(mimetype: str) -> bool:
    value = mimetype.lower()
    return bool(_MIME_DB.guess_all_extensions(value, strict=False)) or value == "application/octet-stream"


def filename_from_content_disposition(header: str) -> str | None:
    """Upstream only parses the quoted form `filename="..."` (an `attachment;` prefix is optional)."""
    if "filename=" not in header:
        return None
    parts = header.split('filename="', 1)
    if len(parts) < 2:
        return None
    return parts[1].strip()[:-1]


def is_valid_filename(filename: str) -> bool:
    stem, dot, _ext = filename.rpartition(".")
    name = stem if dot and stem else filename
    if not name or len(filename) > MAX_FILENAME:
        return False
    if name[0] == " " or filename[-1] in " .":
        return False
    if any(ch in _INVALID_CHARS or ord(ch) < 32 for ch in filename):
        return False
    return name.upper() not in _RESERVED
