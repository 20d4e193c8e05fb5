"""The web app's files: `/` (the page), `/app/...` (its scripts, styles, icons),
`/manifest.webmanifest` and `/sw.js` (at the root, so the service worker's scope is the
whole app).

The files ship in the package (`tunehand/webapp/static`), read once and kept in memory
with their gzip form and an ETag. Only the files found there are served, by exact path,
so no request can reach outside. Every answer carries a strict Content-Security-Policy
(no inline script or style, nothing from another origin) and is revalidated on each load
(`no-cache` plus the ETag), so an upgraded server's app is picked up at once.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.resources
import mimetypes
from dataclasses import dataclass
from importlib.resources.abc import Traversable

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tunehand.server.web import error, path_param

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
    "media-src 'self' blob:; connect-src 'self'; manifest-src 'self'; worker-src 'self'; "
    "font-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cache-Control": "no-cache",
}
TYPES = {
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".html": "text/html; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".webmanifest": "application/manifest+json",
    ".json": "application/json",
    ".md": "text/plain; charset=utf-8",
}
COMPRESSIBLE = (".js", ".mjs", ".css", ".html", ".svg", ".webmanifest", ".json", ".md")
MAX_DEPTH = 4


@dataclass(frozen=True)
class File:
    body: bytes
    gzipped: bytes | None
    etag: str
    media_type: str


def load(root: Traversable) -> dict[str, File]:
    """Every file under `root`, by its path relative to it ("index.html", "js/app.js")."""
    files: dict[str, File] = {}

    def walk(node: Traversable, prefix: str, depth: int) -> None:
        for child in node.iterdir():
            rel = prefix + child.name
            if child.name.startswith("."):
                continue
            if child.is_dir():
                if depth < MAX_DEPTH:
                    walk(child, rel + "/", depth + 1)
                continue
            data = child.read_bytes()
            suffix = "." + child.name.rsplit(".", 1)[-1] if "." in child.name else ""
            media = TYPES.get(suffix) or mimetypes.guess_type(child.name)[0]
            packed = gzip.compress(data, 9, mtime=0) if suffix in COMPRESSIBLE else None
            etag = '"' + hashlib.blake2b(data, digest_size=12).hexdigest() + '"'
            files[rel] = File(data, packed, etag, media or "application/octet-stream")

    if root.is_dir():
        walk(root, "", 0)
    return files


def package_root() -> Traversable | None:
    try:
        return importlib.resources.files("tunehand.webapp") / "static"
    except ModuleNotFoundError:
        return None


class Files:
    """The served files, loaded on first use."""

    def __init__(self, root: Traversable | None) -> None:
        self._root = root
        self._files: dict[str, File] | None = None

    def get(self, path: str) -> File | None:
        if self._files is None:
            self._files = load(self._root) if self._root is not None else {}
        return self._files.get(path)

    def answer(self, request: Request, path: str) -> Response:
        f = self.get(path)
        if f is None:
            if path == "index.html":
                return error(404, "not_found", "the web app is not part of this installation")
            return error(404, "not_found", "no such file")
        headers = dict(HEADERS)
        headers["ETag"] = f.etag
        headers["Vary"] = "Accept-Encoding"
        if path == "sw.js":
            headers["Service-Worker-Allowed"] = "/"
        if f.etag in request.headers.get("if-none-match", ""):
            return Response(status_code=304, headers=headers)
        body = f.body
        if f.gzipped is not None and "gzip" in request.headers.get("accept-encoding", ""):
            body = f.gzipped
            headers["Content-Encoding"] = "gzip"
        if request.method == "HEAD":
            headers["Content-Length"] = str(len(body))
            return Response(status_code=200, headers=headers, media_type=f.media_type)
        return Response(body, 200, headers, media_type=f.media_type)


def make_routes(files: Files) -> list[Route]:
    async def index(request: Request) -> Response:
        return files.answer(request, "index.html")

    async def asset(request: Request) -> Response:
        path = path_param(request, "path")
        if path == "index.html":  # the page is `/`
            return error(404, "not_found", "no such file")
        return files.answer(request, path)

    async def manifest(request: Request) -> Response:
        return files.answer(request, "manifest.webmanifest")

    async def worker(request: Request) -> Response:
        return files.answer(request, "sw.js")

    methods = ["GET", "HEAD"]
    return [
        Route("/", index, methods=methods),
        Route("/app/{path:path}", asset, methods=methods),
        Route("/manifest.webmanifest", manifest, methods=methods),
        Route("/sw.js", worker, methods=methods),
    ]


routes = make_routes(Files(package_root()))
