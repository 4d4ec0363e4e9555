"""Helpers the webhook and alert benchmarks share: a free port, a quantile, and a throw-away
PostgreSQL database on 127.0.0.1:5432 (trust auth, user postgres)."""

from __future__ import annotations

import socket

import asyncpg


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def pg_database(create: bool, name: str) -> None:
    """Create the database `name`, or drop it (whoever is connected)."""
    conn = await asyncpg.connect(host="127.0.0.1", port=5432, user="postgres", database="postgres")
    try:
        if create:
            await conn.execute(f'CREATE DATABASE "{name}"')
        else:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()
