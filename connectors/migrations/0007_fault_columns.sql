-- 0007: the twin's battery-level fault detection (prediction fields fault_score and fault_flag,
-- models/state.py) lands beside the reading-level anomaly score, in the readings and in the twin's
-- latest state. Nullable with no default: rows written before this migration read NULL (not
-- scored by a fault detector), and adding them is a catalogue change on a large or compressed
-- TimescaleDB hypertable (no table rewrite). Same on PostgreSQL and TimescaleDB.
ALTER TABLE ev_telemetry ADD COLUMN IF NOT EXISTS fault_score DOUBLE PRECISION;
ALTER TABLE ev_telemetry ADD COLUMN IF NOT EXISTS fault_flag BOOLEAN;
ALTER TABLE battery_state ADD COLUMN IF NOT EXISTS fault_score DOUBLE PRECISION;
ALTER TABLE battery_state ADD COLUMN IF NOT EXISTS fault_flag BOOLEAN;

COMMENT ON COLUMN ev_telemetry.fault_score IS 'The battery''s persistent fault score after this reading, 0-1 (an EMA of the anomaly score over service days).';
COMMENT ON COLUMN ev_telemetry.fault_flag IS 'The battery is flagged as faulty after this reading (hysteresis: opens at the model''s fault_score_open, clears below fault_score_clear).';
COMMENT ON COLUMN battery_state.fault_score IS 'Latest persistent fault score of the battery, 0-1.';
COMMENT ON COLUMN battery_state.fault_flag IS 'The battery is flagged as faulty now.';
