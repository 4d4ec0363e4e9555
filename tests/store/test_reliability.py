"""Time to recovery over a hand-built history, and the flaky query's edge cases, on both engines."""

from __future__ import annotations

from datetime import timedelta

from ciwatch.domain import RefKey, Status
from ciwatch.store import SqlStore
from ciwatch.store.reliability import flaky_jobs, recovery_stats, red_periods
from factories import T0, at, make_job, make_run

MINUTE = 60.0
HOUR = 3600.0


def _run(n: int, status: Status, created: float, finished: float, **extra: object) -> object:
    return make_run(
        run_id=str(n),
        number=n,
        status=status,
        created_at=at(created),
        started_at=at(created),
        finished_at=at(finished),
        updated_at=at(finished),
        duration_seconds=finished - created,
        **extra,
    )


async def test_time_to_recovery_of_a_hand_built_history(store: SqlStore) -> None:
    S, F = Status.SUCCESS, Status.FAILED
    history = [
        _run(1, S, 0, 5 * MINUTE),
        _run(2, F, 1 * HOUR, 1 * HOUR + 10 * MINUTE),  # red from 1h10m
        _run(3, F, 2 * HOUR, 2 * HOUR + 10 * MINUTE),  # still red
        _run(4, Status.CANCELED, 2 * HOUR + 20 * MINUTE, 2 * HOUR + 25 * MINUTE),  # no colour
        _run(5, S, 3 * HOUR, 3 * HOUR + 10 * MINUTE),  # green at 3h10m: 2h red
        _run(6, F, 4 * HOUR, 4 * HOUR + 10 * MINUTE),  # red from 4h10m
        _run(7, S, 4 * HOUR + 20 * MINUTE, 4 * HOUR + 40 * MINUTE),  # green: 30m red
        _run(8, F, 6 * HOUR, 6 * HOUR + 10 * MINUTE),  # red from 6h10m, still red
    ]
    other = [_run(9, S, 0, 60, ref="dev"), _run(10, F, 120, 180, ref="dev")]
    await store.upsert_runs([*history, *other])  # type: ignore[list-item]
    now = at(9 * HOUR + 10 * MINUTE)
    found = await store.read(
        "ttr", lambda conn: recovery_stats(conn, now=now, window=timedelta(days=1))
    )
    main = found[RefKey("gitlab-main", "group/app", "main")]
    assert main.breaks == 3
    assert main.recoveries == [2 * HOUR, 30 * MINUTE]
    assert main.mean_seconds == (2 * HOUR + 30 * MINUTE) / 2
    assert main.median_seconds == (2 * HOUR + 30 * MINUTE) / 2
    assert main.longest_seconds == 3 * HOUR  # the current period, 6h10m → 9h10m
    assert main.red_since == at(6 * HOUR + 10 * MINUTE)
    assert (main.decided, main.failed) == (7, 4)
    assert main.failure_rate == 4 / 7
    dev = found[RefKey("gitlab-main", "group/app", "dev")]
    assert (dev.breaks, dev.mean_seconds, dev.longest_seconds) == (
        1,
        None,
        now.timestamp() - at(180).timestamp(),
    )
    # A window starting after run 5: run 6 opens the first period, and 1, 2, 3 are not read.
    late = await store.read(
        "ttr",
        lambda conn: recovery_stats(
            conn, now=now, window=timedelta(hours=5, minutes=30), ref="main"
        ),
    )
    assert set(late) == {RefKey("gitlab-main", "group/app", "main")}
    assert late[RefKey("gitlab-main", "group/app", "main")].breaks == 2


