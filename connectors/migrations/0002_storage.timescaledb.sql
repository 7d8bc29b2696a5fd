-- 0002 (TimescaleDB): ev_telemetry becomes a hypertable (1-day chunks), compressed per battery after
-- 7 days, dropped after 90 days.
CREATE EXTENSION IF NOT EXISTS timescaledb;

SELECT create_hypertable('ev_telemetry', by_range('time', INTERVAL '1 day'),
                         if_not_exists => TRUE, migrate_data => TRUE);

ALTER TABLE ev_telemetry SET (
    timescaledb.compress,
    timescaledb.compress_segmentby = 'battery_id',
    timescaledb.compress_orderby = 'time DESC'
);
SELECT add_compression_policy('ev_telemetry', INTERVAL '7 days', if_not_exists => TRUE);
SELECT add_retention_policy('ev_telemetry', INTERVAL '90 days', if_not_exists => TRUE);
