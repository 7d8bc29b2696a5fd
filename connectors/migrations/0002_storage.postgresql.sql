-- 0002 (plain PostgreSQL): a BRIN index on time (rows arrive roughly in time order, so it stays
-- tiny and prunes time-range scans); (battery_id, time DESC) comes from 0001. No retention here:
-- without TimescaleDB, drop old rows yourself (DELETE FROM ev_telemetry WHERE time < ...).
CREATE INDEX IF NOT EXISTS ev_telemetry_time_brin ON ev_telemetry USING brin (time);
