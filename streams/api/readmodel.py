"""The read model: every query the API runs on the sink tables, parameterised, bounded.

Tables (``connectors/migrations``): ``battery_state`` (one row per pack: the twin's latest state),
``ev_telemetry`` (one row per reading, index ``(battery_id, time DESC)``), ``ev_telemetry_hourly``
(hourly rollup), ``ev_alerts`` (episodes; a partial index on the open ones), ``ev_accuracy`` (the
online-accuracy sums per bucket, key ``(bucket, battery_id)``, fleet rows ``battery_id = '*'``),
``ev_accuracy_faults`` (one row per pack) and the API's own ``battery_desired_state``
(:mod:`streams.api.desired`). A page reads ``battery_state`` (as many rows as packs) or one
battery's index range between two times, never a whole telemetry table; accuracy reads cover the
window's buckets or a bounded range; every list has a ``LIMIT``. SQL is never built from request strings: values are parameters, and the
few identifiers (sort columns) come from fixed tables through :class:`psycopg.sql.Identifier`.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from psycopg import sql
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from streams.api.coalesce import Coalescer
from streams.api.schemas import RISK_HIGH, RISK_MEDIUM, risk_band

#: Sortable columns of the battery list: query parameter -> column of battery_state.
SORT_COLUMNS = {
    "battery_id": "battery_id", "soc": "soc", "soh": "soh", "temperature": "temperature",
    "rul": "rul_prediction", "rul_cycles": "rul_prediction",
    "failure_probability": "failure_probability", "risk": "failure_probability",
    "anomaly_score": "anomaly_score", "fault_score": "fault_score",
    "charge_cycles": "charge_cycles", "time": "time",
    "open_alerts": "open_alerts",
}
#: Bucket widths of the history, and the point budget of ``resolution=auto``.
BUCKETS = {"1m": timedelta(minutes=1), "5m": timedelta(minutes=5), "15m": timedelta(minutes=15),
           "1h": timedelta(hours=1)}
AUTO_POINTS = 600
ROLLUP_AFTER = timedelta(hours=48)
HISTORY_LIMIT = 5000
ALERT_TOTAL_CAP = 10_000

_STATE_COLS = ("battery_id, time, soc, soh, voltage, current, temperature, charge_cycles, "
               "power_consumption, rul_prediction AS rul_cycles, rul_p10, rul_p90, "
               "failure_probability, anomaly_score, fault_score, fault_flag, model_version, scored_at")
_ALERT_COLS = ("alert_id, battery_id, rule, severity, "
               "CASE WHEN resolved_at IS NULL THEN 'OPENED' ELSE 'RESOLVED' END AS status, "
               "value, threshold, message, opened_at, resolved_at")
_OPEN_COUNTS = ("(SELECT battery_id, count(*) AS n FROM ev_alerts WHERE resolved_at IS NULL "
                "GROUP BY battery_id)")
_RISK_RANGES = {"low": (None, RISK_MEDIUM), "medium": (RISK_MEDIUM, RISK_HIGH),
                "high": (RISK_HIGH, None)}
FLEET = "*"
"""``battery_id`` of the fleet-wide rows of ``ev_accuracy``."""
# Sums of ev_accuracy rows ``a`` as a JSON object, and the window: the buckets of the last
# %(window_s)s seconds up to the fleet's newest bucket (the accuracy job's gauges use the same).
_SUMS_JSON = ("'pairs', coalesce(sum(a.pairs), 0), 'abs_error', sum(a.rul_abs_error_sum), "
              "'in_band', coalesce(sum(a.rul_in_band), 0), 'detections', coalesce(sum(a.fault_detections), 0), "
              "'delay_s', coalesce(sum(a.fault_detection_delay_s_sum), 0), "
              "'failure_pairs', coalesce(sum(a.failure_pairs), 0), "
              "'failure_probability', coalesce(sum(a.failure_probability_sum), 0), "
              "'failure_observed', coalesce(sum(a.failure_observed), 0), "
              "'failure_sq_error', coalesce(sum(a.failure_sq_error_sum), 0)")
_IN_WINDOW = (f"a.bucket > (SELECT max(bucket) FROM ev_accuracy WHERE battery_id = '{FLEET}') "
              "- %(window_s)s * INTERVAL '1 second'")

#: The twin rows of the packs ``%(b)s`` (an array): one query serves many concurrent requests.
_TWIN_QUERY = (
    f"SELECT {_STATE_COLS}, "
    "(SELECT coalesce(json_agg(a ORDER BY a.opened_at DESC), '[]'::json) FROM "
    f"  (SELECT {_ALERT_COLS} FROM ev_alerts WHERE battery_id = s.battery_id "
    "   AND resolved_at IS NULL ORDER BY opened_at DESC LIMIT 50) a) AS alerts, "
    "d.desired AS d_desired, d.version AS d_version, d.requested_at AS d_requested_at, "
    "d.reported AS d_reported, d.reported_version AS d_reported_version, "
    "d.reported_at AS d_reported_at, d.converged_at AS d_converged_at, "
    "d.battery_id IS NOT NULL AS d_present, "
    f"(SELECT json_build_object({_SUMS_JSON}) FROM ev_accuracy a "
    f" WHERE a.battery_id = s.battery_id AND {_IN_WINDOW}) AS acc, "
    "f.fault AS f_fault, f.onset AS f_onset, f.detected_at AS f_detected_at, "
    "f.detection_delay_s AS f_delay "
    "FROM battery_state s LEFT JOIN battery_desired_state d USING (battery_id) "
    "LEFT JOIN ev_accuracy_faults f USING (battery_id) "
    "WHERE s.battery_id = ANY(%(b)s)")


def choose_resolution(start: datetime, end: datetime, wanted: str) -> str:
    """The resolution a history uses: ``wanted`` unless ``auto``; auto keeps at most
    :data:`AUTO_POINTS` points (raw up to 10 minutes) and hourly beyond 48 hours."""
    if wanted != "auto":
        return wanted
    span = end - start
    if span > ROLLUP_AFTER:
        return "1h"
    if span <= timedelta(minutes=10):
        return "raw"
    for name, width in BUCKETS.items():
        if span / width <= AUTO_POINTS:
            return name
    return "1h"


class ReadModel:
    """The API's queries over one connection pool (``psycopg_pool.AsyncConnectionPool``)."""

    def __init__(self, pool: AsyncConnectionPool, *, twin_batch: int = 64) -> None:
        self.pool = pool
        #: Concurrent twin lookups share queries (``lookups`` and ``batches`` go to /metrics).
        self.twin_loader: Coalescer[tuple[str, int], dict[str, Any]] = Coalescer(
            self._twin_rows, max_batch=twin_batch)

    async def _all(self, query: Any, params: Any = None) -> list[dict[str, Any]]:
        async with self.pool.connection() as conn:
            cur = conn.cursor(row_factory=dict_row)
            await cur.execute(query, params)
            return await cur.fetchall()

    async def _one(self, query: Any, params: Any = None) -> dict[str, Any] | None:
        rows = await self._all(query, params)
        return rows[0] if rows else None

    # --- batteries ---------------------------------------------------------------------------

    async def battery_page(self, *, limit: int, offset: int, sort: str, order: str,
                           risk: str | None = None, alert: str | None = None,
                           soh_min: float | None = None, soh_max: float | None = None,
                           prefix: str | None = None,
                           fault: str | None = None) -> tuple[list[dict[str, Any]], int]:
        """A page of ``battery_state`` with open-alert counts, and the number of matching packs."""
        where: list[str] = ["TRUE"]
        params: dict[str, Any] = {}
        if risk is not None:
            lo, hi = _RISK_RANGES[risk]
            if lo is not None:
                where.append("s.failure_probability >= %(risk_lo)s")
                params["risk_lo"] = lo
            if hi is not None:
                where.append("s.failure_probability < %(risk_hi)s")
                params["risk_hi"] = hi
        if alert == "open":
            where.append("a.n > 0")
        elif alert == "none":
            where.append("a.n IS NULL")
        if fault == "flagged":
            where.append("s.fault_flag")
        elif fault == "clear":
            where.append("s.fault_flag IS NOT TRUE")
        if soh_min is not None:
            where.append("s.soh >= %(soh_min)s")
            params["soh_min"] = soh_min
        if soh_max is not None:
            where.append("s.soh <= %(soh_max)s")
            params["soh_max"] = soh_max
        if prefix:
            where.append("s.battery_id LIKE %(prefix)s")
            params["prefix"] = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        column = SORT_COLUMNS[sort]
        order_by = sql.SQL("{} {} NULLS LAST, s.battery_id").format(
            sql.Identifier("open_alerts") if column == "open_alerts" else sql.Identifier("s", column),
            sql.SQL("DESC" if order == "desc" else "ASC"))
        query = sql.SQL(
            "SELECT s.battery_id, s.time, s.soc, s.soh, s.voltage, s.current, s.temperature, "
            "s.charge_cycles, s.rul_prediction AS rul_cycles, s.rul_p10, s.rul_p90, "
            "s.failure_probability, s.anomaly_score, s.fault_score, s.fault_flag, s.model_version, "
            "COALESCE(a.n, 0)::int AS open_alerts, count(*) OVER () AS total "
            "FROM battery_state s LEFT JOIN " + _OPEN_COUNTS + " a USING (battery_id) "
            "WHERE {where} ORDER BY {order} LIMIT %(limit)s OFFSET %(offset)s"
        ).format(where=sql.SQL(" AND ".join(where)), order=order_by)
        params.update(limit=limit, offset=offset)
        rows = await self._all(query, params)
        total = int(rows[0].pop("total")) if rows else await self._count_batteries(where, params)
        for row in rows:
            row.pop("total", None)
            row["risk"] = risk_band(row["failure_probability"])
        return rows, total

    async def _count_batteries(self, where: list[str], params: dict[str, Any]) -> int:
        query = sql.SQL("SELECT count(*) AS n FROM battery_state s LEFT JOIN " + _OPEN_COUNTS
                        + " a USING (battery_id) WHERE {}").format(sql.SQL(" AND ".join(where)))
        row = await self._one(query, params)
        return int(row["n"]) if row else 0

    async def battery_state(self, battery_id: str) -> dict[str, Any] | None:
        """The twin's latest row of one pack, or ``None``."""
        return await self._one(f"SELECT {_STATE_COLS} FROM battery_state WHERE battery_id = %s",
                               (battery_id,))

    async def battery_twin(self, battery_id: str, accuracy_window_s: int) -> dict[str, Any] | None:
        """One pack's twin row: its state row, its open alerts (``alerts``, a JSON list, newest
        first, at most 50), its desired-state row (``d_*`` columns), its accuracy sums over the
        window (``acc``, JSON) and its fault episode (``f_*``). Concurrent calls share queries
        (:class:`~streams.api.coalesce.Coalescer`); the row returned may be shared with another
        caller: read it, do not change it."""
        return await self.twin_loader.get((battery_id, accuracy_window_s))

    async def _twin_rows(self, keys: list[tuple[str, int]]) -> dict[tuple[str, int], dict[str, Any]]:
        """The twin rows of many packs, one query per accuracy window (in practice: one)."""
        found: dict[tuple[str, int], dict[str, Any]] = {}
        for window_s in {w for _, w in keys}:
            ids = [b for b, w in keys if w == window_s]
            for row in await self._all(_TWIN_QUERY, {"b": ids, "window_s": window_s}):
                found[(row["battery_id"], window_s)] = row
        return found

    async def battery_exists(self, battery_id: str) -> bool:
        return await self._one("SELECT 1 AS x FROM battery_state WHERE battery_id = %s",
                               (battery_id,)) is not None

    async def latest_states(self, battery_id: str | None, limit: int) -> list[dict[str, Any]]:
        """``battery_state`` rows, by battery id (one pack with ``battery_id``)."""
        if battery_id is not None:
            return await self._all(f"SELECT {_STATE_COLS} FROM battery_state WHERE battery_id = %s",
                                   (battery_id,))
        return await self._all(f"SELECT {_STATE_COLS} FROM battery_state ORDER BY battery_id "
                               "LIMIT %s", (limit,))

    # --- history -----------------------------------------------------------------------------

    async def history(self, battery_id: str, start: datetime, end: datetime,
                      resolution: str) -> tuple[str, list[dict[str, Any]]]:
        """(source table, points) of one pack between ``start`` and ``end`` at ``resolution``."""
        if resolution == "raw":
            rows = await self._all(
                "SELECT time, 1 AS samples, soc, soh, voltage, current, temperature, "
                "temperature AS temperature_max, charge_cycles, rul_prediction AS rul_cycles, "
                "rul_p10, rul_p90, failure_probability, anomaly_score, fault_score FROM ev_telemetry "
                "WHERE battery_id = %s AND time >= %s AND time < %s ORDER BY time LIMIT %s",
                (battery_id, start, end, HISTORY_LIMIT))
            return "ev_telemetry", rows
        if resolution == "1h" and end - start > ROLLUP_AFTER:
            rows = await self._all(
                "SELECT bucket AS time, samples::int AS samples, soc_avg AS soc, soh_avg AS soh, "
                "voltage_avg AS voltage, current_avg AS current, temperature_avg AS temperature, "
                "temperature_max, charge_cycles_max AS charge_cycles, rul_avg AS rul_cycles, "
                "rul_p10_avg AS rul_p10, rul_p90_avg AS rul_p90, "
                "failure_probability_avg AS failure_probability, anomaly_score_max AS anomaly_score, "
                "NULL::float8 AS fault_score "  # the rollup (migration 0003) predates the fault score
                "FROM ev_telemetry_hourly WHERE battery_id = %s AND bucket >= %s AND bucket < %s "
                "ORDER BY bucket LIMIT %s", (battery_id, start, end, HISTORY_LIMIT))
            return "ev_telemetry_hourly", rows
        rows = await self._all(
            "SELECT date_bin(%s, time, TIMESTAMPTZ '2000-01-01 00:00:00+00') AS time, "
            "count(*)::int AS samples, avg(soc) AS soc, avg(soh) AS soh, avg(voltage) AS voltage, "
            "avg(current) AS current, avg(temperature) AS temperature, "
            "max(temperature) AS temperature_max, max(charge_cycles) AS charge_cycles, "
            "avg(rul_prediction) AS rul_cycles, avg(rul_p10) AS rul_p10, avg(rul_p90) AS rul_p90, "
            "avg(failure_probability) AS failure_probability, max(anomaly_score) AS anomaly_score, "
            "max(fault_score) AS fault_score "
            "FROM ev_telemetry WHERE battery_id = %s AND time >= %s AND time < %s "
            "GROUP BY 1 ORDER BY 1 LIMIT %s",
            (BUCKETS[resolution], battery_id, start, end, HISTORY_LIMIT))
        return "ev_telemetry", rows

    # --- alerts ------------------------------------------------------------------------------

    async def alerts(self, *, status: str, battery_id: str | None, rule: str | None,
                     severity: str | None, limit: int, offset: int) -> tuple[list[dict[str, Any]], int]:
        """Alert episodes, newest first, and how many match (counted up to 10,000)."""
        where: list[str] = ["TRUE"]
        params: dict[str, Any] = {}
        if status == "open":
            where.append("resolved_at IS NULL")
        elif status == "resolved":
            where.append("resolved_at IS NOT NULL")
        for name, value in (("battery_id", battery_id), ("rule", rule), ("severity", severity)):
            if value is not None:
                where.append(f"{name} = %({name})s")
                params[name] = value
        cond = " AND ".join(where)
        rows = await self._all(
            f"SELECT {_ALERT_COLS} FROM ev_alerts WHERE {cond} ORDER BY opened_at DESC, alert_id "
            "LIMIT %(limit)s OFFSET %(offset)s", {**params, "limit": limit, "offset": offset})
        count = await self._one(
            f"SELECT count(*) AS n FROM (SELECT 1 FROM ev_alerts WHERE {cond} LIMIT %(cap)s) t",
            {**params, "cap": ALERT_TOTAL_CAP})
        return rows, int(count["n"]) if count else 0

    async def open_alerts(self, battery_id: str, limit: int = 50) -> list[dict[str, Any]]:
        return await self._all(
            f"SELECT {_ALERT_COLS} FROM ev_alerts WHERE battery_id = %s AND resolved_at IS NULL "
            "ORDER BY opened_at DESC LIMIT %s", (battery_id, limit))

    # --- fleet -------------------------------------------------------------------------------

    async def fleet_rows(self) -> list[dict[str, Any]]:
        """One small row per pack (``battery_state`` holds one row per pack)."""
        return await self._all(
            "SELECT battery_id, time, charge_cycles, soh, rul_prediction AS rul_cycles, "
            "failure_probability, fault_flag FROM battery_state ORDER BY battery_id")

    async def open_alert_counts(self) -> list[dict[str, Any]]:
        return await self._all(
            "SELECT rule, severity, count(*)::int AS n FROM ev_alerts WHERE resolved_at IS NULL "
            "GROUP BY rule, severity")

    async def newest_model_version(self) -> str | None:
        row = await self._one("SELECT model_version FROM battery_state "
                              "ORDER BY scored_at DESC NULLS LAST LIMIT 1")
        return row["model_version"] if row else None

    # --- online accuracy ---------------------------------------------------------------------

    async def accuracy_fleet(self, window_s: int) -> dict[str, Any]:
        """The fleet's sums over the window (``newest``: start of the fleet's newest bucket)."""
        row = await self._one(
            f"SELECT (SELECT max(bucket) FROM ev_accuracy WHERE battery_id = '{FLEET}') AS newest, "
            f"json_build_object({_SUMS_JSON}) AS acc FROM ev_accuracy a "
            f"WHERE a.battery_id = '{FLEET}' AND {_IN_WINDOW}", {"window_s": window_s})
        return row or {"newest": None, "acc": None}

    async def accuracy_series(self, start: datetime, end: datetime, limit: int) -> list[dict[str, Any]]:
        """The fleet's buckets in ``[start, end)``, oldest first, at most ``limit``."""
        return await self._all(
            "SELECT bucket, pairs, rul_mae_cycles, rul_band_coverage, fault_detections, "
            "fault_detection_delay_s_sum / NULLIF(fault_detections, 0) AS fault_detection_delay_s_mean, "
            "failure_pairs, failure_probability_sum / NULLIF(failure_pairs, 0) AS failure_mean_probability, "
            "failure_observed::float8 / NULLIF(failure_pairs, 0) AS failure_observed_rate, "
            "failure_brier, (failure_observed::float8 / NULLIF(failure_pairs, 0)) "
            "* (1 - failure_observed::float8 / NULLIF(failure_pairs, 0)) AS failure_baseline_brier "
            f"FROM ev_accuracy WHERE battery_id = '{FLEET}' AND bucket >= %s AND bucket < %s "
            "ORDER BY bucket LIMIT %s", (start, end, limit))

    async def accuracy_batteries(self, window_s: int, limit: int) -> list[dict[str, Any]]:
        """Per pack, its sums over the window; the largest mean RUL error first, at most ``limit``."""
        return await self._all(
            f"SELECT a.battery_id, json_build_object({_SUMS_JSON}) AS acc FROM ev_accuracy a "
            f"WHERE a.battery_id <> '{FLEET}' AND {_IN_WINDOW} GROUP BY a.battery_id "
            "ORDER BY sum(a.rul_abs_error_sum) / sum(a.pairs) DESC, a.battery_id LIMIT %(limit)s",
            {"window_s": window_s, "limit": limit})

    async def ping(self) -> None:
        await self._all("SELECT 1 AS ok")


__all__ = ["AUTO_POINTS", "BUCKETS", "ReadModel", "SORT_COLUMNS", "choose_resolution"]
