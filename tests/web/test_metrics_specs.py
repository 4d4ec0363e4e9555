"""The metric specs (docs/architecture.md#metrics): every per-ref family declares the inputs its
sampler reads, the render cache's key is derived from those declarations, so a value never goes
stale when only one input changes, and a sampler cannot read an input it did not declare."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import timedelta

import pytest

from ciwatch.domain import Status
from ciwatch.metrics import (
    GCPE_METRICS,
    GCPE_REF_FAMILIES,
    METRICS,
    READERS,
    REF_FAMILIES,
    CiwatchCollector,
    Input,
    MetricSpec,
    MetricsRenderer,
    RefView,
    Snapshot,
    SnapshotCache,
    UndeclaredInput,
    build_registry,
    render,
)
from ciwatch.metrics.spec import Family, RefContext, RenderOptions, families, read_inputs, sample
from ciwatch.selfmetrics import CollectionMetrics
from ciwatch.store import SqlStore
from factories import T0, at, make_job, make_run

from .harness import fill

PER_REF = [spec for spec in (*METRICS, *GCPE_METRICS) if spec.per_ref is not None]
NOT_PER_REF = tuple(spec for spec in METRICS if spec.per_ref is None)
MAIN = ("gitlab-main", "group/app", "main")


async def rich_snapshot(store: SqlStore) -> SnapshotCache:
    """The harness world, plus a merge request's two refs (one GCPE ref), test counts and a
    failed job allowed to fail on a passing run; refreshed with the run counts."""
    await fill(store)
    await store.upsert_runs(
        [
            make_run(run_id="80", ref="refs/merge-requests/8/head", created_at=at(800)),
            make_run(
                run_id="81",
                ref="refs/merge-requests/8/merge",
                created_at=at(810),
                tests_total=10,
                tests_failed=2,
                tests_skipped=1,
            ),
        ]
    )
    await store.upsert_jobs(
        [
            make_job(
                run_id="81",
                job_id="810",
                name="lint",
                stage="test",
                status=Status.FAILED,
                allow_failure=True,
                created_at=at(811),
            )
        ]
    )
    cache = SnapshotCache(store, lambda: T0 + timedelta(days=1), max_age=0.0)
    await cache.refresh()
    return cache


@pytest.mark.parametrize("spec", PER_REF, ids=[spec.name for spec in PER_REF])
def test_every_per_ref_spec_declares_inputs_the_key_builder_reads(spec: MetricSpec) -> None:
    assert spec.inputs, f"{spec.name} has a sampler but declares no input"
    assert len(set(spec.inputs)) == len(spec.inputs)
    missing = set(spec.inputs) - READERS.keys()
    assert not missing, f"{spec.name} reads {missing}, which the key builder does not read"


async def test_the_renderers_per_ref_families_are_the_specs_with_a_sampler(
    store: SqlStore,
) -> None:
    collector = CiwatchCollector(SnapshotCache(store, lambda: T0), CollectionMetrics())
    assert tuple(spec.name for spec in collector.ref_specs) == REF_FAMILIES
    assert "ci_pipeline_status" in REF_FAMILIES
    assert "ci_pipeline_runs_total" not in REF_FAMILIES
    assert tuple(spec.name for spec in GCPE_METRICS if spec.per_ref) == GCPE_REF_FAMILIES


def test_the_key_builder_reads_every_input_and_only_per_ref_specs_declare_inputs() -> None:
    assert set(READERS) == set(Input)
    for spec in (*METRICS, *GCPE_METRICS):
        if spec.per_ref is None:
            assert spec.inputs == (), spec.name


@pytest.mark.parametrize("sparse", [True, False])
async def test_each_sampler_reads_no_more_than_it_declares(store: SqlStore, sparse: bool) -> None:
    # Each sampler, over every ref of a varied snapshot, sees only its declared inputs (an
    # undeclared one raises) and writes what it writes when it may read everything.
    cache = await rich_snapshot(store)
    snap = cache.current
    assert snap is not None and snap.counts is not None
    ctx = RefContext(snap, RenderOptions(gcpe_sparse=sparse))
    written = 0
    for state in snap.refs:
        everything = RefView(read_inputs(tuple(Input), ctx, state))
        for spec in PER_REF:
            assert spec.per_ref is not None
            declared = families([spec])[spec.name]
            spec.per_ref(RefView(read_inputs(spec.inputs, ctx, state)), declared)
            full = families([spec])[spec.name]
            spec.per_ref(everything, full)
            assert declared.samples == full.samples, (spec.name, state.key)
            written += len(declared.samples)
    assert written > 100


async def test_a_sampler_reading_an_undeclared_input_is_refused(store: SqlStore) -> None:
    cache = await rich_snapshot(store)

    def reads_jobs(view: RefView, family: Family) -> None:
        sample(family, view.labels, float(len(view.jobs)))

    sneaky = MetricSpec("ci_test_probe", "gauge", "Probe.", ("x",), (Input.STATE,), reads_jobs)
    collector = CiwatchCollector(cache, CollectionMetrics(), specs=(*NOT_PER_REF, sneaky))
    with pytest.raises(UndeclaredInput, match="JOBS"):
        MetricsRenderer(collector).render()


# One probe per input: a sampler reading only that input, and a change of a snapshot that changes
# only that input of one ref (main), or of every ref for the collector's options.
Probe = Callable[[RefView], float]
Change = Callable[[Snapshot, CiwatchCollector], Snapshot]


def _main_state(snap: Snapshot) -> int:
    return next(i for i, s in enumerate(snap.refs) if (s.source, s.project, s.ref) == MAIN)


def _change_state(snap: Snapshot, collector: CiwatchCollector) -> Snapshot:
    refs = list(snap.refs)
    i = _main_state(snap)
    later = refs[i].last_run.updated_at + timedelta(seconds=5)
    refs[i] = dataclasses.replace(
        refs[i], last_run=dataclasses.replace(refs[i].last_run, updated_at=later)
    )
    return dataclasses.replace(snap, refs=tuple(refs))


def _change_finished(snap: Snapshot, collector: CiwatchCollector) -> Snapshot:
    key = snap.refs[_main_state(snap)].key
    run = snap.finished[key]
    finished = {**snap.finished, key: dataclasses.replace(run, duration_seconds=1234.0)}
    return dataclasses.replace(snap, finished=finished)


def _change_decisive(snap: Snapshot, collector: CiwatchCollector) -> Snapshot:
    key = snap.refs[_main_state(snap)].key
    run = snap.decisive[key]
    decisive = {**snap.decisive, key: dataclasses.replace(run, number=777)}
    return dataclasses.replace(snap, decisive=decisive)


def _change_jobs(snap: Snapshot, collector: CiwatchCollector) -> Snapshot:
    run_key = snap.refs[_main_state(snap)].last_run.key
    more = make_job(run_id=run_key.run_id, job_id="49", name="deploy", created_at=at(3009))
    jobs = {**snap.jobs, run_key: (*snap.jobs[run_key], more)}
    return dataclasses.replace(snap, jobs=jobs)


def _change_runs_ended(snap: Snapshot, collector: CiwatchCollector) -> Snapshot:
    assert snap.counts is not None
    key = next(k for k in snap.counts if (k.source, k.project, k.ref) == MAIN)
    return dataclasses.replace(snap, counts={**snap.counts, key: snap.counts[key] + 3})


def _change_options(snap: Snapshot, collector: CiwatchCollector) -> Snapshot:
    collector.gcpe_sparse = not collector.gcpe_sparse
    return dataclasses.replace(snap)  # a new snapshot, the same data


PROBES: dict[Input, tuple[Probe, Change]] = {
    Input.STATE: (lambda v: v.state.last_run.updated_at.timestamp(), _change_state),
    Input.FINISHED: (
        lambda v: (v.finished.duration_seconds or 0) if v.finished else -1,
        _change_finished,
    ),
    Input.DECISIVE: (
        lambda v: float(v.decisive.number or 0) if v.decisive else -1,
        _change_decisive,
    ),
    Input.JOBS: (lambda v: float(len(v.jobs)), _change_jobs),
    Input.RUNS_ENDED: (lambda v: float(v.runs_ended or 0), _change_runs_ended),
    Input.OPTIONS: (lambda v: float(v.options.gcpe_sparse), _change_options),
}


def probe_spec(which: Input, probe: Probe) -> MetricSpec:
    def write(view: RefView, family: Family) -> None:
        # Only the declared input, so no ref labels (every ref writes this one series).
        sample(family, {"input": which.value}, probe(view))

    return MetricSpec("ci_test_probe", "gauge", "Probe.", ("input",), (which,), write)


@pytest.mark.parametrize("which", list(Input), ids=[which.value for which in Input])
async def test_a_spec_reading_one_input_follows_a_change_of_only_that_input(
    store: SqlStore, which: Input
) -> None:
    assert set(PROBES) == set(Input)
    cache = await rich_snapshot(store)
    probe, change = PROBES[which]
    collector = CiwatchCollector(
        cache, CollectionMetrics(), specs=(*NOT_PER_REF, probe_spec(which, probe))
    )
    renderer = MetricsRenderer(collector)
    before = renderer.render()
    assert before == render(build_registry(collector))
    assert cache.current is not None
    refs, rendered = len(cache.current.refs), renderer.rendered_refs
    assert rendered == refs
    cache.current = change(cache.current, collector)
    after = renderer.render()
    # Not stale: the body is what the collector says now, and it changed.
    assert after == render(build_registry(collector))
    assert after != before
    # Only the refs whose input changed were rendered again (every ref for the options).
    assert renderer.rendered_refs - rendered == (refs if which is Input.OPTIONS else 1)


async def test_an_input_no_family_declares_changes_no_block(store: SqlStore) -> None:
    # No shipped per-ref family reads the decisive run: changing it renders no ref again.
    assert all(Input.DECISIVE not in spec.inputs for spec in PER_REF)
    cache = await rich_snapshot(store)
    renderer = MetricsRenderer(CiwatchCollector(cache, CollectionMetrics(), gcpe=True))
    before = renderer.render()
    rendered = renderer.rendered_refs
    assert cache.current is not None
    cache.current = _change_decisive(cache.current, renderer.collector)
    assert renderer.render() == before
    assert renderer.rendered_refs == rendered
