"""Fixtures of the store tests (the `store` fixture itself is in tests/conftest.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from store_support import BlockingStore

ENGINES = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]


@pytest.fixture(scope="module", params=ENGINES)
def blocking_store(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[BlockingStore]:
    """A migrated store for synchronous property tests, shared by a module, on each engine."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('blocking') / 'ciwatch.db'}"
    else:
        url = request.getfixturevalue("pg_database")
    wrapper = BlockingStore(url)
    yield wrapper
    wrapper.close()
