"""Names vulture cannot see used, for `vulture src/ciwatch tools/vulture_whitelist.py
--min-confidence 60` (.ci/run; docs/architecture.md#code-conventions).

Vulture matches by name, so each line says "this name is used" wherever it is defined. Add a
name here only when something outside the package's own Python calls or reads it (a framework,
a template, the tests), with the reason in its group; code that nothing uses is deleted instead.
This file is read by vulture, never imported.
"""

# ruff: noqa
# mypy: ignore-errors
_ = object()

# -- FastAPI routes: registered by their decorator -------------------------------------------
list_runs, list_flaky, list_projects, list_targets, list_alerts  # web/api.py
get_silences, post_silence, expire  # web/api.py
healthz, readyz, docs  # web/app.py
cc_xml  # web/cctray.py
project_page, run_page, alerts_page, flaky_page  # web/dashboard.py
add_silence_form, expire_silence_form  # web/dashboard.py
receive  # web/hooks.py: registered once per provider kind with a webhook handler

# -- Typer commands (registered by their decorator) and options accepted but not read -------
alerts_list, silence_add, silence_list, silence_expire  # cli/alerts.py
once  # cli/poll.py: `--once` is what poll always does; accepted so cron lines may say so
alerts_test, demo  # cli/__init__.py registers commands by name (_COMMANDS), importing lazily

# -- Jinja templates: what web/templates/*.html call and read --------------------------------
_.badge, _.ci_link, _.run_duration, _.utc, _.here, _.static, _.run_link  # web/dashboard.View
_.moving, _.overdue  # web/dashboard.py wall tiles
_.retrying  # alerting/views.py
_.last_duration, _.has_more, _.still_red  # store/stats.py
broken_by, fixed_by, unhealthy, failed_run, failed_jobs  # store/stats.py dataclass fields
broken_range  # store/stats.py Recovery: the commits since green on the project page

# -- Protocols: the call signature of a callable protocol ------------------------------------
__call__  # providers/spec.StatusMap

# -- pydantic and msgspec: class attributes the libraries read, fields decoded or encoded ----
model_config  # pydantic settings of a model
window_seconds, mean_recovery_seconds, median_recovery_seconds, longest_red_seconds  # schemas
default_branch  # GitHub and GitLab repository/project payloads
failed_count, error_count  # GitLab test report summary
stuck, blocked, buildable, last_build  # Jenkins queue item and job payloads

# -- SQLAlchemy and Alembic ------------------------------------------------------------------
inherit_cache  # filters.GlobMatch: a ClauseElement's caching flag
_glob_sqlite, _glob_postgresql, _glob_other  # filters.py: @compiles(GlobMatch, dialect)
impl, cache_ok  # store/coltypes.py: TypeDecorator attributes
_.load_dialect_impl, _.process_bind_param, _.process_result_value  # TypeDecorator hooks
_on_connect, _on_begin  # store/engine.py: engine event listeners
_.isolation_level  # store/engine.py: set on the DBAPI (sqlite3) connection
down_revision, branch_labels, downgrade  # store/migrations/versions/*: Alembic reads them

# -- uvicorn, signal handlers and context managers: signatures fixed by the caller -----------
_.capture_signals  # cli/serve.py: overrides uvicorn.Server.capture_signals
_.force_exit  # cli/serve.py: uvicorn.Server reads it
signum, frame  # cli/simulate.py: a signal handler's arguments
exc_type, tb  # simulator/app.py: __exit__'s arguments

# -- Read by the tests: counters, test support in the package, the pure reference model ------
FakeClock  # clock.py: the clock every test and benchmark drives
forget_unknown_statuses  # providers/common.py: resets the log-once set between tests
_.held_requests, _.remove_fault  # simulator: used by tests (docs/simulator.md)
_.evaluations, _.batches, _.restarts, _.subscribers  # counters
_.pending, _.dropped, _.cut_off  # ingest.py: its background queue
_.snapshot_renders, _.body_renders, _.rendered_refs  # metrics.py render cache counters
_.full_reads, _.encodes  # metrics/snapshot.py, web/api.py: snapshot reads and answers encoded, read by tests
_.metrics_registry  # web/app.py: app.state, read by the /metrics tests
METRIC_NAMES, GCPE_METRIC_NAMES, GCPE_NOT_PROVIDED  # metrics.py: the docs and deploy tests
load_alerts, outbox_rows  # store/alerting.py: what the alerting tests read back
merge_job, fold_runs, ref_state  # state.py: the reference the SQL merge is tested against
example  # channels/spec.ChannelSpec: the sample settings tests/channels/test_channel_registry.py loads
PROTOCOLS  # store/base.py: every store protocol, for tests/store/test_store_protocols.py
_.metrics_cache  # web/app.py: app.state, closed by the tests that build an app
spec_of  # providers/registry.py: a kind's spec, read by the registry agreement tests
_.repeats_as, _.resolves_as  # alerting/kinds.AlertKind: declared, checked by tests/alerting/test_kinds.py
pauses_source  # retries.Rule: the table's rate-limit column (http.is_rate_limit acts on it)

# -- Kept for the reader ----------------------------------------------------------------------
EXIT_OK  # cli/common.py: the exit code table names 0 too
namespace_id  # simulator/world.py: a GitLab project's namespace in the simulated world

# -- Not read anywhere, left to the change that owns the module (delete them there) ----------
bold  # channels/render.Format.bold: set by every format, never called (channel payload split)
taken_at  # metrics.Snapshot.taken_at: set, never read (the metrics package split)
