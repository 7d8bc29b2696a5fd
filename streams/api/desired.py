"""Desired vs reported state of each pack (the twin's commands), kept in
``battery_desired_state``.

A write (``PUT /api/batteries/{id}/desired``) bumps the battery's version in the table and, in the
same transaction, produces an Avro ``command`` record to ``ev.commands.v1`` (key = battery id) and
waits for the broker's acknowledgement: when the broker refuses, the transaction rolls back and the
client gets 503, so the table never promises what the simulator will not receive. The simulator
applies the command and reports on ``ev.reported.v1``; :meth:`DesiredStore.record_reported` stores
that report (a report older than the stored one is ignored) and sets ``converged_at`` the first
time the pack reports the current desired version as applied.

The table belongs to the API; :data:`DDL` creates it (idempotently) when the API starts.
"""

from __future__ import annotations

import json
import threading
import uuid
from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from streams.api.schemas import DesiredState, DesiredStateView
from streams.topics import COMMANDS

DESIRED_FIELDS = ("usage_profile", "climate", "max_soc", "dc_share", "fault")

DDL = """
CREATE TABLE IF NOT EXISTS battery_desired_state (
    battery_id        VARCHAR(50)  PRIMARY KEY,
    desired           JSONB,
    version           BIGINT,
    command_id        TEXT,
    requested_at      TIMESTAMPTZ,
    reported          JSONB,
    reported_version  BIGINT,
    reported_at       TIMESTAMPTZ,
    report_status     TEXT,
    report_message    TEXT,
    converged_at      TIMESTAMPTZ
);
COMMENT ON TABLE battery_desired_state IS
    'Desired vs reported state of each pack (ev.commands.v1, ev.reported.v1); written by the API.';
"""

_UPSERT = """
INSERT INTO battery_desired_state (battery_id, desired, version, command_id, requested_at)
VALUES (%(battery_id)s, %(desired)s, %(now_ms)s, %(command_id)s, %(now)s)
ON CONFLICT (battery_id) DO UPDATE SET
    desired = EXCLUDED.desired,
    version = GREATEST(EXCLUDED.version, COALESCE(battery_desired_state.version, 0) + 1),
    command_id = EXCLUDED.command_id, requested_at = EXCLUDED.requested_at, converged_at = NULL
RETURNING version
"""

_REPORT = """
INSERT INTO battery_desired_state (battery_id, reported, reported_version, reported_at,
                                   report_status, report_message)
VALUES (%(battery_id)s, %(reported)s, %(version)s, %(applied_at)s, %(status)s, %(message)s)
ON CONFLICT (battery_id) DO UPDATE SET
    reported = CASE WHEN EXCLUDED.report_status = 'APPLIED' THEN EXCLUDED.reported
                    ELSE battery_desired_state.reported END,
    reported_version = CASE WHEN EXCLUDED.report_status = 'APPLIED' THEN EXCLUDED.reported_version
                            ELSE battery_desired_state.reported_version END,
    reported_at = EXCLUDED.reported_at,
    report_status = EXCLUDED.report_status, report_message = EXCLUDED.report_message,
    converged_at = CASE
        WHEN EXCLUDED.report_status = 'APPLIED'
             AND EXCLUDED.reported_version = battery_desired_state.version
        THEN COALESCE(battery_desired_state.converged_at, EXCLUDED.reported_at)
        ELSE battery_desired_state.converged_at END
WHERE battery_desired_state.reported_version IS NULL
   OR battery_desired_state.reported_version <= EXCLUDED.reported_version
"""

_SELECT = ("SELECT battery_id, desired, version, requested_at, reported, reported_version, "
           "reported_at, converged_at FROM battery_desired_state WHERE battery_id = %s")


class CommandRefusedError(Exception):
    """The broker did not acknowledge a command in time (the change was not stored)."""


def view_of(battery_id: str, row: dict[str, Any] | None) -> DesiredStateView:
    """The :class:`DesiredStateView` of a ``battery_desired_state`` row (``None``: never set)."""
    if row is None:
        return DesiredStateView(battery_id=battery_id)
    desired = DesiredState(**row["desired"]) if row.get("desired") is not None else None
    reported = DesiredState(**row["reported"]) if row.get("reported") is not None else None
    version, reported_version = row.get("version"), row.get("reported_version")
    converged = version is not None and reported_version == version and reported == desired
    return DesiredStateView(
        battery_id=battery_id, desired=desired, desired_version=version,
        requested_at=row.get("requested_at"), reported=reported, reported_version=reported_version,
        reported_at=row.get("reported_at"), converged=converged,
        converged_at=row.get("converged_at") if converged else None)


