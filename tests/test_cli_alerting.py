"""`ciwatch alerts list` and `ciwatch silence add|list|expire` on the store (both engines)."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from alert_seed import DINGTALK_ERROR, seed_alerts
from ciwatch.cli import app
from ciwatch.store import open_store
from factories import run_async

runner = CliRunner(env={"COLUMNS": "250"})


def seed(url: str) -> None:
    async def go() -> None:
        store = open_store(url)
        try:
            await store.upgrade()
            await seed_alerts(store)
        finally:
            await store.close()

    run_async(go())


def test_alerts_list_table_and_json(store_url: str) -> None:
    db = ["--database", store_url]
    empty = runner.invoke(app, ["alerts", "list", *db])
    assert (empty.exit_code, empty.stdout.strip()) == (0, "No firing alerts.")
    seed(store_url)
    table = runner.invoke(app, ["alerts", "list", *db])
    assert table.exit_code == 0, table.output
    assert "group/app:main" in table.stdout and "firing" in table.stdout
    assert DINGTALK_ERROR in table.stdout  # rich markup in the error text is shown literally
    assert "folder/<b>job</b>" in table.stdout
    assert "octo/repo" not in table.stdout
    listed = runner.invoke(app, ["alerts", "list", "--json", "--all", *db])
    assert listed.exit_code == 0
    alerts = json.loads(listed.stdout)
    assert [a["state"] for a in alerts] == ["firing", "firing", "resolved"]
    assert {c["channel"]: c["outcome"] for c in alerts[1]["channels"]} == {
        "dingtalk": "failed",
        "hook": "pending",
        "slack": "sent",
    }


def test_silence_add_list_expire(store_url: str) -> None:
    db = ["--database", store_url]
    none = runner.invoke(app, ["silence", "list", *db])
    assert (none.exit_code, none.stdout.strip()) == (0, "No active silences.")
    added = runner.invoke(
        app,
        [
            *("silence", "add", "--for", "2h", "--project", "group/*", "--event", "broken"),
            *("--comment", "deploy", "--by", "ops", "--json", *db),
        ],
    )
    assert added.exit_code == 0, added.output
    silence = json.loads(added.stdout)
    assert silence["matchers"] == {"project": "group/*", "event": "broken"}
    assert (silence["comment"], silence["created_by"], silence["active"]) == ("deploy", "ops", True)
    plain = runner.invoke(app, ["silence", "add", "--ref", "main", *db])
    assert plain.exit_code == 0 and plain.stdout.startswith("Silence 2 added until")

    table = runner.invoke(app, ["silence", "list", *db])
    assert table.exit_code == 0 and "project=group/*" in table.stdout and "deploy" in table.stdout
    expired = runner.invoke(app, ["silence", "expire", str(silence["id"]), *db])
    assert expired.exit_code == 0, expired.output
    active = json.loads(runner.invoke(app, ["silence", "list", "--json", *db]).stdout)
    assert [s["id"] for s in active] == [2]
    everything = json.loads(runner.invoke(app, ["silence", "list", "--json", "--all", *db]).stdout)
    assert [(s["id"], s["active"]) for s in everything] == [(1, False), (2, True)]


def test_silence_usage_errors_exit_2(store_url: str) -> None:
    db = ["--database", store_url]
    no_matcher = runner.invoke(app, ["silence", "add", "--for", "1h", *db])
    assert no_matcher.exit_code == 2 and "at least one" in no_matcher.stderr
    bad_for = runner.invoke(app, ["silence", "add", "--for", "soon", "--ref", "x", *db])
    assert bad_for.exit_code == 2 and "--for" in bad_for.stderr
    zero = runner.invoke(app, ["silence", "add", "--for", "0s", "--ref", "x", *db])
    assert zero.exit_code == 2
    missing = runner.invoke(app, ["silence", "expire", "42", *db])
    assert missing.exit_code == 2 and "no silence with id 42" in missing.stderr
    not_a_number = runner.invoke(app, ["silence", "expire", "abc", *db])
    assert not_a_number.exit_code == 2


def test_unreachable_database_exits_3() -> None:
    url = "postgresql://nobody@127.0.0.1:1/none"
    for command in (["alerts", "list"], ["silence", "list"]):
        result = runner.invoke(app, [*command, "--database", url])
        assert result.exit_code == 3, result.output
