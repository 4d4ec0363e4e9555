"""What an unchanged poll costs, counted rather than timed: a GitLab page answering `[]` is not
decoded and issues no SQL statement, a cycle keeps no more poll tasks alive than polls may be in
flight, `poll --once` reads the target states once, and the run lookups of concurrent polls
of changed targets share a read. Decodes are counted with a profile hook
on the parser's code, SQL with a `before_cursor_execute` listener on the real engine (SQLite and
PostgreSQL); the servers are real, on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
import sys
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import FrameType
from typing import Any

import pytest
from aiohttp import web

from ciwatch.clock import FakeClock, SystemClock
from ciwatch.config import GitLabSource, Settings
from ciwatch.domain import Run, RunKey, Target, TargetState
from ciwatch.http import HttpClient
from ciwatch.providers import gitlab
from ciwatch.providers.gitlab_poll import GitLabProvider
from ciwatch.runtime import Runtime
from ciwatch.scheduler.book import TargetBook
from ciwatch.scheduler.tasks import KnownRuns, poll_target
from ciwatch.simulator import RunningSimulator, Simulator
from ciwatch.store import SqlStore
from collection.basic import basic_sources
from collection.test_poll_state_memory import _close_providers, statements
from factories import make_run


@contextmanager
def calls_of(*functions: Callable[..., Any]) -> Iterator[Counter[str]]:
    """How often each of these functions is entered while the block runs."""
    codes = {f.__code__: f.__qualname__ for f in functions}
    counted: Counter[str] = Counter()

    def profile(frame: FrameType, event: str, arg: object) -> None:
        if event == "call" and frame.f_code in codes:
            counted[codes[frame.f_code]] += 1

    previous = sys.getprofile()
    sys.setprofile(profile)
    try:
        yield counted
    finally:
        sys.setprofile(previous)


@pytest.fixture
async def empty_gitlab() -> AsyncIterator[tuple[str, list[web.Request]]]:
    """A GitLab whose pipelines lists say nothing was updated: `[]`."""
    seen: list[web.Request] = []

    async def pipelines(request: web.Request) -> web.StreamResponse:
        seen.append(request)
        return web.Response(body=b"[]", content_type="application/json")

    app = web.Application()
    app.router.add_get("/api/v4/projects/{project}/pipelines", pipelines)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}", seen
    finally:
        await runner.cleanup()


async def test_an_unchanged_gitlab_poll_decodes_nothing(
    store: SqlStore, empty_gitlab: tuple[str, list[web.Request]]
) -> None:
    url, seen = empty_gitlab
    settings = GitLabSource(name="gl", url=url, projects=["group/app"])
    provider = GitLabProvider(settings, HttpClient("gl", url, retries=0), SystemClock())
    target = Target("gl", "gitlab", "group/app")
    now = datetime.now(UTC).replace(microsecond=0)
    cursor = "2026-12-01T10:00:00Z"
    before = now - timedelta(seconds=30)  # the previous poll, as it was stored
    polled = TargetState(
        "gl",
        "group/app",
        cursor=cursor,
        last_polled_at=before,
        last_success_at=before,
        digest=KnownRuns().encode(),
    )
    await store.save_target_states([polled])
    book = TargetBook(store)
    await book.load()
    try:
        with (
            calls_of(gitlab.parse_pipelines, gitlab.decode) as decoded,
            statements(store) as sent,
        ):
            outcome = await poll_target(
                provider, store, target, now=now, known=KnownRuns(), book=book
            )
    finally:
        await provider.close()
    assert [r.query.get("updated_after") for r in seen] == ["2026-12-01T09:59:00Z"]
    assert outcome.ok and outcome.seen == 0 and outcome.changed == 0
    assert decoded == Counter()
    assert sent == []
    state = book.get(target.key)
    assert state is not None and state.cursor == cursor and state.last_polled_at == now
    assert book.dirty == 0  # only its timestamps moved: written with the heartbeat or on stop


PIPELINES = Path(__file__).parents[1] / "fixtures" / "gitlab" / "api" / "pipelines-list.json"


@pytest.fixture
async def idle_gitlab() -> AsyncIterator[tuple[str, list[web.Request]]]:
    """A GitLab whose project is idle: every pipelines list answers the same page, the vendor's
    sample (its newest pipeline is always within `updated_after`'s overlap)."""
    seen: list[web.Request] = []
    body = PIPELINES.read_bytes()

    async def pipelines(request: web.Request) -> web.StreamResponse:
        seen.append(request)
        return web.Response(body=body, content_type="application/json")

    app = web.Application()
    app.router.add_get("/api/v4/projects/{project}/pipelines", pipelines)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}", seen
    finally:
        await runner.cleanup()


