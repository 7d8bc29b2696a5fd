-- 0003 (TimescaleDB): the hourly rollup as a continuous aggregate, refreshed by a policy, with
-- real-time aggregation for the newest hour. Same columns as the PostgreSQL variant.
-- time_bucket('1 hour') and date_bin('1 hour', ..., '2000-01-01') give the same buckets.
CREATE MATERIALIZED VIEW IF NOT EXISTS ev_telemetry_hourly
WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
SELECT time_bucket(INTERVAL '1 hour', time) AS bucket,
       battery_id,
       count(*)                 AS samples,
       avg(soc)                 AS soc_avg,
       min(soc)                 AS soc_min,
       max(soc)                 AS soc_max,
       avg(soh)                 AS soh_avg,
       min(soh)                 AS soh_min,
       avg(voltage)             AS voltage_avg,
       avg(current)             AS current_avg,
       avg(temperature)         AS temperature_avg,
       max(temperature)         AS temperature_max,
       max(charge_cycles)       AS charge_cycles_max,
       avg(power_consumption)   AS power_avg,
       avg(rul_prediction)      AS rul_avg,
       avg(rul_p10)             AS rul_p10_avg,
       avg(rul_p90)             AS rul_p90_avg,
       avg(failure_probability) AS failure_probability_avg,
       max(failure_probability) AS failure_probability_max,
       max(anomaly_score)       AS anomaly_score_max
FROM ev_telemetry
GROUP BY time_bucket(INTERVAL '1 hour', time), battery_id
WITH NO DATA;

SELECT add_continuous_aggregate_policy('ev_telemetry_hourly',
    start_offset => INTERVAL '3 days', end_offset => INTERVAL '1 hour',
    schedule_interval => INTERVAL '15 minutes', if_not_exists => TRUE);
