"""The text of `/metrics`: Prometheus' text format 0.0.4 (`render`), and `MetricsRenderer`,
which writes the same text keeping what did not change between scrapes (docs/metrics.md).
"""

from __future__ import annotations

import gzip
import threading
from collections.abc import Callable

from prometheus_client import CollectorRegistry
from prometheus_client.core import Metric
from prometheus_client.utils import floatToGoString

from ciwatch.domain import RefKey
from ciwatch.metrics.collector import CiwatchCollector
from ciwatch.metrics.gcpe import GCPE_BARE_COUNTERS, GCPE_METRICS, GCPE_REF_SPECS, gcpe_owners
from ciwatch.metrics.snapshot import Snapshot
from ciwatch.metrics.spec import (
    RefContext,
    RefView,
    add_ref,
    families,
    inputs_of,
    read_inputs,
)

# The classic text format: every name here is a legacy Prometheus name, and Prometheus 2.x
# servers parse it (prometheus_client's default now announces the 1.0.0 text format).
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# Fast: a /metrics body is megabytes at thousands of refs, compressed once per body.
GZIP_LEVEL = 1


def _number(value: float) -> str:
    """A sample value as Prometheus writes it (`+Inf`, `NaN`, Go's float formatting)."""
    return str(floatToGoString(value))  # type: ignore[no-untyped-call]


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _header(family: Metric) -> str:
    if family.type not in ("gauge", "counter", "histogram"):
        raise ValueError(f"cannot render a {family.type} ({family.name})")
    # GCPE's counters have no `_total` (its dashboards query the bare names).
    bare = family.name in GCPE_BARE_COUNTERS
    name = family.name + "_total" if family.type == "counter" and not bare else family.name
    doc = family.documentation.replace("\\", "\\\\").replace("\n", "\\n")
    return f"# HELP {name} {doc}\n# TYPE {name} {family.type}\n"


def _samples(family: Metric, escape: Callable[[str], str] = _escape) -> str:
    out: list[str] = []
    for sample in family.samples:
        if sample.labels:
            pairs = ",".join(f'{k}="{escape(v)}"' for k, v in sample.labels.items())
            out.append(f"{sample.name}{{{pairs}}} {_number(sample.value)}\n")
        else:
            out.append(f"{sample.name} {_number(sample.value)}\n")
    return "".join(out)


def render(registry: CollectorRegistry) -> bytes:
    """The Prometheus text exposition (format 0.0.4, see CONTENT_TYPE) of `registry`'s gauges
    and counters.

    `prometheus_client.generate_latest` writes the same text, but re-validates every label name
    of every sample: over 5,000 refs with 5 jobs each (260,000 samples) it took seconds. Here the
    label names are ours (valid by construction) and each distinct label value is escaped once.
    Safe to run in a worker thread: it reads the immutable snapshot and copies of the counters.
    `MetricsRenderer` writes the same text and keeps the lines of unchanged refs.
    """
    escaped: dict[str, str] = {}

    def escape(value: str) -> str:
        found = escaped.get(value)
        if found is None:
            found = escaped[value] = _escape(value)
        return found

    return "".join(
        _header(family) + _samples(family, escape) for family in registry.collect()
    ).encode("utf-8")


