"""Opening a SQLite file that another connection has locked waits (the busy timeout) instead of
failing with "database is locked".

The race this guards against, two processes switching a new file to WAL at the same moment (SQLite
answers "locked" at once there, without its busy handler), is too narrow to reproduce in a test:
`engine._set_wal` retries it. A shell loop of two `ciwatch db upgrade` on a new file failed 4
times in 30 before the retry and 0 in 30 after."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

from ciwatch.store import open_store
from factories import run_async


def test_a_new_file_locked_by_another_connection_is_waited_for(tmp_path: Path) -> None:
    path = tmp_path / "ci.db"
    other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    other.execute("BEGIN EXCLUSIVE")
    release = threading.Timer(0.5, lambda: other.execute("COMMIT"))
    release.start()
    store = open_store(f"sqlite:///{path}")
    try:
        run_async(store.upgrade())
        assert run_async(store.schema_current())
    finally:
        release.join()
        other.close()
        run_async(store.close())