async def test_a_rerun_that_passed_on_the_same_run_id_still_counts_its_red_period(
    store: SqlStore,
) -> None:
    """A GitHub re-run keeps the run id: once attempt 2 passed, the run's row says success, but
    the ref was red from the end of attempt 1's failed job until then."""
    S, F = Status.SUCCESS, Status.FAILED
    await store.upsert_runs([_run(1, S, 0, 5 * MINUTE)])  # type: ignore[list-item]
    failed = make_job(
        run_id="2", job_id="21", status=F, finished_at=at(HOUR + 10 * MINUTE), attempt=1
    )
    await store.upsert_runs(
        [_run(2, F, HOUR, HOUR + 10 * MINUTE)],  # type: ignore[list-item]
        [failed],
    )
    passed = make_job(
        run_id="2",
        job_id="22",
        status=S,
        started_at=at(2 * HOUR),
        finished_at=at(2 * HOUR + 40 * MINUTE),
        updated_at=at(2 * HOUR + 40 * MINUTE),
        attempt=2,
    )
    rerun = _run(2, S, HOUR, 2 * HOUR + 40 * MINUTE, attempt=2)
    await store.upsert_runs([rerun], [passed])  # type: ignore[list-item]
    # A re-run of a green run that passed again is no red period; neither is an allowed failure.
    allowed = make_job(
        run_id="3", job_id="31", status=F, allow_failure=True, finished_at=at(3 * HOUR), attempt=1
    )
    await store.upsert_runs(
        [_run(3, S, 3 * HOUR, 4 * HOUR, attempt=2)],  # type: ignore[list-item]
        [allowed],
    )
    now = at(5 * HOUR)
    found = await store.read(
        "ttr", lambda conn: recovery_stats(conn, now=now, window=timedelta(days=1))
    )
    main = found[RefKey("gitlab-main", "group/app", "main")]
    assert main.breaks == 1
    assert main.recoveries == [90 * MINUTE]  # 1h10m (attempt 1's failed job) → 2h40m
    assert main.red_since is None
    assert (main.decided, main.failed) == (4, 1)


def test_red_periods_pair_each_failure_with_the_next_success() -> None:
    assert red_periods([]) == []
    periods = red_periods([("success", T0), ("failed", at(10)), ("success", at(70))])
    assert [(p.began, p.ended) for p in periods] == [(at(10), at(70))]


async def test_a_job_failing_and_passing_on_different_commits_is_not_flaky(
    store: SqlStore,
) -> None:
    failed = make_run(run_id="1", status=Status.FAILED, sha="a" * 40)
    passed = make_run(run_id="2", status=Status.SUCCESS, sha="b" * 40, created_at=at(600))
    allowed = make_run(run_id="3", status=Status.SUCCESS, sha="c" * 40, created_at=at(900))
    jobs = [
        make_job(run_id="1", job_id="1", status=Status.FAILED),
        make_job(run_id="2", job_id="2", status=Status.SUCCESS, finished_at=at(900)),
        # An allowed failure retried green is not a flaky job either.
        make_job(run_id="3", job_id="3", name="lint", status=Status.FAILED, allow_failure=True),
        make_job(run_id="3", job_id="4", name="lint", finished_at=at(1200)),
    ]
    await store.upsert_runs([failed, passed, allowed], jobs)
    now = at(3600)
    assert await store.read("flaky", lambda conn: flaky_jobs(conn, now=now)) == []
    # A pass before the failure on the same commit is no flake (it broke afterwards).
    again = make_run(run_id="4", status=Status.FAILED, sha="b" * 40, created_at=at(1500))
    await store.upsert_runs(
        [again], [make_job(run_id="4", job_id="5", status=Status.FAILED, finished_at=at(1800))]
    )
    assert await store.read("flaky", lambda conn: flaky_jobs(conn, now=now)) == []
    # A retry of that failure that passes makes `test` flaky on b: 1 flaky run of 2 failures.
    retry = make_job(run_id="4", job_id="6", status=Status.SUCCESS, finished_at=at(2400))
    await store.upsert_jobs([retry])
    found = await store.read("flaky", lambda conn: flaky_jobs(conn, now=now))
    assert [(f.job, f.failures, f.flaky_runs, f.commits, f.flaky_commits) for f in found] == [
        ("test", 2, 1, 2, 1)
    ]
    assert found[0].last_seen == at(2400)
    assert found[0].url == "https://gitlab.example.com/group/app/-/jobs/5001"
    # Outside the window it is gone.
    later = now + timedelta(days=30)
    assert await store.read("flaky", lambda conn: flaky_jobs(conn, now=later)) == []
