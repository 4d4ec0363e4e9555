"""`ciwatch config check`: validate the configuration and print it normalised, secrets masked."""

from __future__ import annotations

from pathlib import Path

import typer
import yaml

from ciwatch.cli.common import DEFAULT_CONFIG, ConfigOption, JsonOption, err, fail, print_json
from ciwatch.config import load_settings, masked_dump
from ciwatch.errors import ConfigError

app = typer.Typer(help="Check the configuration.", no_args_is_help=True)


@app.command("check")
def check(config: ConfigOption = None, json_out: JsonOption = False) -> None:
    """Validate the configuration: every problem on its own line (exit 2), else print it
    normalised with defaults filled in and secrets masked. With --json, problems are printed
    as `{"ok": false, "problems": [{"file", "line", "key", "message"}, ...]}`."""
    path = config or DEFAULT_CONFIG
    try:
        settings = load_settings(Path(path))
    except ConfigError as exc:
        if json_out:
            # Always JSON with --json: the problems as objects (the lines go to stderr too).
            details = exc.details or [{"file": str(path), "message": p} for p in exc.problems]
            print_json({"ok": False, "problems": details})
        fail(exc)
    dump = masked_dump(settings)
    if json_out:
        print_json(dump)
    else:
        typer.echo(yaml.safe_dump(dump, sort_keys=False, allow_unicode=True), nl=False)
    channels = len(settings.alerts.channels)
    err.print(f"{path}: OK ({len(settings.sources)} sources, {channels} channels)", markup=False)
