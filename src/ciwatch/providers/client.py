"""The HTTP client of one configured source, as every poller factory builds it."""

from __future__ import annotations

from ciwatch.clock import Clock
from ciwatch.config.base import BaseSource
from ciwatch.config.models import CollectionSettings
from ciwatch.http import HttpClient, RequestRecorder


def source_client(
    settings: BaseSource,
    collection: CollectionSettings,
    clock: Clock,
    recorder: RequestRecorder | None,
    **kwargs: object,
) -> HttpClient:
    """An `HttpClient` for `settings` (its URL, rate, TLS choice) within `collection`'s limits;
    `kwargs` go to `HttpClient` (e.g. `headers`)."""
    return HttpClient(
        settings.name,
        str(settings.url),
        timeout=collection.timeout.total_seconds(),
        retries=collection.retries,
        requests_per_second=settings.requests_per_second,
        max_connections=collection.concurrency,
        verify_tls=settings.verify_tls,
        clock=clock,
        recorder=recorder,
        **kwargs,  # type: ignore[arg-type]
    )
