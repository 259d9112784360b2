"""``GET /admin``: the operator dashboard's page and its static files.

The page is public: it holds no data. Everything it shows comes from admin-only APIs
(``/api/v1/admin/live``), called with the access token the page's sign-in obtains. The files
are package data, read once through ``importlib.resources`` (so they are found in a wheel as
well as in the source tree) and served from memory with a strict Content-Security-Policy.
None of these routes is in the OpenAPI schema.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cache
from importlib.resources import files
from importlib.resources.abc import Traversable

from fastapi import APIRouter, Request, Response

from ultrachat.errors import NotFound

router = APIRouter(include_in_schema=False)

# Scripts, styles, fetches and images from this origin only; no inline script or style, no
# plugins, no framing, no <base> tricks, forms post only here.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
}
# Only these kinds of file are served; anything else in the folder stays private.
CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".txt": "text/plain; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
}
# Our own files may change with any release: the browser revalidates them (a cheap 304 by
# ETag). Vendored files carry their version in their name, so they never change.
REVALIDATE = "no-cache"
IMMUTABLE = "public, max-age=31536000, immutable"


@dataclass(frozen=True)
class StaticFile:
    body: bytes
    content_type: str
    etag: str
    cache_control: str


def _walk(folder: Traversable, prefix: str) -> dict[str, StaticFile]:
    found: dict[str, StaticFile] = {}
    for entry in folder.iterdir():
        name = prefix + entry.name
        if entry.is_dir():
            found.update(_walk(entry, name + "/"))
            continue
        suffix = "." + entry.name.rsplit(".", 1)[-1] if "." in entry.name else ""
        content_type = CONTENT_TYPES.get(suffix)
        if content_type is None:
            continue
        body = entry.read_bytes()
        found[name] = StaticFile(
            body=body,
            content_type=content_type,
            etag='"' + hashlib.sha256(body).hexdigest()[:32] + '"',
            cache_control=IMMUTABLE if name.startswith("vendor/") else REVALIDATE,
        )
    return found


@cache
def static_files() -> dict[str, StaticFile]:
    """Every servable file under ``dashboard/static``, by its path relative to that folder."""
    return _walk(files("ultrachat.dashboard").joinpath("static"), "")


def _serve(request: Request, name: str) -> Response:
    item = static_files().get(name)
    if item is None:
        raise NotFound("no such file")
    headers = {**SECURITY_HEADERS, "ETag": item.etag, "Cache-Control": item.cache_control}
    if item.etag in request.headers.get("if-none-match", ""):
        return Response(status_code=304, headers=headers)
    body = b"" if request.method == "HEAD" else item.body
    response = Response(body, media_type=item.content_type, headers=headers)
    if request.method == "HEAD":
        response.headers["Content-Length"] = str(len(item.body))
    return response


@router.api_route("/admin", methods=["GET", "HEAD"])
@router.api_route("/admin/", methods=["GET", "HEAD"])
async def dashboard_page(request: Request) -> Response:
    """The dashboard's one page: the sign-in view and the dashboard view."""
    return _serve(request, "index.html")


@router.api_route("/admin/static/{name:path}", methods=["GET", "HEAD"])
async def dashboard_static(request: Request, name: str) -> Response:
    """The page's script, styles and the vendored chart library."""
    return _serve(request, name)
