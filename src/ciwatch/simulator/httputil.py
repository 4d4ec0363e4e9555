"""What the three fake APIs share: JSON bodies, time formats, paging, request counters."""

from __future__ import annotations

from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Generic, TypeVar

import msgspec
from aiohttp import web
from yarl import URL

from ciwatch.simulator.plans import RunPlan
from ciwatch.simulator.timeline import Timeline
from ciwatch.timeutil import parse_time

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)
_encoder = msgspec.json.Encoder()
T = TypeVar("T")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class BadParam(Exception):
    """A query parameter the real API would reject; the message names it."""


class Missing(Exception):
    """Nothing there: each API answers its own 404 (the message is GitLab's wording)."""


def encode(data: Any) -> bytes:
    return _encoder.encode(data)


def json_response(
    data: Any, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    return web.Response(
        body=encode(data), status=status, headers=headers, content_type="application/json"
    )


def as_datetime(epoch_ms: int) -> datetime:
    return _EPOCH + timedelta(milliseconds=epoch_ms)


def gitlab_time(epoch_ms: int | None) -> str | None:
    """GitLab API style: `2022-09-21T01:05:07.200Z`."""
    if epoch_ms is None:
        return None
    return as_datetime(epoch_ms).strftime("%Y-%m-%dT%H:%M:%S.") + f"{epoch_ms % 1000:03d}Z"


def github_time(epoch_ms: int | None) -> str | None:
    """GitHub API style: `2020-01-22T19:33:08Z` (whole seconds)."""
    if epoch_ms is None:
        return None
    return as_datetime(epoch_ms).strftime("%Y-%m-%dT%H:%M:%SZ")


def offset_time(epoch_ms: int | None) -> str | None:
    """Milliseconds and a numeric offset, as GitLab commits and GitHub steps show them."""
    if epoch_ms is None:
        return None
    return as_datetime(epoch_ms).strftime("%Y-%m-%dT%H:%M:%S.") + f"{epoch_ms % 1000:03d}+00:00"


def int_param(request: web.Request, name: str, default: int, lo: int, hi: int | None) -> int:
    """An integer query parameter; above `hi` it is clamped (as GitLab and GitHub do)."""
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise BadParam(f"{name} is invalid") from None
    if value < lo:
        raise BadParam(f"{name} is invalid")
    return min(value, hi) if hi is not None else value


def time_param(
    request: web.Request, name: str, start: datetime, *, round_up: bool = False
) -> int | None:
    """An ISO 8601 query parameter as scenario milliseconds (rounded down, or up)."""
    raw = request.query.get(name)
    if not raw:
        return None
    try:
        moment = parse_time(raw)
    except ValueError:
        raise BadParam(f"{name} is invalid") from None
    if moment is None:
        return None
    whole, rest = divmod(moment - start, _MS)
    return whole + 1 if round_up and rest else whole


@dataclass
class Page(Generic[T]):
    items: list[T]
    total: int
    page: int
    per_page: int

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.per_page))


def page_of(request: web.Request, rows: Sequence[T], default_per_page: int) -> Page[T]:
    """The page of `rows` that `page` and `per_page` (at most 100) ask for."""
    per_page = int_param(request, "per_page", default_per_page, 1, 100)
    page = int_param(request, "page", 1, 1, None)
    chosen = list(rows[(page - 1) * per_page : page * per_page])
    return Page(chosen, len(rows), page, per_page)


def page_runs(
    timeline: Timeline,
    now: int,
    *,
    page: int,
    per_page: int,
    newest_first: bool = True,
    keep: Callable[[RunPlan], bool] | None = None,
    after: int | None = None,
    before: int | None = None,
    by_updated: bool = False,
) -> Page[RunPlan]:
    """One page of a timeline's visible runs, ordered by id (or by last update).

    Without filters this is index arithmetic; `after` (updated after, exclusive) looks only at
    runs that can have changed since then; other filters scan the retained runs.
    """
    window = timeline.visible(now)
    start = (page - 1) * per_page
    if keep is None and after is None and before is None and not by_updated:
        ordered = window[::-1] if newest_first else window
        items = [timeline.plan(n) for n in ordered[start : start + per_page]]
        return Page(items, len(window), page, per_page)
    candidates: Sequence[int] = window if after is None else timeline.changed_after(after, now)
    found: list[tuple[int, int, RunPlan]] = []
    for n in candidates:
        plan = timeline.plan(n)
        updated = plan.updated(now)
        if after is not None and updated <= after:
            continue
        if before is not None and updated >= before:
            continue
        if keep is not None and not keep(plan):
            continue
        found.append((updated if by_updated else n, n, plan))
    found.sort(key=lambda row: (row[0], row[1]), reverse=newest_first)
    return Page([row[2] for row in found[start : start + per_page]], len(found), page, per_page)


def page_links(url: URL, page: int, pages: int, *, always_first_last: bool = True) -> str:
    """An RFC 8288 `Link` value: prev/next, and first/last (GitLab always sends both; GitHub
    only those that lead somewhere else)."""
    rels: list[tuple[str, int]] = []
    if page > 1:
        rels.append(("prev", page - 1))
    if page < pages:
        rels.append(("next", page + 1))
    if always_first_last or page > 1:
        rels.append(("first", 1))
    if always_first_last or page < pages:
        rels.append(("last", pages))
    return ", ".join(f'<{url.update_query(page=str(n))}>; rel="{rel}"' for rel, n in rels)


@dataclass
class Stats:
    """Request counters for tests and benchmarks: every request, by provider, by path (without
    query), by status, and the 304s (which cost no rate limit)."""

    total: int = 0
    by_provider: Counter[str] = field(default_factory=Counter)
    by_path: Counter[str] = field(default_factory=Counter)
    by_status: Counter[int] = field(default_factory=Counter)
    not_modified: int = 0
    not_modified_by_provider: Counter[str] = field(default_factory=Counter)

    def count(self, provider: str | None, path: str, status: int) -> None:
        self.total += 1
        self.by_provider[provider or "other"] += 1
        self.by_path[path] += 1
        self.by_status[status] += 1
        if status == 304:
            self.not_modified += 1
            self.not_modified_by_provider[provider or "other"] += 1

    def reset(self) -> None:
        self.total = 0
        self.not_modified = 0
        for counter in (self.by_provider, self.by_path, self.by_status):
            counter.clear()
        self.not_modified_by_provider.clear()

    def snapshot(self) -> dict[str, Any]:
        return {
            "total": self.total,
            "by_provider": dict(self.by_provider),
            "by_status": {str(k): v for k, v in self.by_status.items()},
            "not_modified": self.not_modified,
            "not_modified_by_provider": dict(self.not_modified_by_provider),
            "by_path": dict(self.by_path),
        }
