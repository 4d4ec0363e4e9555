"""`newest_runs` (the alert engine's one read for the decisive runs and the last greens of many
refs) answers what `history(ref=..., status=..., limit=1)` answers per ref, in one statement per
batch, on both engines; and a write of many refs recomputes their states in a few statements."""

from __future__ import annotations

from sqlalchemy import event

from ciwatch.domain import RefKey, Status
from ciwatch.state import ref_state
from ciwatch.store import SqlStore
from ciwatch.store.reads import NEWEST_CHUNK
from factories import at, make_run


def statements(store: SqlStore) -> list[str]:
    seen: list[str] = []

    def before(*args: object) -> None:
        seen.append(str(args[2]))

    event.listen(store._engine.sync_engine, "before_cursor_execute", before)
    return seen


async def test_newest_runs_equals_history_per_ref(store: SqlStore) -> None:
    runs = [
        make_run(
            project=f"group/p{n % 7}",
            run_id=f"{n:04d}",
            ref=[None, "main", "dev"][n % 3],
            status=[Status.SUCCESS, Status.FAILED, Status.CANCELED][n % 5 % 3],
            created_at=at(100 * (n // 2)),  # ties: the run id decides, as in history
        )
        for n in range(150)
    ]
    await store.upsert_runs(runs)
    refs = [*sorted({run.ref_key for run in runs}), RefKey("gitlab-main", "nowhere", "main")]
    assert len(refs) > 1
    for status in (Status.SUCCESS, Status.FAILED, Status.RUNNING):
        expected = {}
        for ref in refs:
            page = await store.history(
                source=ref.source, project=ref.project, ref=ref.ref, status=status, limit=1
            )
            if page.runs:
                expected[ref] = page.runs[0]
        seen = statements(store)
        assert await store.newest_runs(refs, status) == expected
        chunks = -(-len(refs) // NEWEST_CHUNK)  # one statement per chunk, not one per ref
        assert len([s for s in seen if s.lstrip().upper().startswith("SELECT")]) == chunks
    assert await store.newest_runs([], Status.SUCCESS) == {}


async def test_newest_runs_of_more_refs_than_a_statement_holds(store: SqlStore) -> None:
    count = NEWEST_CHUNK + 3
    await store.upsert_runs(
        [
            make_run(project=f"group/p{n}", run_id=str(n), status=Status.SUCCESS)
            for n in range(count)
        ]
    )
    refs = [RefKey("gitlab-main", f"group/p{n}", "main") for n in range(count)]
    found = await store.newest_runs(refs, Status.SUCCESS)
    assert sorted(run.run_id for run in found.values()) == sorted(str(n) for n in range(count))


async def test_a_write_of_many_refs_recomputes_them_in_a_few_statements(store: SqlStore) -> None:
    # Each ref gets a green and then a red run, some a canceled one on top: every kind of probe.
    runs = []
    for n in range(40):
        runs.append(make_run(project=f"group/p{n}", run_id=f"{n}-1", created_at=at(10)))
        runs.append(
            make_run(
                project=f"group/p{n}", run_id=f"{n}-2", status=Status.FAILED, created_at=at(20)
            )
        )
        if n % 3 == 0:
            runs.append(
                make_run(
                    project=f"group/p{n}",
                    run_id=f"{n}-3",
                    status=Status.CANCELED,
                    created_at=at(30),
                )
            )
    await store.upsert_runs(runs[:1])
    seen = statements(store)
    await store.upsert_runs(runs[1:])
    selects = [s for s in seen if s.lstrip().upper().startswith("SELECT")]
    # Three batches of refs (16 each), each one probe and at most two kinds of streak start:
    # not two statements per ref (80).
    assert len(selects) <= 9, selects
    by_ref: dict[RefKey, list] = {}
    for run in runs:
        by_ref.setdefault(run.ref_key, []).append(run)
    stored = {state.key: state for state in await store.ref_states()}
    for key, of_ref in by_ref.items():
        expected = ref_state(of_ref)
        assert expected is not None
        got = stored[key]
        assert (got.status, got.since, got.last_run.run_id) == (
            expected.status,
            expected.since,
            expected.last_run.run_id,
        )
