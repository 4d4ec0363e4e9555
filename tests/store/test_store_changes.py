"""`SqlStore.changes`: after a committed run write, every subscriber learns which project/refs
changed (what wakes the alert engine), and runs written with their jobs share one transaction."""

from __future__ import annotations

from ciwatch.domain import RefKey, Status
from ciwatch.store import SqlStore
from factories import at, make_job, make_run


async def test_a_write_publishes_the_refs_it_changed(store: SqlStore) -> None:
    one, two = store.changes.subscribe(), store.changes.subscribe()
    assert store.changes.subscribers == 2
    main = make_run(run_id="1")
    dev = make_run(run_id="2", ref="dev", project="group/lib")
    assert await store.upsert_runs([main, dev]) == 2
    expected = {
        RefKey("gitlab-main", "group/app", "main"),
        RefKey("gitlab-main", "group/lib", "dev"),
    }
    assert one.take() == expected
    assert two.take() == expected
    assert one.take() == set()
    # A duplicate or an older update changes nothing: nothing is published.
    await store.upsert_runs([main, make_run(run_id="1", status=Status.RUNNING, updated_at=at(5))])
    assert one.take() == set()
    # A run whose ref becomes known leaves ref "" for its own: both changed.
    await store.upsert_run(make_run(run_id="3", ref=None, updated_at=at(100)))
    assert one.take() == {RefKey("gitlab-main", "group/app", "")}
    await store.upsert_run(make_run(run_id="3", ref="feature", updated_at=at(200)))
    assert one.take() == {
        RefKey("gitlab-main", "group/app", ""),
        RefKey("gitlab-main", "group/app", "feature"),
    }
    two.take()
    store.changes.unsubscribe(two)
    await store.upsert_run(make_run(run_id="4", updated_at=at(400)))
    assert two.take() == set()
    assert one.take() == {RefKey("gitlab-main", "group/app", "main")}


async def test_runs_and_jobs_are_written_together(store: SqlStore) -> None:
    feed = store.changes.subscribe()
    run = make_run(run_id="1001", status=Status.FAILED, provider_status="failed")
    jobs = [make_job(job_id="1", name="unit", status=Status.FAILED)]
    assert await store.upsert_runs([run], jobs) == 1
    assert [job.name for job in await store.jobs_for(run.key)] == ["unit"]
    assert feed.take() == {run.ref_key}
    # Jobs alone change no run and publish nothing.
    assert await store.upsert_runs([], [make_job(job_id="2", name="lint")]) == 0
    assert {job.name for job in await store.jobs_for(run.key)} == {"unit", "lint"}
    assert feed.take() == set()
