"""The wall (`/?tv=1`) over a real store (both engines): failing refs first, then refs with a run
going (with its progress against the ref's typical duration), then the rest; and a headline that
is green only when refs exist and all are green — a filter matching nothing is grey, never
"All green"."""

from __future__ import annotations

from datetime import datetime, timedelta

import httpx

from ciwatch.domain import Status
from ciwatch.store import SqlStore
from ciwatch.web import dashboard
from factories import at, make_run

from .test_dashboard import NOW, client, clock, fill, plain, texts

__all__ = ["client", "clock"]  # fixtures


def tile_classes(html: str) -> list[str]:
    from .test_dashboard import elements

    return [attrs["class"] for tag, attrs, _ in elements(html) if tag == "li"]


async def test_wall_has_no_navigation_and_loads_its_layout_script(
    client: httpx.AsyncClient, store: SqlStore
) -> None:
    await fill(store)
    html = (await client.get("/?tv=1")).text
    assert 'class="topbar"' not in html
    assert 'aria-label="Views"' not in html
    assert '<script src="/static/wall.js" defer></script>' in html
    script = await client.get("/static/wall.js")
    assert script.status_code == 200
    assert "grid.style.setProperty" in script.text
    # The board keeps its navigation.
    assert 'class="topbar"' in (await client.get("/")).text


async def _start_lib_run(store: SqlStore, *, started: datetime) -> None:
    """Run #20 of group/lib main (green, its green run took 10 minutes) running since `started`."""
    await store.upsert_run(
        make_run(
            project="group/lib",
            run_id="20",
            number=20,
            status=Status.RUNNING,
            created_at=started,
            started_at=started,
            finished_at=None,
            duration_seconds=None,
            updated_at=started,
        )
    )


async def test_a_running_run_on_a_green_ref_comes_before_the_rest(
    client: httpx.AsyncClient, store: SqlStore
) -> None:
    await fill(store)
    # group/lib main is green; a new run started 5 minutes ago, its green run took 10 minutes.
    await _start_lib_run(store, started=NOW - timedelta(minutes=5))
    html = (await client.get("/?tv=1")).text
    tiles = texts(html, "li", "tile")
    assert [" ".join(t.split()[3:5]) for t in tiles] == [
        "group/app dev",
        "octo/web main",
        "group/lib main",
        "group/app main",
    ]
    assert tiles[2] == "✔ success #20 group/lib main ● running 5m 00s of ~10m 00s 50%"
    assert 'class="tile s-success moving m-running"' in html
    assert '<progress class="tile-progress" max="1" value="0.500"' in html
    # octo/web has never finished a run: elapsed time, no typical duration, no bar.
    assert tiles[1] == "● running #8 octo/web main ● running 18h 00m"
    assert html.count("<progress") == 1


async def test_an_overdue_run_says_so(client: httpx.AsyncClient, store: SqlStore) -> None:
    await fill(store)
    await _start_lib_run(store, started=NOW - timedelta(minutes=25))
    html = (await client.get("/?tv=1")).text
    assert "● running 25m 00s > ~10m 00s" in texts(html, "span", "tile-run")
    assert 'class="tile-meta tile-run overdue"' in html


async def test_headline_states(client: httpx.AsyncClient, store: SqlStore) -> None:
    await fill(store)
    failing = (await client.get("/?tv=1")).text
    assert "✘ 1 failing" in plain(failing)
    assert "<title>✘ 1 failing · ciwatch wall</title>" in failing
    # Refs exist and every one is green.
    green = (await client.get("/?tv=1&project=group/lib")).text
    assert "✔ All green" in plain(green)
    assert "wall-green" in green
    # No red ref, but not all green either (a ref running its first run).
    quiet = (await client.get("/?tv=1&source=gh")).text
    assert "All green" not in plain(quiet)
    assert "No failing refs" in plain(quiet)
    # A filter that matches nothing: grey, the filter shown, never green.
    for query in ("source=gitlab-mian", "ref=mian&project=group/app", "status=canceled"):
        html = (await client.get(f"/?tv=1&{query}")).text
        text = plain(html)
        assert "All green" not in text, query
        assert "Nothing matches this filter" in text, query
        assert 'class="wall-summary wall-nothing"' in html
        assert "<title>Nothing matches · ciwatch wall</title>" in html
        for pair in query.split("&"):
            assert f"<code>{pair}</code>" in html
        assert texts(html, "li", "tile") == []


async def test_status_filter_counts_only_what_it_keeps(
    client: httpx.AsyncClient, store: SqlStore
) -> None:
    await fill(store)
    html = (await client.get("/?tv=1&status=success")).text
    assert "✔ All green" in plain(html)
    assert "1 failed" not in plain(html)


async def test_wall_pages_after_its_tiles(client: httpx.AsyncClient, store: SqlStore) -> None:
    total = dashboard.WALL_TILES + 3
    await store.upsert_runs(
        [make_run(project=f"p/{n:03d}", run_id=str(n), created_at=at(n)) for n in range(total)]
    )
    html = (await client.get("/?tv=1")).text
    classes = tile_classes(html)
    assert len(classes) == dashboard.WALL_TILES + 1
    assert classes[-1] == "tile tile-more"
    assert "+3 more" in plain(html)
    second = (await client.get("/?tv=1&page=2")).text
    assert len(texts(second, "li", "tile")) == 3