async def test_an_idle_gitlab_project_answering_the_same_page_is_decoded_once(
    idle_gitlab: tuple[str, list[web.Request]],
) -> None:
    """The first incremental poll decodes the page and keeps its hash as the target's `etag`;
    the next, byte for byte the same, is "not modified" and decodes nothing. A changed page is
    decoded again."""
    url, seen = idle_gitlab
    settings = GitLabSource(name="gl", url=url, projects=["group/app"])
    provider = GitLabProvider(settings, HttpClient("gl", url, retries=0), SystemClock())
    target = Target("gl", "gitlab", "group/app")
    state = TargetState("gl", "group/app", cursor="2016-08-11T11:32:35.169Z")
    try:
        with calls_of(gitlab.parse_pipelines) as first_decodes:
            first = await provider.poll(target, state)
        assert first_decodes["parse_pipelines"] == 1 and len(first.runs) == 2
        assert first.state.etag is not None and first.state.etag.startswith("b2:")
        with calls_of(gitlab.parse_pipelines, gitlab.decode) as decoded:
            second = await provider.poll(target, first.state)
        assert decoded == Counter()
        assert second.not_modified and second.runs == [] and second.state == first.state
        # Another page (a pipeline moved on): decoded, with a new tag.
        changed = replace(first.state, etag="b2:another-page")
        with calls_of(gitlab.parse_pipelines) as again:
            third = await provider.poll(target, changed)
        assert again["parse_pipelines"] == 1 and not third.not_modified
        assert third.state.etag == first.state.etag
    finally:
        await provider.close()
    assert len(seen) == 3 and all(r.query.get("updated_after") for r in seen)


def _settings(running: RunningSimulator, **collection: Any) -> Settings:
    return Settings(
        database="sqlite:///unused.db",
        collection={"retries": 0, "jitter": 0.0, **collection},
        sources=basic_sources(running),
    )


async def test_a_cycle_keeps_no_more_poll_tasks_than_polls_in_flight(
    store: SqlStore, sim: tuple[Simulator, RunningSimulator, FakeClock]
) -> None:
    """Six targets, two polls in flight: two poll tasks, each taking the next target, not one
    task per target waiting on the semaphore."""
    _, running, clock = sim
    runtime = await Runtime.open(_settings(running, concurrency=2), clock=clock, store=store)
    alive: list[int] = []

    def sample(*_: object) -> None:
        alive.append(
            sum(
                1
                for task in asyncio.all_tasks()
                if "Scheduler._run_once" in task.get_coro().__qualname__  # type: ignore[union-attr]
            )
        )

    try:
        assert runtime.scheduler is not None
        report = await runtime.scheduler.run_once(on_done=sample)
    finally:
        await _close_providers(runtime)
    assert not report.failed and len(report.outcomes) == 6
    assert len(alive) == 6 and max(alive) == 2


async def test_poll_once_reads_the_target_states_once(
    store: SqlStore, sim: tuple[Simulator, RunningSimulator, FakeClock]
) -> None:
    """The book's load serves the check for targets no longer watched too."""
    _, running, clock = sim
    runtime = await Runtime.open(_settings(running), clock=clock, store=store)
    try:
        assert runtime.scheduler is not None
        await runtime.scheduler.run_once()
        with statements(store) as sent:
            report = await runtime.scheduler.run_once()
    finally:
        await _close_providers(runtime)
    assert not report.failed
    reads = [s for s in sent if s.lstrip().upper().startswith("SELECT") and "FROM targets" in s]
    assert len(reads) == 1


