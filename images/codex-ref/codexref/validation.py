"""Upload header rules of upstream's `POST /data`: MIME types Nim knows, Nim's `isValidFilename`;
Content-Disposition parsed by RFC 6266's grammar (upstream slices it, see below)."""

from __future__ import annotations

import mimetypes
import re
from email.headerregistry import HeaderRegistry

# Python's built-in table (not /etc/mime.types, so every machine agrees) stands in for Nim's
# std/mimetypes; both come from the same IANA/Apache lists, for the common types they agree.
_MIME_DB = mimetypes.MimeTypes(filenames=())
_INVALID_CHARS = set('/\\:*?"<>|^\0')
_RESERVED = {"CON", "PRN", "AUX", "NUL", *(f"COM{i}" for i in range(10)), *(f"LPT{i}" for i in range(10))}
MAX_FILENAME = 259  # bytes, as Nim counts a string's length
MAX_CONTENT_DISPOSITION = 1024  # bytes: room for MAX_FILENAME percent-encoded in `filename*`
_HEADERS = HeaderRegistry()
_LEADING_PARAMETER = re.compile(r"\s*[^\s;=\"]+\s*=")  # `filename="..."` with no disposition type


class ContentDispositionError(ValueError):
    """A Content-Disposition header that does not parse (RFC 6266 / RFC 2231 grammar)."""


def is_known_mimetype(mimetype: str) -> bool:
    value = mimetype.lower()
    return bool(_MIME_DB.guess_all_extensions(value, strict=False)) or value == "application/octet-stream"


def filename_from_content_disposition(header: str) -> str | None:
    """The `filename` parameter (quoted string, token or RFC 2231 `filename*`), parsed by the
    standard library; as upstream, the disposition type may be left out. A header the parser
    finds a defect in (an unterminated quoted string, trailing text, a repeated parameter) is
    ContentDispositionError: upstream cuts the last character off whatever follows
    `filename="` (nim-codex codex/rest/api.nim @ bd360322), so `filename="abc` became `ab`."""
    if not header.strip():
        return None
    # The parser is quadratic in some inputs (16 KiB of quotes: 1.6 s of the event loop); no
    # valid filename needs a longer header than this.
    if len(header.encode()) > MAX_CONTENT_DISPOSITION:
        raise ContentDispositionError("header too long")
    if _LEADING_PARAMETER.match(header):
        header = "attachment; " + header
    try:
        parsed = _HEADERS("content-disposition", header)
    except RecursionError as exc:  # a few hundred nested `(` comments
        raise ContentDispositionError("comments nested too deep") from exc
    if parsed.defects:
        raise ContentDispositionError("; ".join(str(defect) for defect in parsed.defects))
    return parsed.params.get("filename")


def is_valid_filename(filename: str) -> bool:
    stem, dot, _ext = filename.rpartition(".")
    name = stem if dot and stem else filename
    if not name or len(filename.encode()) > MAX_FILENAME:
        return False
    if name[0] == " " or filename[-1] in " .":
        return False
    if any(ch in _INVALID_CHARS or ord(ch) < 32 for ch in filename):
        return False
    return name.upper() not in _RESERVED