def _ms_to_dt(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value
    return datetime.fromtimestamp(int(value) / 1000.0, UTC)


class DesiredStore:
    """Reads and writes ``battery_desired_state``; produces commands.

    Args:
        pool: The API's connection pool.
        producer: A confluent-kafka producer.
        command_codec: Codec of the ``command`` schema.
        ack_timeout_s: How long a write waits for the broker's acknowledgement.
    """

    def __init__(self, pool: AsyncConnectionPool, producer: Any, command_codec: Any,
                 ack_timeout_s: float = 5.0) -> None:
        self.pool = pool
        self.producer = producer
        self.codec = command_codec
        self.ack_timeout_s = ack_timeout_s
        self._produce_lock = threading.Lock()

    async def get(self, battery_id: str) -> DesiredStateView:
        async with self.pool.connection() as conn:
            cur = conn.cursor(row_factory=dict_row)
            await cur.execute(_SELECT, (battery_id,))
            return view_of(battery_id, await cur.fetchone())

    async def put(self, battery_id: str, desired: DesiredState) -> DesiredStateView:
        """Store a new desired version and send it to the simulator.

        Raises:
            CommandRefusedError: the broker did not acknowledge the command (nothing stored).
        """
        import asyncio

        now = datetime.now(UTC)
        command_id = str(uuid.uuid4())
        values = desired.model_dump()
        async with self.pool.connection() as conn, conn.transaction():
            cur = conn.cursor(row_factory=dict_row)
            await cur.execute(_UPSERT, {
                "battery_id": battery_id, "desired": Jsonb(values), "command_id": command_id,
                "now": now, "now_ms": int(now.timestamp() * 1000)})
            row = await cur.fetchone()
            assert row is not None
            record = {**values, "command_id": command_id, "battery_id": battery_id,
                      "version": int(row["version"]), "requested_at": int(now.timestamp() * 1000)}
            await asyncio.to_thread(self._send, record)
            await cur.execute(_SELECT, (battery_id,))
            return view_of(battery_id, await cur.fetchone())

    def _send(self, record: dict[str, Any]) -> None:
        errors: list[str] = []

        def delivered(err: Any, msg: Any) -> None:
            if err is not None:
                errors.append(str(err))

        with self._produce_lock:
            self.producer.produce(COMMANDS, self.codec.encode(record), record["battery_id"].encode(),
                                  on_delivery=delivered)
            left = self.producer.flush(self.ack_timeout_s)
        if left or errors:
            raise CommandRefusedError(
                f"the broker did not acknowledge the command within {self.ack_timeout_s:g} s"
                + (f": {errors[0]}" if errors else ""))


def ensure_table(conn: psycopg.Connection[Any]) -> None:
    """Create ``battery_desired_state`` if it does not exist."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (0x65767477617069,))  # "evtwapi"
        conn.execute(DDL)


def record_reported(conn: psycopg.Connection[Any], records: list[dict[str, Any]]) -> None:
    """Store reports from ``ev.reported.v1`` (decoded ``command_reported`` records)."""
    if not records:
        return
    with conn.transaction():
        for r in records:
            conn.execute(_REPORT, {
                "battery_id": r["battery_id"], "version": int(r["version"]),
                "reported": Jsonb({f: r.get(f) for f in DESIRED_FIELDS}),
                "applied_at": _ms_to_dt(r["applied_at"]), "status": r["status"],
                "message": r.get("message", "")})


def reported_view_json(battery_id: str, conn: psycopg.Connection[Any]) -> str:
    """The current view of one pack as JSON (for the ``reported`` WebSocket message)."""
    cur = conn.cursor(row_factory=dict_row)
    cur.execute(_SELECT, (battery_id,))
    view = view_of(battery_id, cur.fetchone())
    return json.dumps({"type": "reported", "data": view.model_dump(mode="json")})


__all__ = ["DDL", "CommandRefusedError", "DesiredStore", "ensure_table", "record_reported",
           "reported_view_json", "view_of"]
