"""One registry dict, source type → provider factory; `build_provider` wires the HTTP client."""

from __future__ import annotations

from collections.abc import Callable

from ciwatch.clock import Clock
from ciwatch.config import (
    CollectionSettings,
    GitHubSource,
    GitLabSource,
    JenkinsSource,
    SourceSettings,
)
from ciwatch.http import HttpClient, RequestRecorder
from ciwatch.providers.base import Provider
from ciwatch.providers.github_poll import GitHubProvider
from ciwatch.providers.gitlab_poll import GitLabProvider
from ciwatch.providers.jenkins_poll import JenkinsProvider, basic_auth_headers


def _client(
    settings: SourceSettings,
    collection: CollectionSettings,
    clock: Clock,
    recorder: RequestRecorder | None,
    **kwargs: object,
) -> HttpClient:
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


def _gitlab(
    settings: SourceSettings,
    collection: CollectionSettings,
    clock: Clock,
    recorder: RequestRecorder | None,
) -> Provider:
    assert isinstance(settings, GitLabSource)
    headers = {"PRIVATE-TOKEN": settings.token} if settings.token else {}
    return GitLabProvider(
        settings, _client(settings, collection, clock, recorder, headers=headers), clock
    )


def _github(
    settings: SourceSettings,
    collection: CollectionSettings,
    clock: Clock,
    recorder: RequestRecorder | None,
) -> Provider:
    assert isinstance(settings, GitHubSource)
    headers = {"Accept": "application/vnd.github+json", "X-GitHub-Api-Version": "2022-11-28"}
    if settings.token:
        headers["Authorization"] = f"Bearer {settings.token}"
    return GitHubProvider(
        settings, _client(settings, collection, clock, recorder, headers=headers), clock
    )


def _jenkins(
    settings: SourceSettings,
    collection: CollectionSettings,
    clock: Clock,
    recorder: RequestRecorder | None,
) -> Provider:
    assert isinstance(settings, JenkinsSource)
    headers = basic_auth_headers(settings)
    return JenkinsProvider(
        settings, _client(settings, collection, clock, recorder, headers=headers), clock
    )


Factory = Callable[[SourceSettings, CollectionSettings, Clock, RequestRecorder | None], Provider]
PROVIDERS: dict[str, Factory] = {"gitlab": _gitlab, "github": _github, "jenkins": _jenkins}


def build_provider(
    settings: SourceSettings,
    collection: CollectionSettings,
    clock: Clock,
    recorder: RequestRecorder | None = None,
) -> Provider:
    """The provider for one configured source."""
    return PROVIDERS[settings.type](settings, collection, clock, recorder)
