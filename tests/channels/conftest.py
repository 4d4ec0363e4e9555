"""Fixtures: notices and messages, one aiohttp session, and each local receiver started and
stopped around a test."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import aiohttp
import pytest

from ciwatch.channels import Message, Notice
from ciwatch.domain import Status
from factories import make_run

from .harness import (
    Certificates,
    DingTalkRobot,
    FeishuBot,
    Receiver,
    SlackWebhook,
    SmtpServer,
    WebhookReceiver,
    WeComRobot,
)

RUN_URL = "https://gitlab.example.com/group/app/-/pipelines/1001"
DASHBOARD = "https://ciwatch.example.com/projects/gitlab-main/group/app"

HOSTILE = {
    "project": "<script>alert(1)</script>/*bold*",
    "ref": "[x](javascript:alert(1))",
    "author": "<!channel> <@U123>",
    "job": "`rm -rf /` _it_ ~gone~ | <b>x</b>",
    "workflow": "<http://evil.example|click>",
}


def notice(kind: str = "broken", **overrides: Any) -> Notice:
    """A notice about group/app on main, run #17 failed with jobs test and lint."""
    run_fields = overrides.pop("run_fields", {})
    run = make_run(**{"status": Status.FAILED, "provider_status": "failed", **run_fields})
    values: dict[str, Any] = {
        "kind": kind,
        "source": "gitlab-main",
        "project": "group/app",
        "ref": "main",
        "run": run,
        "failing_jobs": ("test", "lint") if kind in ("broken", "still_failing") else (),
        "fingerprint": f"{kind}:gitlab-main:group/app:main",
        "dashboard_url": DASHBOARD,
    }
    if kind == "recovered":
        values["run"] = make_run(**{"status": Status.SUCCESS, **run_fields})
        values["red_for"] = timedelta(hours=2, minutes=3)
    if kind in ("stuck", "queued"):
        active = {
            "status": Status.RUNNING if kind == "stuck" else Status.QUEUED,
            "provider_status": "running" if kind == "stuck" else "pending",
            "finished_at": None,
            "duration_seconds": None,
        }
        values["run"] = make_run(**{**active, **run_fields})
        values["red_for"] = timedelta(hours=1, minutes=5)
    values.update(overrides)
    return Notice(**values)


def single(kind: str = "broken", **overrides: Any) -> Message:
    return Message((notice(kind, **overrides),))


def hostile() -> Message:
    return single(
        "broken",
        project=HOSTILE["project"],
        ref=HOSTILE["ref"],
        failing_jobs=(HOSTILE["job"],),
        run_fields={
            "author": HOSTILE["author"],
            "workflow": HOSTILE["workflow"],
            "url": "javascript:alert(1)",
        },
    )


def grouped(count: int, kind: str = "broken", group: str = "group/*") -> Message:
    notices = tuple(
        notice(
            kind,
            project=f"group/app-{index}",
            run_fields={"run_id": str(2000 + index), "number": 100 + index},
        )
        for index in range(count)
    )
    return Message(notices, group=group)


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


async def _serve(receiver: Receiver) -> AsyncIterator[Any]:
    await receiver.start()
    try:
        yield receiver
    finally:
        await receiver.stop()


@pytest.fixture
async def dingtalk() -> AsyncIterator[DingTalkRobot]:
    async for robot in _serve(DingTalkRobot()):
        yield robot


@pytest.fixture
async def dingtalk_signed() -> AsyncIterator[DingTalkRobot]:
    async for robot in _serve(DingTalkRobot(secret="SECding+secret/with=chars")):
        yield robot


@pytest.fixture
async def feishu() -> AsyncIterator[FeishuBot]:
    async for bot in _serve(FeishuBot()):
        yield bot


@pytest.fixture
async def wecom() -> AsyncIterator[WeComRobot]:
    async for robot in _serve(WeComRobot()):
        yield robot


@pytest.fixture
async def slack() -> AsyncIterator[SlackWebhook]:
    async for hook in _serve(SlackWebhook()):
        yield hook


@pytest.fixture
async def receiver() -> AsyncIterator[WebhookReceiver]:
    async for hook in _serve(WebhookReceiver(secret="hook-secret")):
        yield hook


@pytest.fixture
async def json_target() -> AsyncIterator[WebhookReceiver]:
    async for hook in _serve(WebhookReceiver()):
        yield hook


@pytest.fixture(scope="session")
def certificates() -> Certificates:
    return Certificates()


async def _smtp(server: SmtpServer) -> AsyncIterator[SmtpServer]:
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


@pytest.fixture
async def smtp_starttls(certificates: Certificates) -> AsyncIterator[SmtpServer]:
    async for server in _smtp(SmtpServer("starttls", certificates, users={"ci": "s3cret:/@"})):
        yield server


@pytest.fixture
async def smtp_implicit(certificates: Certificates) -> AsyncIterator[SmtpServer]:
    async for server in _smtp(SmtpServer("implicit", certificates, users={"ci": "s3cret"})):
        yield server


@pytest.fixture
async def smtp_plain(certificates: Certificates) -> AsyncIterator[SmtpServer]:
    async for server in _smtp(SmtpServer("plain", certificates, users={"ci": "s3cret"})):
        yield server
