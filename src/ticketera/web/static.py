"""The pages' style sheet, scripts and images, served by the app under a versioned address.

Every file under `static/` is read once at start-up. Their addresses carry a version, the hash of
the whole folder (`/static/3f9a0c1b2e4d/site.css`), so a browser or nginx may keep them a year
(`immutable`): a deploy that changes any file changes every address. One version for the folder,
not one per file, so that an ES module's relative import (`./format.js`) lands on the same
version as the module that imports it, with no build step to rewrite imports.

A request for another version (a page an older replica rendered, during a rolling deploy) gets
today's file, but only briefly cacheable: better than a missing script, never stored as the old one.
"""

from __future__ import annotations

import hashlib
import mimetypes
from dataclasses import dataclass
from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import Response

STATIC_DIR = Path(__file__).resolve().parent / "static"
IMMUTABLE = "public, max-age=31536000, immutable"
BRIEFLY = "public, max-age=60"
MEDIA_TYPES = {
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".svg": "image/svg+xml",
    ".ico": "image/x-icon",
    ".png": "image/png",
}

router = APIRouter(include_in_schema=False)


@dataclass(frozen=True)
class StaticFile:
    content: bytes
    media_type: str


def _load(folder: Path) -> tuple[dict[str, StaticFile], str]:
    files: dict[str, StaticFile] = {}
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        name = path.relative_to(folder).as_posix()
        content = path.read_bytes()
        media_type = (
            MEDIA_TYPES.get(path.suffix) or mimetypes.guess_type(name)[0] or "application/octet-stream"
        )
        files[name] = StaticFile(content, media_type)
        digest.update(name.encode() + b"\0" + content + b"\0")
    return files, digest.hexdigest()[:12]


FILES, VERSION = _load(STATIC_DIR)


def static_url(name: str) -> str:
    """The address of `static/<name>` for a page; a misspelt name fails the render, not the browser."""
    if name not in FILES:
        raise KeyError(f"no static file {name!r} under {STATIC_DIR}")
    return f"/static/{VERSION}/{name}"


@router.get("/static/{version}/{name:path}")
async def static_file(version: str, name: str) -> Response:
    # A lookup in what was read at start-up: no path ever reaches the file system.
    found = FILES.get(name)
    if found is None:
        return Response("not found", status_code=404, media_type="text/plain")
    cache = IMMUTABLE if version == VERSION else BRIEFLY
    return Response(
        found.content,
        media_type=found.media_type,
        headers={"Cache-Control": cache, "X-Content-Type-Options": "nosniff"},
    )
