"""What a request handler reads from the app: the runtime and the metrics snapshot.

`create_app` puts them on `app.state`; these accessors give them their types back.
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
    """The app's metrics snapshot (`app.state.metrics_cache`), shared by /metrics and /cc.xml."""
    return cast("SnapshotCache", request.app.state.metrics_cache)
