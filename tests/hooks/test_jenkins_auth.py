"""How the Jenkins Notification plugin can authenticate, and its XML format refused with a hint.

Facts from `jenkinsci/notification-plugin` (`Protocol.HTTP`, `Format`): credentials written in
the endpoint URL (`https://user:secret@host/...`) are sent as `Authorization: Basic
base64(<user-info as written>)`, and the body is `application/json;charset=UTF-8` (Gson) or
`application/xml;charset=UTF-8` (XStream, root element `job`)."""

from __future__ import annotations

import base64

import aiohttp
import pytest

from ciwatch.clock import FakeClock
from ciwatch.domain import RunKey, Status
from ciwatch.runtime import Runtime
from ciwatch.selfmetrics import CollectionMetrics
from ciwatch.store import Store

from .conftest import NOW, SECRETS, Server, build_app, serving, settings
from .payloads import fixture

JSON = "application/json;charset=UTF-8"  # what the plugin sends
KEY = RunKey("jk", "asgard", "18")


def basic(user_info: str) -> dict[str, str]:
    token = base64.b64encode(user_info.encode()).decode()
    return {"Authorization": f"Basic {token}", "Content-Type": JSON}


@pytest.mark.parametrize(
    "user_info",
    [f"ciwatch:{SECRETS['jk']}", f"anyone:{SECRETS['jk']}", f":{SECRETS['jk']}", SECRETS["jk"]],
)
async def test_basic_credentials_from_the_endpoint_url_are_accepted(
    server: Server, user_info: str
) -> None:
    body = fixture("jenkins/webhooks/notification-plugin.completed.json")
    status, answer = await server.post("/hooks/jenkins/jk", body, basic(user_info))
    assert status == 202, answer
    assert answer["status"] == "accepted"
    run = await server.runtime.store.get_run(KEY)
    assert run is not None and run.status is Status.SUCCESS


async def test_a_percent_escaped_secret_in_the_url_is_decoded(store: Store) -> None:
    config = settings().model_copy(deep=True)
    config.sources[:] = [
        s.model_copy(update={"webhook_secret": "p@ss:w/rd"}) if s.name == "jk" else s
        for s in config.sources
    ]
    runtime = Runtime(config, store, FakeClock(NOW), CollectionMetrics())
    app = build_app(runtime)
    body = fixture("jenkins/webhooks/notification-plugin.completed.json")
    async with serving(app) as url, aiohttp.ClientSession() as http:
        server = Server(url, runtime, http, app)
        status, answer = await server.post("/hooks/jenkins/jk", body, basic("u:p%40ss%3Aw%2Frd"))
        assert status == 202, answer
        await server.settle()


@pytest.mark.parametrize(
    "authorization",
    [
        "Basic " + base64.b64encode(b"ciwatch:wrong").decode(),
        "Basic " + base64.b64encode(b"jk-token:").decode(),  # the secret as the user: refused
        "Basic not-base64!",
        "Basic " + base64.b64encode(b"\xff\xfe:jk-token").decode()[:-2],
        "Digest username=x",
    ],
)
async def test_wrong_or_malformed_basic_credentials_are_401(
    server: Server, authorization: str
) -> None:
    body = fixture("jenkins/webhooks/notification-plugin.completed.json")
    headers = {"Authorization": authorization, "Content-Type": JSON}
    status, answer = await server.post("/hooks/jenkins/jk", body, headers)
    assert status == 401, answer
    assert await server.runtime.store.get_run(KEY) is None


# The plugin's XML format: XStream of JobState (`@XStreamAlias("job")`, fields name,
# displayName, url, build), hand-written here from those model classes.
XML = (
    b"<job><name>asgard</name><displayName>asgard</displayName><url>job/asgard/</url>"
    b"<build><number>18</number><phase>COMPLETED</phase><status>SUCCESS</status>"
    b"<url>job/asgard/18/</url></build></job>"
)


@pytest.mark.parametrize("content_type", ["application/xml;charset=UTF-8", "text/xml", None])
async def test_the_xml_format_is_415_with_a_hint_naming_json(
    server: Server, content_type: str | None
) -> None:
    headers = {"X-Ciwatch-Token": SECRETS["jk"]}
    if content_type is not None:
        headers["Content-Type"] = content_type
    status, answer = await server.post("/hooks/jenkins/jk", XML, headers)
    assert status == 415, answer
    assert "JSON" in answer["error"]
    assert "Format" in answer["error"]
    assert await server.runtime.store.get_run(KEY) is None


async def test_xml_with_a_wrong_secret_is_still_401_first(server: Server) -> None:
    headers = {"X-Ciwatch-Token": "wrong", "Content-Type": "application/xml"}
    status, _ = await server.post("/hooks/jenkins/jk", XML, headers)
    assert status == 401
