"""/admin serves the page and its files: strict CSP, right types, sensible caching, no schema."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import httpx
import pytest

from tests.support.server import Node
from ultrachat.dashboard.routes import CONTENT_SECURITY_POLICY, static_files

VENDORED = ("vendor/uPlot-1.6.32.iife.min.js", "vendor/uPlot-1.6.32.min.css")


@pytest.fixture
async def http(dashboard_node: Node) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=dashboard_node.http, timeout=10) as client:
        yield client


def test_the_files_are_package_data() -> None:
    names = set(static_files())
    assert {"index.html", "dashboard.js", "dashboard.css", *VENDORED} <= names
    assert "vendor/uPlot-LICENSE.txt" in names


@pytest.mark.parametrize("path", ["/admin", "/admin/"])
async def test_the_page_has_a_strict_csp(http: httpx.AsyncClient, path: str) -> None:
    response = await http.get(path)
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert response.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    assert "default-src 'self'" in CONTENT_SECURITY_POLICY
    assert "unsafe-inline" not in CONTENT_SECURITY_POLICY
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["cache-control"] == "no-cache"
    page = response.text
    # Nothing inline for the CSP to refuse: every script has a src, no style blocks or attributes.
    assert re.findall(r"<script(?![^>]*\bsrc=)[^>]*>", page) == []
    assert "<style" not in page
    assert " style=" not in page
    assert "localStorage" not in page


async def test_what_the_page_loads_is_served_with_its_type(http: httpx.AsyncClient) -> None:
    page = (await http.get("/admin")).text
    assets = re.findall(r'(?:src|href)="(/admin/static/[^"]+)"', page)
    assert len(assets) == 4
    types = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8"}
    for asset in assets:
        response = await http.get(asset)
        assert response.status_code == 200, asset
        assert response.headers["content-type"] == types[asset[asset.rindex(".") :]]
        vendored = "/vendor/" in asset
        expected = "public, max-age=31536000, immutable" if vendored else "no-cache"
        assert response.headers["cache-control"] == expected


async def test_the_script_keeps_tokens_out_of_storage(http: httpx.AsyncClient) -> None:
    script = (await http.get("/admin/static/dashboard.js")).text
    assert re.findall(r"\b(?:local|session)Storage\s*[.\[]", script) == []
    assert "innerHTML" not in script


async def test_an_unchanged_file_is_a_304(http: httpx.AsyncClient) -> None:
    first = await http.get("/admin/static/dashboard.css")
    again = await http.get(
        "/admin/static/dashboard.css", headers={"If-None-Match": first.headers["etag"]}
    )
    assert again.status_code == 304
    assert again.content == b""
    head = await http.head("/admin/static/dashboard.css")
    assert head.status_code == 200
    assert head.headers["content-length"] == str(len(first.content))


@pytest.mark.parametrize(
    "path",
    [
        "/admin/static/missing.js",
        "/admin/static/",
        "/admin/static/..%2Froutes.py",
        "/admin/static/%2e%2e/routes.py",
        "/admin/static/../__init__.py",
    ],
)
async def test_anything_else_is_404(http: httpx.AsyncClient, path: str) -> None:
    response = await http.get(path)
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


async def test_the_dashboard_is_not_in_the_api_schema(http: httpx.AsyncClient) -> None:
    paths = (await http.get("/openapi.json")).json()["paths"]
    assert [p for p in paths if p.startswith("/admin")] == []
    assert "/api/v1/admin/live" in paths
