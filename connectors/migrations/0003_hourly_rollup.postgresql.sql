-- 0003 (plain PostgreSQL): the hourly rollup as a materialized view. The sink refreshes it
-- periodically (connectors.timescale.refresh_rollup, CONCURRENTLY thanks to the unique index).
-- Same columns as the TimescaleDB continuous aggregate.
CREATE MATERIALIZED VIEW IF NOT EXISTS ev_telemetry_hourly AS
SELECT date_bin(INTERVAL '1 hour', time, TIMESTAMPTZ '2000-01-01 00:00:00+00') AS bucket,
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
GROUP BY date_bin(INTERVAL '1 hour', time, TIMESTAMPTZ '2000-01-01 00:00:00+00'), battery_id
WITH DATA;

CREATE UNIQUE INDEX IF NOT EXISTS ev_telemetry_hourly_key ON ev_telemetry_hourly (bucket, battery_id);
