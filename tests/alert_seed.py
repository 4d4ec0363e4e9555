"""Alerts and outbox rows written straight into a store, for the alert views of the API, the
CLI and the dashboard: two firing alerts (one with a sent, a failed and a retrying channel) and
one resolved."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from ciwatch.store import SqlStore
from ciwatch.store.tables import alerts, outbox
from factories import at

DINGTALK_ERROR = "errcode 310000: <keywords> not in content"


def _alert(
    rule: str, source: str, project: str, ref: str, state: str, first: float, last: float
) -> dict[str, Any]:
    return {
        "rule": rule,
        "source": source,
        "project": project,
        "ref": ref,
        "state": state,
        "first_seen": at(first),
        "last_seen": at(last),
        "last_notified": at(first),
        "payload": {},
    }


def _notice(
    fingerprint: str,
    channel: str,
    kind: str,
    created: float,
    *,
    sent: datetime | None = None,
    failed: datetime | None = None,
    error: str | None = None,
    attempts: int = 1,
) -> dict[str, Any]:
    return {
        "dedup_key": f"{fingerprint}:{kind}:{created}",
        "fingerprint": fingerprint,
        "channel": channel,
        "payload": {"kind": kind, "fingerprint": fingerprint},
        "attempts": attempts,
        "next_attempt_at": at(created + 30),
        "created_at": at(created),
        "sent_at": sent,
        "failed_at": failed,
        "last_error": error,
    }


async def seed_alerts(store: SqlStore) -> None:
    app = "broken:gitlab-main:group/app:main"
    repo = "broken:gh:octo/repo:dev"
    rows = [
        _alert("broken", "gitlab-main", "group/app", "main", "firing", 0, 200),
        _alert("broken", "gh", "octo/repo", "dev", "resolved", 10, 100),
        _alert("stuck", "jenkins", "folder/<b>job</b>", "", "firing", 50, 200),
    ]
    notices = [
        _notice(app, "slack", "broken", 0, sent=at(31)),
        _notice(app, "dingtalk", "broken", 0, failed=at(40), error=DINGTALK_ERROR, attempts=2),
        _notice(app, "hook", "broken", 0, error="timed out", attempts=3),
        _notice(repo, "slack", "broken", 10, sent=at(41)),
        _notice(repo, "slack", "recovered", 100, sent=at(131)),
    ]

    async def work(conn: AsyncConnection) -> None:
        await conn.execute(insert(alerts), rows)
        await conn.execute(insert(outbox), notices)

    await store.write("seed alerts", work)
