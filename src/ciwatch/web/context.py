"""What a request handler reads from the app: the runtime, and what it owns (the metrics
snapshot). `create_app` puts the runtime on `app.state`; these accessors give it its type back.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

from starlette.requests import HTTPConnection

if TYPE_CHECKING:
    from ciwatch.metrics import SnapshotCache
    from ciwatch.runtime import Runtime


def runtime_of(request: HTTPConnection) -> Runtime:
    """The `Runtime` the app was built with (`app.state.runtime`)."""
    return cast("Runtime", request.app.state.runtime)


def snapshot_cache_of(request: HTTPConnection) -> SnapshotCache:
    """The runtime's metrics snapshot (`Runtime.snapshot`), shared by /metrics and /cc.xml."""
    return runtime_of(request).snapshot
