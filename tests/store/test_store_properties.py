"""Property tests: the SQL merge, ref states, history and prune equal the pure reference in
`ciwatch.state`, whatever the updates and their order (both engines)."""

from __future__ import annotations

import itertools
from collections import defaultdict
from datetime import datetime

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from store_support import BlockingStore

from ciwatch.domain import RefKey, Run, RunKey, Status
from ciwatch.state import fold_runs, merge_run, ref_sort_key, ref_state
from factories import at, make_run

TIMES = [at(0), at(10), at(10.5), at(20)]
PROPERTIES = settings(
    max_examples=40,
    deadline=None,
    # The only function-scoped fixture here is the autouse `_hermetic_env` of tests/conftest.py,
    # which clears CIWATCH_* variables no example touches: sharing it across examples is safe.
    # The store is module-scoped and emptied by `clear()` at the start of every example.
    suppress_health_check=[HealthCheck.function_scoped_fixture],
    # The explain phase imports libcst, whose DeprecationWarning `filterwarnings = error` would
    # turn into an internal error that hides the falsifying example.
    phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink],
)


def maybe(*values: object) -> st.SearchStrategy[object]:
    return st.one_of(st.none(), st.sampled_from(values))


def updates(run_ids: list[str]) -> st.SearchStrategy[Run]:
    """Run updates with few distinct values, so that ties and gaps are common."""
    return st.builds(
        make_run,
        run_id=st.sampled_from(run_ids),
        provider=st.sampled_from(["gitlab", "push"]),
        status=st.sampled_from(list(Status)),
        updated_at=st.sampled_from(TIMES),
        attempt=st.integers(1, 3),
        provider_status=maybe("a", "b"),
        started_at=maybe(*TIMES),
        finished_at=maybe(*TIMES),
        duration_seconds=maybe(1.5, 2.25),
        queued_seconds=maybe(0.5),
        number=maybe(1, 2),
        workflow=maybe("CI", "Nightly"),
        ref=maybe("main", "dev"),
        sha=maybe("a" * 40, "b" * 40),
        event=maybe("push", "schedule"),
        url=maybe("https://x/1"),
        created_at=maybe(*TIMES),
        author=maybe("alice", "bob"),
    )


def batches(items: list[Run], cuts: list[int]) -> list[list[Run]]:
    """Split `items` in order at the given positions."""
    bounds = sorted({0, len(items), *(cut % (len(items) + 1) for cut in cuts)})
    return [items[a:b] for a, b in itertools.pairwise(bounds) if a < b]


def expected_ref_states(runs: list[Run]) -> list[object]:
    by_ref: dict[RefKey, list[Run]] = defaultdict(list)
    for run in runs:
        by_ref[run.ref_key].append(run)
    return [ref_state(by_ref[key]) for key in sorted(by_ref)]


@PROPERTIES
@given(
    base=st.lists(updates(["7"]), min_size=1, max_size=8),
    cuts=st.lists(st.integers(0, 16), max_size=4),
    data=st.data(),
)
def test_stored_run_is_the_fold(
    blocking_store: BlockingStore, base: list[Run], cuts: list[int], data: st.DataObject
) -> None:
    """Updates of one run, shuffled and duplicated: every upsert reports a change exactly when
    the fold changes, and the stored run is the fold, whether they come one by one or in
    batches."""
    repeats = data.draw(st.lists(st.sampled_from(base), max_size=8))
    sequence = data.draw(st.permutations(base + repeats))
    blocking_store.clear()
    store = blocking_store.store
    key = sequence[0].key
    folded: Run | None = None
    for batch in batches(sequence, cuts):
        expected_changes = 0
        for update in batch:
            merged = merge_run(folded, update)
            expected_changes += merged != folded
            folded = merged
        if len(batch) == 1:
            assert blocking_store.run(store.upsert_run(batch[0])) is bool(expected_changes)
        else:
            assert blocking_store.run(store.upsert_runs(batch)) == expected_changes
        assert blocking_store.run(store.get_run(key)) == folded
    assert folded is not None and folded == fold_runs(sequence)
    assert blocking_store.run(store.ref_states()) == [ref_state([folded])]


@PROPERTIES
@given(
    sequence=st.lists(updates(["1", "2", "3", "4", "5", "6"]), min_size=1, max_size=16),
    cuts=st.lists(st.integers(0, 16), max_size=4),
    cutoff=st.sampled_from([at(-1), at(5), at(10), at(10.5), at(15), at(30)]),
    data=st.data(),
)
def test_ref_states_history_and_prune(
    blocking_store: BlockingStore,
    sequence: list[Run],
    cuts: list[int],
    cutoff: datetime,
    data: st.DataObject,
) -> None:
    """Runs on a few refs (moving between refs too): ref states equal `state.ref_state`, history
    pages walk every run newest first, and prune keeps every ref state as it was."""
    blocking_store.clear()
    store = blocking_store.store
    shuffled = data.draw(st.permutations(sequence))
    for batch in batches(shuffled, cuts):
        blocking_store.run(store.upsert_runs(batch))

    # Folded in the order applied: two updates with the same version but different identity
    # values (which real providers never send) are the one case where order matters.
    by_key: dict[RunKey, list[Run]] = defaultdict(list)
    for update in shuffled:
        by_key[update.key].append(update)
    final = [fold_runs(group) for group in by_key.values()]
    runs = [run for run in final if run is not None]
    states = blocking_store.run(store.ref_states())
    assert states == expected_ref_states(runs)

    walked: list[Run] = []
    cursor = None
    while True:
        page = blocking_store.run(store.history(limit=2, cursor=cursor))
        walked.extend(page.runs)
        if page.next is None:
            break
        cursor = page.next
    assert walked == sorted(runs, key=ref_sort_key, reverse=True)

    deleted = blocking_store.run(store.prune(cutoff))
    remaining = blocking_store.run(store.history(limit=100)).runs
    assert deleted == len(runs) - len(remaining)
    gone = {run.key for run in runs} - {run.key for run in remaining}
    assert all(ref_sort_key(run)[0] < cutoff for run in runs if run.key in gone)
    assert blocking_store.run(store.ref_states()) == states
    assert expected_ref_states(remaining) == states
