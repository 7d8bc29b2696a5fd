"""Versioned SQL migrations for the sink tables, applied idempotently at start-up.

Migrations are the files in ``connectors/migrations/``, named ``NNNN_name.sql`` (run everywhere) or
``NNNN_name.<flavour>.sql`` with one file per flavour:

* ``timescaledb`` — the TimescaleDB extension is available: hypertable, compression, retention and
  a continuous aggregate;
* ``postgresql`` — plain PostgreSQL (our embedded PostgreSQL 18): plain tables, a BRIN index and the
  same hourly rollup as a view over hourly sums that the sink adds each batch to (migration 0008;
  a materialized view refreshed from the whole table before).

:func:`migrate` records every applied version in ``schema_migrations`` (version, name, flavour,
checksum). It holds a transaction-scoped advisory lock while it works, so several sink replicas that
start together apply each migration exactly once; the others wait, then find nothing to do. A
database migrated with one flavour keeps it (installing TimescaleDB later does not convert tables).
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

from connectors import ConnectorError

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
FLAVOURS = ("timescaledb", "postgresql")
# Key of the advisory lock that serialises migrations (any 64-bit number, fixed for this project).
MIGRATION_LOCK_KEY = 0x65767477696E  # "evtwin"
_FILE = re.compile(r"^(?P<version>\d{4})_(?P<name>[a-z0-9_]+?)(?:\.(?P<flavour>[a-z]+))?\.sql$")


class MigrationError(ConnectorError):
    """The migration files are inconsistent, or the database refused a migration."""


@dataclass(frozen=True)
class Migration:
    """One migration version: a common file, or one file per flavour."""

    version: int
    name: str
    files: dict[str, Path] = field(hash=False)

    def file_for(self, flavour: str) -> Path:
        """The file to run for ``flavour``."""
        return self.files.get("any") or self.files[flavour]


@dataclass
class MigrationReport:
    """What :func:`migrate` did: the flavour in use and the versions it applied now."""

    flavour: str
    applied: list[int]
    current_version: int


def load_migrations(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    """Read the migration files, ordered by version.

    Raises:
        MigrationError: no files, a file name does not match ``NNNN_name[.flavour].sql``, or a
            version has flavour files that do not cover every flavour.
    """
    found: dict[int, tuple[str, dict[str, Path]]] = {}
    for path in sorted(directory.glob("*.sql")):
        match = _FILE.match(path.name)
        if not match or (match["flavour"] and match["flavour"] not in FLAVOURS):
            raise MigrationError(f"migration file {path.name}: expected NNNN_name[.{'|'.join(FLAVOURS)}].sql")
        version = int(match["version"])
        name, files = found.setdefault(version, (match["name"], {}))
        files[match["flavour"] or "any"] = path
    if not found:
        raise MigrationError(f"no migration files in {directory}: the package was installed "
                             "without connectors/migrations/*.sql (package data)")
    migrations = []
    for version, (name, files) in sorted(found.items()):
        if "any" not in files and set(files) != set(FLAVOURS):
            raise MigrationError(f"migration {version:04d}: needs one file per flavour {FLAVOURS}")
        if "any" in files and len(files) > 1:
            raise MigrationError(f"migration {version:04d}: a common file and flavour files")
        migrations.append(Migration(version, name, files))
    return migrations


def detect_flavour(conn: psycopg.Connection) -> str:
    """``"timescaledb"`` if the TimescaleDB extension is installed or can be created here, else
    ``"postgresql"``. Logs which path is taken and why."""
    row = conn.execute(
        "SELECT installed_version, default_version FROM pg_available_extensions WHERE name = %s",
        ("timescaledb",),
    ).fetchone()
    if row is None:
        log.info("database: TimescaleDB is not available; using plain PostgreSQL tables, a BRIN "
                 "index and an hourly rollup kept by each batch")
        return "postgresql"
    if row[0] is None:
        try:
            with conn.transaction():  # a savepoint: a failure leaves the outer transaction usable
                conn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
        except psycopg.Error as exc:
            log.warning("database: TimescaleDB %s is available but cannot be created (%s); using "
                        "plain PostgreSQL", row[1], str(exc).strip().splitlines()[0])
            return "postgresql"
    log.info("database: TimescaleDB %s found; using a hypertable with compression, retention and "
             "a continuous aggregate", row[0] or row[1])
    return "timescaledb"


def _checksum(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _applied(conn: psycopg.Connection) -> dict[int, tuple[str, str]]:
    conn.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations ("
        " version INTEGER PRIMARY KEY, name TEXT NOT NULL, flavour TEXT NOT NULL,"
        " checksum TEXT NOT NULL, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"
    )
    rows = conn.execute("SELECT version, flavour, checksum FROM schema_migrations").fetchall()
    return {version: (flavour, checksum) for version, flavour, checksum in rows}


def _apply(conn: psycopg.Connection, migration: Migration, flavour: str) -> None:
    path = migration.file_for(flavour)
    log.info("database: applying migration %s", path.name)
    try:
        with conn.transaction():
            conn.execute(path.read_text())  # no parameters: may hold several statements
    except psycopg.OperationalError:
        raise  # the connection, not the migration: the caller may retry
    except psycopg.Error as exc:
        raise MigrationError(f"migration {path.name} failed: {exc}") from exc
    conn.execute(
        "INSERT INTO schema_migrations (version, name, flavour, checksum) VALUES (%s, %s, %s, %s)",
        (migration.version, migration.name, flavour, _checksum(path)),
    )


def migrate(conn: psycopg.Connection, directory: Path = MIGRATIONS_DIR) -> MigrationReport:
    """Apply every pending migration in one transaction, under an advisory lock.

    Safe to call from every replica at every start: the first applies, the others wait for the lock
    and find nothing left to do. Tables land in the first schema of the connection's
    ``search_path``.

    Returns:
        The flavour in use, the versions applied by this call and the version now current.

    Raises:
        MigrationError: a migration failed (nothing of this call is kept) or the files are
            inconsistent.
    """
    migrations = load_migrations(directory)
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK_KEY,))
        applied = _applied(conn)
        flavours = {flavour for flavour, _ in applied.values()}
        flavour = flavours.pop() if flavours else detect_flavour(conn)
        if applied:
            log.info("database: schema at version %04d (%s)", max(applied), flavour)
        done = []
        for migration in migrations:
            if migration.version in applied:
                _, checksum = applied[migration.version]
                if checksum != _checksum(migration.file_for(flavour)):
                    log.warning("database: migration %04d_%s changed after it was applied; "
                                "changes need a new migration", migration.version, migration.name)
                continue
            _apply(conn, migration, flavour)
            done.append(migration.version)
    current = max([*applied, *done], default=0)
    return MigrationReport(flavour=flavour, applied=done, current_version=current)


__all__ = [
    "FLAVOURS", "MIGRATIONS_DIR", "Migration", "MigrationError", "MigrationReport",
    "detect_flavour", "load_migrations", "migrate",
]
