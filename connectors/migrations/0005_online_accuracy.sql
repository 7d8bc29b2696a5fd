-- 0005: online accuracy (evtwin sink --kind accuracy, streams/sinks/accuracy.py): predictions joined
-- with the simulator's ground truth on the reading's event id. Same on PostgreSQL and TimescaleDB
-- (0006 makes the time-keyed tables hypertables where TimescaleDB is present).

-- One row per joined reading. The primary key makes a replayed pair a no-op, and only pairs new
-- here are added to ev_accuracy (in the same transaction): a replay or a restart counts nothing
-- twice. Kept 14 days (longer than the topics keep records to replay).
CREATE TABLE IF NOT EXISTS ev_accuracy_pairs (
    time               TIMESTAMPTZ      NOT NULL,
    battery_id         VARCHAR(50)      NOT NULL,
    event_id           TEXT             NOT NULL,
    rul_cycles         DOUBLE PRECISION NOT NULL,
    rul_p10            DOUBLE PRECISION NOT NULL,
    rul_p90            DOUBLE PRECISION NOT NULL,
    true_rul_cycles    DOUBLE PRECISION NOT NULL,
    rul_abs_error      DOUBLE PRECISION NOT NULL,
    in_band            BOOLEAN          NOT NULL,
    flagged            BOOLEAN          NOT NULL,
    fault              TEXT             NOT NULL,
    detection_delay_s  DOUBLE PRECISION,
    PRIMARY KEY (time, battery_id)
);

COMMENT ON TABLE ev_accuracy_pairs IS 'A prediction and the ground truth of the same reading, key (time, battery_id).';
COMMENT ON COLUMN ev_accuracy_pairs.rul_abs_error IS '|rul_cycles - true_rul_cycles|, equivalent full cycles.';
COMMENT ON COLUMN ev_accuracy_pairs.in_band IS 'rul_p10 <= true_rul_cycles <= rul_p90.';
COMMENT ON COLUMN ev_accuracy_pairs.flagged IS 'The prediction flags a fault (fault flag, else anomaly score at the anomaly alert threshold).';
COMMENT ON COLUMN ev_accuracy_pairs.detection_delay_s IS 'On the pair that detected its battery''s fault: seconds of event time since the onset.';

-- Sums per bucket of event time (EVTWIN_ACCURACY_BUCKET_S), per battery and for the fleet
-- (battery_id '*'): add buckets up for any window (MAE = sum of errors / sum of pairs).
CREATE TABLE IF NOT EXISTS ev_accuracy (
    bucket                       TIMESTAMPTZ      NOT NULL,
    battery_id                   VARCHAR(50)      NOT NULL,
    pairs                        BIGINT           NOT NULL,
    rul_abs_error_sum            DOUBLE PRECISION NOT NULL,
    rul_in_band                  BIGINT           NOT NULL,
    fault_detections             INTEGER          NOT NULL,
    fault_detection_delay_s_sum  DOUBLE PRECISION NOT NULL,
    rul_mae_cycles               DOUBLE PRECISION NOT NULL,
    rul_band_coverage            DOUBLE PRECISION NOT NULL,
    updated_at                   TIMESTAMPTZ      NOT NULL DEFAULT now(),
    PRIMARY KEY (bucket, battery_id)
);
CREATE INDEX IF NOT EXISTS ev_accuracy_battery_bucket_idx ON ev_accuracy (battery_id, bucket DESC);

COMMENT ON TABLE ev_accuracy IS 'Online accuracy per bucket of event time, per battery and fleet-wide (battery_id ''*'').';
COMMENT ON COLUMN ev_accuracy.bucket IS 'Start of the bucket (event time, UTC); width EVTWIN_ACCURACY_BUCKET_S.';
COMMENT ON COLUMN ev_accuracy.pairs IS 'Predictions joined with their ground truth in the bucket (count).';
COMMENT ON COLUMN ev_accuracy.rul_abs_error_sum IS 'Sum of |predicted - true| RUL, equivalent full cycles.';
COMMENT ON COLUMN ev_accuracy.rul_in_band IS 'Pairs whose true RUL lies inside the P10-P90 band (count).';
COMMENT ON COLUMN ev_accuracy.fault_detections IS 'Fault episodes first flagged in the bucket (count).';
COMMENT ON COLUMN ev_accuracy.fault_detection_delay_s_sum IS 'Sum of their onset-to-flag delays, seconds of event time.';
COMMENT ON COLUMN ev_accuracy.rul_mae_cycles IS 'rul_abs_error_sum / pairs: RUL MAE of the bucket, equivalent full cycles.';
COMMENT ON COLUMN ev_accuracy.rul_band_coverage IS 'rul_in_band / pairs: fraction (0-1) of truths inside the band.';

-- Each battery's fault episode as the truth tells it, and when the twin first flagged it.
CREATE TABLE IF NOT EXISTS ev_accuracy_faults (
    battery_id         VARCHAR(50)      PRIMARY KEY,
    fault              TEXT             NOT NULL,
    onset              TIMESTAMPTZ,
    detected_at        TIMESTAMPTZ,
    detection_delay_s  DOUBLE PRECISION,
    last_truth         TIMESTAMPTZ      NOT NULL,
    updated_at         TIMESTAMPTZ      NOT NULL DEFAULT now()
);

COMMENT ON TABLE ev_accuracy_faults IS 'Per battery: the fault of its newest truth, the onset of its current or last episode and when it was first flagged.';
COMMENT ON COLUMN ev_accuracy_faults.fault IS 'Fault active per the newest episode change (none when it cleared).';
COMMENT ON COLUMN ev_accuracy_faults.detection_delay_s IS 'detected_at - onset, seconds of event time; NULL while undetected.';
COMMENT ON COLUMN ev_accuracy_faults.last_truth IS 'Event time of the truth that made the last change.';