class MetricsRenderer:
    """`/metrics` as `render(build_registry(collector))` writes it, with the text of each
    project/ref kept between scrapes while its inputs are unchanged, so a scrape renders only
    the refs that changed: most of the samples at thousands of refs. A ref's inputs are those
    its per-ref families declare (`MetricSpec.inputs`, read by `spec.READERS`): the cache key
    follows the specs. Thread-safe (scrapes render in worker threads, one at a time).
    """

    def __init__(self, collector: CiwatchCollector) -> None:
        self.collector = collector
        self._lock = threading.Lock()
        self._refs: dict[RefKey, tuple[tuple[object, ...], tuple[str, ...]]] = {}
        self._owners: frozenset[RefKey] = frozenset()
        self._gcpe_lines: dict[RefKey, int] = {}  # GCPE samples per ref block
        self._gcpe_parts: dict[str, bytes] = {}  # per snapshot: each per-ref GCPE family's text
        self.rendered_refs = 0  # how many ref blocks were (re)rendered, for tests
        # Per snapshot (by identity: the cache swaps in a new object on every refresh), each
        # family's header and snapshot-derived samples as bytes; per scrape only the in-memory
        # counters are written. The whole body, and its gzip, are kept while neither changed.
        self._snap: Snapshot | None = None
        self._parts: tuple[bytes, ...] = ()
        self._body: tuple[Snapshot | None, tuple[bytes, ...], bytes] | None = None
        self._gzipped: tuple[bytes, bytes] | None = None
        self.snapshot_renders = 0  # snapshots rendered, for tests
        self.body_renders = 0  # bodies assembled (a counter moved or a new snapshot), for tests

    def render(self) -> bytes:
        with self._lock:
            return self._render_cached()

    def render_gzip(self) -> bytes:
        """`render()` compressed with gzip, compressed once per distinct body."""
        with self._lock:
            body = self._render_cached()
            if self._gzipped is None or self._gzipped[0] is not body:
                self._gzipped = (body, gzip.compress(body, compresslevel=GZIP_LEVEL))
            return self._gzipped[1]

    def _render_cached(self) -> bytes:
        collector = self.collector
        specs = collector.specs
        snap = collector.cache.current
        if snap is None or snap is not self._snap:
            self._parts = self._snapshot_parts(snap)
            self._snap = snap
            self.snapshot_renders += 1
        own = families(specs)
        collector.add_self(own, snap)
        counters = tuple(_samples(own[spec.name]).encode("utf-8") for spec in specs)
        if collector.gcpe:
            counters += (self._gcpe(snap),)
        if self._body is not None and self._body[0] is snap and self._body[1] == counters:
            return self._body[2]
        body = b"".join(
            part + mine for part, mine in zip(self._parts, counters[: len(specs)], strict=True)
        )
        body += b"".join(counters[len(specs) :])
        self._body = (snap, counters, body)
        self.body_renders += 1
        return body

    def _snapshot_parts(self, snap: Snapshot | None) -> tuple[bytes, ...]:
        collector = self.collector
        own = families(collector.specs)
        blocks: list[tuple[str, ...]] = []
        if snap is not None:
            blocks = self._ref_blocks(snap)
            collector.add_snapshot(own, snap)
        self._gcpe_parts = self._gcpe_ref_parts(blocks) if collector.gcpe else {}
        index = {spec.name: i for i, spec in enumerate(collector.ref_specs)}
        parts: list[bytes] = []
        for spec in collector.specs:
            family = own[spec.name]
            at = index.get(spec.name)
            text = _samples(family) if at is None else "".join(block[at] for block in blocks)
            parts.append((_header(family) + text).encode("utf-8"))
        return tuple(parts)

    def _gcpe_ref_parts(self, blocks: list[tuple[str, ...]]) -> dict[str, bytes]:
        """Per snapshot: the text of each per-ref GCPE family (its header and every ref's part)."""
        start = len(self.collector.ref_specs)
        gcpe = families(GCPE_REF_SPECS)
        return {
            spec.name: (
                _header(gcpe[spec.name]) + "".join(block[start + index] for block in blocks)
            ).encode("utf-8")
            for index, spec in enumerate(GCPE_REF_SPECS)
        }

    def _gcpe(self, snap: Snapshot | None) -> bytes:
        """Per scrape: the text of GCPE_METRICS, the per-ref families kept per snapshot and the
        gcpe_* gauges (API requests and budget move between snapshots) written anew."""
        collector = self.collector
        gcpe = families(GCPE_METRICS)
        owners = self._owners if snap is not None else frozenset()
        exported = sum(self._gcpe_lines.values()) if snap is not None else 0
        collector.add_gcpe_self(gcpe, snap, owners, exported)
        out: list[bytes] = []
        for spec in GCPE_METRICS:
            cached = self._gcpe_parts.get(spec.name)
            if cached is not None:
                out.append(cached)
            else:
                family = gcpe[spec.name]
                out.append((_header(family) + _samples(family)).encode("utf-8"))
        return b"".join(out)

    def _ref_blocks(self, snap: Snapshot) -> list[tuple[str, ...]]:
        collector = self.collector
        kept: dict[RefKey, tuple[tuple[object, ...], tuple[str, ...]]] = {}
        blocks: list[tuple[str, ...]] = []
        ref_specs = collector.ref_specs
        owner_specs = (*ref_specs, *GCPE_REF_SPECS)
        # A ref's block is keyed by the values of the inputs its families declare: those of
        # the per-ref specs, and for a GCPE ref those of the GCPE specs as well.
        plain_inputs, owner_inputs = inputs_of(ref_specs), inputs_of(owner_specs)
        no_gcpe = ("",) * len(GCPE_REF_SPECS)
        ctx = RefContext(snap, collector.options)
        # Which GitLab refs carry the GCPE series depends on the other refs (two refs may map
        # to one GCPE ref): decided for the whole snapshot, then a part of each block's key.
        self._owners = owners = gcpe_owners(snap) if collector.gcpe else frozenset()
        lines: dict[RefKey, int] = {}
        for state in snap.refs:
            key = state.key
            owner = key in owners
            values = read_inputs(owner_inputs if owner else plain_inputs, ctx, state)
            inputs = (owner, *values.values())
            cached = self._refs.get(key)
            cached_block = cached[1] if cached is not None else None
            if cached is not None and cached[0] == inputs:
                block = cached[1]
            else:
                specs = owner_specs if owner else ref_specs
                written = families(specs)
                add_ref(written, specs, RefView(values))
                block = tuple(_samples(written[spec.name]) for spec in specs)
                if not owner:
                    block += no_gcpe
                self.rendered_refs += 1
            if owner:
                counted = self._gcpe_lines.get(key) if block is cached_block else None
                if counted is None:
                    counted = sum(part.count("\n") for part in block[len(ref_specs) :])
                lines[key] = counted
            kept[key] = (inputs, block)
            blocks.append(block)
        self._refs = kept
        self._gcpe_lines = lines
        return blocks
