"""`/metrics` (docs/architecture.md#metrics), split by reason to change:

- `spec.py`: what is exposed, one `MetricSpec` per family; a per-ref family's sampler and the
  inputs it reads (`Input`), from which the render cache's key is derived;
- `snapshot.py`: the snapshot of the store (`Snapshot`, `SnapshotCache`) and source health;
- `collector.py`: the Prometheus collector (`CiwatchCollector`) writing every family;
- `exposition.py`: the text format (`render`), `MetricsRenderer` and its per-ref cache, gzip;
- `gcpe.py`: the GitLab-exporter-compatible family (`metrics.gcpe_compatible`).

The names below load lazily (`ciwatch.lazy`): importing one submodule imports only what it
needs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ciwatch.lazy import exports

if TYPE_CHECKING:
    from ciwatch.metrics.collector import (
        CiwatchCollector,
        build_registry,
    )
    from ciwatch.metrics.exposition import (
        CONTENT_TYPE,
        GZIP_LEVEL,
        MetricsRenderer,
        render,
    )
    from ciwatch.metrics.gcpe import (
        GCPE_BARE_COUNTERS,
        GCPE_EXPORTED,
        GCPE_JOB_LABELS,
        GCPE_LABELS,
        GCPE_METRIC_NAMES,
        GCPE_METRICS,
        GCPE_NOT_PROVIDED,
        GCPE_REF_FAMILIES,
        GCPE_REF_SPECS,
        GCPE_STATUSES,
        GITLAB,
        gcpe_kind_ref,
        gcpe_owners,
    )
    from ciwatch.metrics.snapshot import (
        RECOVERY_BUCKETS,
        FlakyKey,
        Monotonic,
        ProjectKey,
        RecoveryHistogram,
        Snapshot,
        SnapshotCache,
        recovery_histograms,
        source_health,
    )
    from ciwatch.metrics.spec import (
        FLAKY_LABELS,
        JOB_LABELS,
        METRIC_NAMES,
        METRICS,
        PROJECT_LABELS,
        READERS,
        REF_FAMILIES,
        REF_LABELS,
        Families,
        Input,
        MetricSpec,
        RefView,
        RenderOptions,
        UndeclaredInput,
        test_counts,
    )

_EXPORTS = {
    "CONTENT_TYPE": "exposition",
    "CiwatchCollector": "collector",
    "FLAKY_LABELS": "spec",
    "Families": "spec",
    "FlakyKey": "snapshot",
    "GCPE_BARE_COUNTERS": "gcpe",
    "GCPE_EXPORTED": "gcpe",
    "GCPE_JOB_LABELS": "gcpe",
    "GCPE_LABELS": "gcpe",
    "GCPE_METRICS": "gcpe",
    "GCPE_METRIC_NAMES": "gcpe",
    "GCPE_NOT_PROVIDED": "gcpe",
    "GCPE_REF_FAMILIES": "gcpe",
    "GCPE_REF_SPECS": "gcpe",
    "GCPE_STATUSES": "gcpe",
    "GITLAB": "gcpe",
    "GZIP_LEVEL": "exposition",
    "Input": "spec",
    "JOB_LABELS": "spec",
    "METRICS": "spec",
    "METRIC_NAMES": "spec",
    "MetricSpec": "spec",
    "MetricsRenderer": "exposition",
    "Monotonic": "snapshot",
    "PROJECT_LABELS": "spec",
    "ProjectKey": "snapshot",
    "READERS": "spec",
    "RECOVERY_BUCKETS": "snapshot",
    "REF_FAMILIES": "spec",
    "REF_LABELS": "spec",
    "RecoveryHistogram": "snapshot",
    "RefView": "spec",
    "RenderOptions": "spec",
    "Snapshot": "snapshot",
    "SnapshotCache": "snapshot",
    "UndeclaredInput": "spec",
    "build_registry": "collector",
    "gcpe_kind_ref": "gcpe",
    "gcpe_owners": "gcpe",
    "recovery_histograms": "snapshot",
    "render": "exposition",
    "source_health": "snapshot",
    "test_counts": "spec",
}
__all__ = [
    "CONTENT_TYPE",
    "FLAKY_LABELS",
    "GCPE_BARE_COUNTERS",
    "GCPE_EXPORTED",
    "GCPE_JOB_LABELS",
    "GCPE_LABELS",
    "GCPE_METRICS",
    "GCPE_METRIC_NAMES",
    "GCPE_NOT_PROVIDED",
    "GCPE_REF_FAMILIES",
    "GCPE_REF_SPECS",
    "GCPE_STATUSES",
    "GITLAB",
    "GZIP_LEVEL",
    "JOB_LABELS",
    "METRICS",
    "METRIC_NAMES",
    "PROJECT_LABELS",
    "READERS",
    "RECOVERY_BUCKETS",
    "REF_FAMILIES",
    "REF_LABELS",
    "CiwatchCollector",
    "Families",
    "FlakyKey",
    "Input",
    "MetricSpec",
    "MetricsRenderer",
    "Monotonic",
    "ProjectKey",
    "RecoveryHistogram",
    "RefView",
    "RenderOptions",
    "Snapshot",
    "SnapshotCache",
    "UndeclaredInput",
    "build_registry",
    "gcpe_kind_ref",
    "gcpe_owners",
    "recovery_histograms",
    "render",
    "source_health",
    "test_counts",
]
__getattr__ = exports(__name__, _EXPORTS)