@pytest.fixture
async def busy_gitlab() -> AsyncIterator[tuple[str, int]]:
    """A GitLab of `K` projects that each list two pipelines the store has not seen (the
    vendor's samples). The lists are answered together once all `K` were asked for, as a cycle's
    concurrent polls get theirs at about the same time."""
    count = 6
    fixtures = PIPELINES.parent
    pipelines_body = PIPELINES.read_bytes()
    pipeline_sample = json.loads((fixtures / "pipeline.json").read_bytes())
    jobs_sample = json.loads((fixtures / "pipeline-jobs-list.json").read_bytes())
    asked: list[web.Request] = []
    all_asked = asyncio.Event()

    async def pipelines(request: web.Request) -> web.StreamResponse:
        asked.append(request)
        if len(asked) >= count:
            all_asked.set()
        await all_asked.wait()
        return web.Response(body=pipelines_body, content_type="application/json")

    async def pipeline(request: web.Request) -> web.StreamResponse:
        # The sample, as the pipeline asked for.
        return web.json_response({**pipeline_sample, "id": int(request.match_info["id"])})

    async def pipeline_jobs(request: web.Request) -> web.StreamResponse:
        run = int(request.match_info["id"])
        return web.json_response(
            [{**job, "pipeline": {**job["pipeline"], "id": run}} for job in jobs_sample]
        )

    app = web.Application()
    app.router.add_get("/api/v4/projects/{project}/pipelines", pipelines)
    app.router.add_get("/api/v4/projects/{project}/pipelines/{id}", pipeline)
    app.router.add_get("/api/v4/projects/{project}/pipelines/{id}/jobs", pipeline_jobs)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}", count
    finally:
        await runner.cleanup()


async def test_concurrent_polls_of_changed_targets_share_their_run_lookups(
    store: SqlStore, busy_gitlab: tuple[str, int]
) -> None:
    """K targets whose lists show runs the process does not know, polled at once: the store is
    asked which of their runs it holds in one read for all of them (not one read per run, nor
    one per poll), and every run is stored."""
    url, count = busy_gitlab
    projects = [f"group/p{i}" for i in range(count)]
    settings = GitLabSource(name="gl", url=url, projects=projects)
    provider = GitLabProvider(settings, HttpClient("gl", url, retries=0), SystemClock())
    now = datetime.now(UTC).replace(microsecond=0)
    targets = [Target("gl", "gitlab", project) for project in projects]
    try:
        with statements(store) as sent:
            outcomes = await asyncio.gather(
                *(poll_target(provider, store, t, now=now, known=KnownRuns()) for t in targets)
            )
    finally:
        await provider.close()
    assert [(o.ok, o.seen) for o in outcomes] == [(True, 2)] * count
    assert sum(o.changed for o in outcomes) == 2 * count
    # The lookup statement (`reads.get_runs`): the runs among some (source, project, run_id).
    lookups = [s for s in sent if "(runs.source, runs.project, runs.run_id) IN" in s]
    # One per poll before (one per run, 12, before that); the first list answered may start a
    # read alone, and the others then share the next one.
    assert 1 <= len(lookups) < count, lookups
    for project in projects:
        assert len((await store.history(source="gl", project=project, limit=10)).runs) == 2


async def test_lookups_made_together_are_one_read(store: SqlStore) -> None:
    """Run lookups submitted together are one statement; each caller gets its own runs."""
    stored = [make_run(run_id=str(i), project=f"group/p{i % 3}") for i in range(6)]
    await store.upsert_runs(stored)
    wanted = [[run.key, RunKey("gl", "group/none", "9")] for run in stored]
    with statements(store) as sent:
        answers = await asyncio.gather(*(store.get_runs(keys) for keys in wanted))
    assert [list(answer) for answer in answers] == [[run.key] for run in stored]
    assert [answer[run.key].status for answer, run in zip(answers, stored, strict=True)] == [
        run.status for run in stored
    ]
    assert len([s for s in sent if "(runs.source, runs.project, runs.run_id) IN" in s]) == 1
    assert store.group_read.batches == 1
    assert await store.get_runs([]) == {}


async def test_a_long_lookup_is_read_in_padded_chunks(store: SqlStore) -> None:
    """More keys than one statement takes, some twice, most stored: every stored one found,
    in two statements (256 keys, then the rest padded to a power of two)."""
    stored = [make_run(run_id=str(i)) for i in range(300)]
    await store.upsert_runs(stored)
    keys = [run.key for run in stored] + [stored[0].key, RunKey("gl", "group/none", "9")]
    with statements(store) as sent:
        found = await store.get_runs(keys)
    assert found == {run.key: run for run in await _stored(store, stored)}
    assert len([s for s in sent if "(runs.source, runs.project, runs.run_id) IN" in s]) == 2


async def _stored(store: SqlStore, runs: list[Run]) -> list[Run]:
    found = []
    for run in runs:
        one = await store.get_run(run.key)
        assert one is not None
        found.append(one)
    return found
