"""Throw-away databases on a running PostgreSQL, so each test module writes into its own."""

from __future__ import annotations

import uuid

import psycopg
from psycopg import sql


def fresh_database(url: str, prefix: str) -> str:
    """Create an empty database next to ``url``'s and return its URL."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return url.rsplit("/", 1)[0] + "/" + name


def drop_database(url: str) -> None:
    """Drop the database of ``url`` (connections to it are terminated)."""
    base, name = url.rsplit("/", 1)
    with psycopg.connect(base + "/postgres", autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
