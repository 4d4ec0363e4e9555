"""History queries: filters, newest-first order and keyset pagination (both engines)."""

from __future__ import annotations

import pytest

from ciwatch.domain import Run, Status
from ciwatch.state import ref_sort_key
from ciwatch.store import SqlStore
from factories import at, make_run


def sample() -> list[Run]:
    runs = []
    for n in range(30):
        runs.append(
            make_run(
                source="gitlab-main" if n % 3 else "github",
                provider="gitlab" if n % 3 else "github",
                project="group/app" if n % 2 else "group/lib",
                run_id=f"{n:03d}",
                ref=[None, "main", "dev"][n % 3],
                status=Status.FAILED if n % 4 == 0 else Status.SUCCESS,
                # Groups of equal creation times: the order falls back to the run id.
                created_at=at(100 * (n // 4)),
                updated_at=at(100 * (n // 4) + 50),
            )
        )
    # Same creation time and run id in two projects: only the tie-breaker separates them.
    runs.append(make_run(project="group/lib", run_id="twin", created_at=at(5000)))
    runs.append(make_run(project="group/app", run_id="twin", created_at=at(5000)))
    return runs


async def walk(store: SqlStore, limit: int, **filters: object) -> list[Run]:
    found: list[Run] = []
    cursor: str | None = None
    pages = 0
    while True:
        page = await store.history(limit=limit, cursor=cursor, **filters)  # type: ignore[arg-type]
        assert len(page.runs) <= limit
        found.extend(page.runs)
        pages += 1
        if page.next is None:
            return found
        assert page.runs, "a page with a next cursor is never empty"
        cursor = page.next
        assert pages < 1000


def newest_first(runs: list[Run]) -> list[Run]:
    return sorted(runs, key=ref_sort_key, reverse=True)


@pytest.mark.parametrize("limit", [1, 3, 7, 50])
async def test_pages_cover_every_run_once_in_order(store: SqlStore, limit: int) -> None:
    runs = sample()
    await store.upsert_runs(runs)
    walked = await walk(store, limit)
    assert len(walked) == len(runs)
    assert {run.key for run in walked} == {run.key for run in runs}
    assert [ref_sort_key(run) for run in walked] == [
        ref_sort_key(run) for run in newest_first(runs)
    ]


async def test_filters(store: SqlStore) -> None:
    runs = sample()
    await store.upsert_runs(runs)
    cases: list[tuple[dict[str, object], list[Run]]] = [
        ({"source": "github"}, [r for r in runs if r.source == "github"]),
        ({"project": "group/lib"}, [r for r in runs if r.project == "group/lib"]),
        ({"ref": "main"}, [r for r in runs if r.ref == "main"]),
        ({"ref": ""}, [r for r in runs if r.ref is None]),
        ({"status": Status.FAILED}, [r for r in runs if r.status is Status.FAILED]),
        ({"since": at(1000)}, [r for r in runs if ref_sort_key(r)[0] >= at(1000)]),
        (
            {"source": "gitlab-main", "project": "group/app", "ref": "dev", "since": at(300)},
            [
                r
                for r in runs
                if (r.source, r.project, r.ref) == ("gitlab-main", "group/app", "dev")
                and ref_sort_key(r)[0] >= at(300)
            ],
        ),
    ]
    for filters, expected in cases:
        assert expected, filters
        assert await walk(store, 4, **filters) == newest_first(expected), filters


async def test_first_page_and_empty_store(store: SqlStore) -> None:
    page = await store.history()
    assert page.runs == [] and page.next is None
    await store.upsert_runs(sample())
    page = await store.history(limit=5)
    assert len(page.runs) == 5 and page.next is not None
    whole = await store.history(limit=1000)
    assert whole.next is None and len(whole.runs) == len(sample())


@pytest.mark.parametrize("cursor", ["", "garbage!", "W10", "WyJ4IiwxLDJd", "e30"])
async def test_bad_cursor_is_a_value_error(store: SqlStore, cursor: str) -> None:
    with pytest.raises(ValueError, match="cursor"):
        await store.history(cursor=cursor)


async def test_bad_limit_is_a_value_error(store: SqlStore) -> None:
    with pytest.raises(ValueError, match="limit"):
        await store.history(limit=0)
