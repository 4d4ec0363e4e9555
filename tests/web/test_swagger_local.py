"""`/docs` works offline: Swagger UI's script and stylesheet come from the package's own
/static, and the page renders the operations in Chromium with every other host blocked."""

from __future__ import annotations

import os
import re
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from ciwatch.store import SqlStore
from ciwatch.web.app import STATIC_DIR, create_app

from .harness import make_runtime, serve

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"]


def _references(html: str) -> list[str]:
    return re.findall(r"""(?:src|href)=["']([^"']+)["']""", html) + re.findall(
        r"""url: ?["']([^"']+)["']""", html
    )


async def test_docs_references_only_local_assets(client: httpx.AsyncClient) -> None:
    page = await client.get("/docs")
    assert page.status_code == 200
    found = _references(page.text)
    assert {"/static/swagger/swagger-ui-bundle.js", "/static/swagger/swagger-ui.css"} <= set(found)
    for url in found:
        parts = urlsplit(url)
        assert not parts.scheme and not parts.netloc, f"/docs loads {url} from another host"
    assert "cdn" not in page.text.lower()
    wanted = {
        "/static/swagger/swagger-ui-bundle.js": ("text/javascript", "SwaggerUIBundle"),
        "/static/swagger/swagger-ui.css": ("text/css", ".swagger-ui"),
        "/static/favicon.svg": ("image/svg+xml", "<svg"),
        "/openapi.json": ("application/json", '"openapi"'),
    }
    for url, (kind, marker) in wanted.items():
        answer = await client.get(url)
        assert answer.status_code == 200, url
        assert answer.headers["content-type"].split(";")[0] == kind, url
        assert marker in answer.text, url


def test_the_vendored_files_carry_their_licence() -> None:
    folder = STATIC_DIR / "swagger"
    names = {path.name for path in folder.iterdir()}
    assert {"swagger-ui-bundle.js", "swagger-ui.css", "LICENSE", "NOTICE", "SOURCE.md"} <= names
    assert "Apache License" in (folder / "LICENSE").read_text()


def test_the_wheel_ships_the_swagger_files() -> None:
    pyproject = (Path(__file__).parents[2] / "pyproject.toml").read_text()
    assert '"web/static/swagger/*"' in pyproject


def _require_chromium() -> None:
    if CHROMIUM.exists():
        return
    message = f"{CHROMIUM} is not installed (apt-get install chromium)"
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


async def test_docs_renders_with_other_hosts_blocked(store: SqlStore) -> None:
    _require_chromium()
    async_api = pytest.importorskip("playwright.async_api")
    app = create_app(make_runtime(store), metrics_max_age=0.0)
    async with serve(app) as base, async_api.async_playwright() as p:
        browser = await p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=ARGS)
        try:
            page = await browser.new_page()
            ours = urlsplit(base).netloc
            blocked: list[str] = []
            problems: list[str] = []

            async def only_ours(route: object) -> None:
                request = route.request  # type: ignore[attr-defined]
                if urlsplit(request.url).netloc == ours:
                    await route.continue_()  # type: ignore[attr-defined]
                else:
                    blocked.append(request.url)
                    await route.abort()  # type: ignore[attr-defined]

            await page.route("**/*", only_ours)
            page.on("pageerror", lambda e: problems.append(str(e)))
            page.on("response", lambda r: problems.append(r.url) if r.status >= 400 else None)
            await page.goto(f"{base}/docs")
            operations = page.locator(".opblock-summary-path")
            await async_api.expect(operations.first).to_be_visible(timeout=15_000)
            paths = await operations.all_inner_texts()
            assert any("/api/v1/runs" in path for path in paths), paths
            assert any("/api/v1/silences" in path for path in paths), paths
            await async_api.expect(page.locator(".swagger-ui .info .title")).to_contain_text(
                "ciwatch"
            )
            assert blocked == []
            assert problems == []
        finally:
            await browser.close()
