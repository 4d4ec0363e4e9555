"""Engines from user-facing database URLs, SQLite connection setup, and error mapping.

Everything that differs between SQLite and PostgreSQL at the connection level lives here; the
queries themselves are the same on both (with per-dialect `INSERT ... ON CONFLICT`).
"""

from __future__ import annotations

import socket
import sqlite3
import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from ciwatch.errors import ConfigError, StoreError

SQLITE_SCHEMES = ("sqlite", "sqlite+aiosqlite")
POSTGRES_SCHEMES = ("postgresql", "postgres", "postgresql+asyncpg")
SQLITE_BUSY_TIMEOUT_MS = 30_000
PG_CONNECT_TIMEOUT_S = 10.0

# Execution option that marks a connection as a writer: on SQLite it begins with BEGIN
# IMMEDIATE, so the write lock is taken up front instead of being upgraded mid-transaction
# (an upgrade that can fail with SQLITE_BUSY whatever the busy timeout).
WRITE_OPTION = "ciwatch_write"


@dataclass(frozen=True)
class Endpoint:
    """Where a store points: the driver URL and how to name it in messages (password masked)."""

    url: URL
    display: str
    is_sqlite: bool

    @property
    def where(self) -> str:
        """`PostgreSQL at host:port (url)` or `SQLite database at path`, for error messages."""
        if self.is_sqlite:
            return f"SQLite database at {self.url.database}"
        return (
            f"PostgreSQL at {self.url.host or 'localhost'}:{self.url.port or 5432} ({self.display})"
        )


def parse_url(url: str) -> Endpoint:
    """Map a user-facing URL (docs/architecture.md#configuration) to an async driver URL;
    ConfigError when unusable."""
    scheme = url.split(":", 1)[0].lower() if ":" in url else url
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise ConfigError(f"database: cannot parse the URL (scheme {scheme!r})") from None
    name = parsed.drivername.lower()
    if name in SQLITE_SCHEMES:
        if not parsed.database or parsed.database == ":memory:" or "mode=memory" in url:
            raise ConfigError(
                "database: an in-memory SQLite database is not supported; "
                "use a file, e.g. sqlite:///ciwatch.db"
            )
        driver = parsed.set(drivername="sqlite+aiosqlite")
        return Endpoint(driver, driver.render_as_string(hide_password=True), is_sqlite=True)
    if name in POSTGRES_SCHEMES:
        driver = parsed.set(drivername="postgresql+asyncpg")
        return Endpoint(driver, parsed.render_as_string(hide_password=True), is_sqlite=False)
    raise ConfigError(
        f"database: unsupported URL scheme {name!r}; use sqlite:///PATH or "
        "postgresql://USER@HOST:PORT/DB"
    )


def create_engine(target: Endpoint, *, echo: bool = False) -> AsyncEngine:
    """An async engine for `target`; no connection is made until first use."""
    if target.is_sqlite:
        engine = create_async_engine(target.url, echo=echo)
        _configure_sqlite(engine)
        return engine
    return create_async_engine(
        target.url,
        echo=echo,
        pool_pre_ping=True,
        connect_args={"timeout": PG_CONNECT_TIMEOUT_S},
    )


def _configure_sqlite(engine: AsyncEngine) -> None:
    # The documented SQLAlchemy recipe: take BEGIN away from the sqlite3 driver and emit it
    # ourselves, so reads are real transactions and writers can use BEGIN IMMEDIATE.
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
            _set_wal(cursor)
            cursor.execute("PRAGMA foreign_keys=ON")
            # Durable at every checkpoint and safe against corruption in WAL mode.
            cursor.execute("PRAGMA synchronous=NORMAL")
        finally:
            cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Any) -> None:
        immediate = conn.get_execution_options().get(WRITE_OPTION, False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


# How long `_set_wal` retries: the race it covers lasts milliseconds.
WAL_SWITCH_WAIT_S = 5.0


def _set_wal(cursor: Any) -> None:
    """`PRAGMA journal_mode=WAL`, retried while another process holds the lock it needs: two
    processes opening a new file at once (`serve` and a cron `poll --once`) both try to switch
    it, and SQLite answers "database is locked" at once, without its busy handler. A file
    already in WAL (every file but a new one) costs one read and never retries. The retry
    sleeps in the connect hook, which runs on the event loop's thread: it is bounded, and only
    a process opening a brand-new file at the same moment as another ever waits here."""
    cursor.execute("PRAGMA journal_mode")
    found = cursor.fetchone()
    if found is not None and str(found[0]).lower() == "wal":
        return
    deadline = time.monotonic() + WAL_SWITCH_WAIT_S
    while True:
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.02)


def describe(exc: BaseException) -> str:
    """A short human reason for a driver or network error, without the driver's noise."""
    cause: BaseException = exc
    if isinstance(exc, DBAPIError) and exc.orig is not None:
        cause = exc.orig
    if isinstance(cause, ConnectionRefusedError):
        return "connection refused"
    if isinstance(cause, socket.gaierror):
        return f"cannot resolve the host name ({cause.strerror})"
    if isinstance(cause, TimeoutError):
        return "timed out"
    if isinstance(cause, OSError) and cause.strerror:
        return cause.strerror[0].lower() + cause.strerror[1:]
    text = str(cause).strip().splitlines()
    first = text[0] if text else ""
    # SQLAlchemy prefixes adapted driver errors with their class path; keep the message only.
    if first.startswith("<class ") and ">: " in first:
        first = first.split(">: ", 1)[1]
    return first or type(cause).__name__


def connect_error(target: Endpoint, exc: BaseException) -> StoreError:
    """The StoreError for a failure to open a connection."""
    verb = "open" if target.is_sqlite else "reach"
    return StoreError(f"cannot {verb} {target.where}: {describe(exc)}")


def operation_error(target: Endpoint, exc: BaseException, what: str) -> StoreError:
    """The StoreError for a statement that failed on an open connection."""
    return StoreError(f"{what} failed on {target.where}: {describe(exc)}")


# PostgreSQL SQLSTATEs worth retrying a whole write transaction for: it was rolled back and
# every write here is idempotent.
RETRYABLE_SQLSTATES = frozenset({"40001", "40P01"})


def is_retryable(exc: BaseException) -> bool:
    """True for a deadlock or serialization failure that aborted the transaction."""
    if not isinstance(exc, DBAPIError):
        return False
    orig = exc.orig
    state = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)
    if state is None:
        inner = getattr(orig, "__cause__", None)
        state = getattr(inner, "sqlstate", None)
    return state in RETRYABLE_SQLSTATES
