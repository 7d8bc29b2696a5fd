-- 0006 (TimescaleDB): the accuracy pairs and buckets become hypertables; pairs are dropped after
-- 14 days (they only guard replays, and the topics keep 7 days), buckets after 90 days as
-- ev_telemetry.
SELECT create_hypertable('ev_accuracy_pairs', by_range('time', INTERVAL '1 day'),
                         if_not_exists => TRUE, migrate_data => TRUE);
SELECT add_retention_policy('ev_accuracy_pairs', INTERVAL '14 days', if_not_exists => TRUE);

SELECT create_hypertable('ev_accuracy', by_range('bucket', INTERVAL '7 days'),
                         if_not_exists => TRUE, migrate_data => TRUE);
SELECT add_retention_policy('ev_accuracy', INTERVAL '90 days', if_not_exists => TRUE);
