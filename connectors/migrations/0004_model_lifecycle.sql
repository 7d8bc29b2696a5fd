-- 0004: what retraining needs (evtwin retrain, training/retrain.py). Same on PostgreSQL and TimescaleDB.

-- The simulator's ground truth (ev.groundtruth.v1, written by `evtwin sink --kind groundtruth`),
-- joined with ev_telemetry on (time, battery_id) to label what the twin collected. The primary key
-- makes a replayed record a no-op. Never a model input.
CREATE TABLE IF NOT EXISTS ev_ground_truth (
    time                    TIMESTAMPTZ      NOT NULL,
    battery_id              VARCHAR(50)      NOT NULL,
    event_id                TEXT,
    true_soh                DOUBLE PRECISION,
    true_rul_cycles         DOUBLE PRECISION,
    failure_within_horizon  BOOLEAN,
    fault                   TEXT,
    PRIMARY KEY (time, battery_id)
);
CREATE INDEX IF NOT EXISTS ev_ground_truth_battery_time_idx ON ev_ground_truth (battery_id, time DESC);

COMMENT ON TABLE ev_ground_truth IS 'Simulator ground truth per reading (ev.groundtruth.v1), key (time, battery_id); labels for retraining.';
COMMENT ON COLUMN ev_ground_truth.true_soh IS 'True state of health, percent (0-100).';
COMMENT ON COLUMN ev_ground_truth.true_rul_cycles IS 'True remaining useful life, equivalent full cycles.';
COMMENT ON COLUMN ev_ground_truth.failure_within_horizon IS 'End of life or a fault onset within the labelling horizon.';
COMMENT ON COLUMN ev_ground_truth.fault IS 'Active injected fault, or none.';

-- One row per gate decision of a retraining run: promoted or rejected, with both sets of metrics.
CREATE TABLE IF NOT EXISTS model_promotions (
    id                       BIGSERIAL        PRIMARY KEY,
    decided_at               TIMESTAMPTZ      NOT NULL DEFAULT now(),
    decision                 TEXT             NOT NULL CHECK (decision IN ('promoted', 'rejected')),
    reason                   TEXT             NOT NULL,
    candidate_version        TEXT             NOT NULL,
    candidate_model_version  TEXT,
    champion_version         TEXT,
    champion_model_version   TEXT,
    primary_metric           TEXT             NOT NULL,
    candidate_metrics        JSONB            NOT NULL,
    champion_metrics         JSONB,
    thresholds               JSONB            NOT NULL,
    eval_rows                INTEGER          NOT NULL,
    eval_batteries           INTEGER          NOT NULL,
    train_rows               INTEGER          NOT NULL,
    collected_rows           INTEGER          NOT NULL,
    mlflow_run_id            TEXT,
    trigger                  TEXT             NOT NULL DEFAULT 'cli'
);
CREATE INDEX IF NOT EXISTS model_promotions_decided_idx ON model_promotions (decided_at DESC);

COMMENT ON TABLE model_promotions IS 'Gate decisions of evtwin retrain: candidate vs champion on the same held-out rows.';
COMMENT ON COLUMN model_promotions.candidate_version IS 'Registry version of the candidate (v3).';
COMMENT ON COLUMN model_promotions.champion_version IS 'Registry version current when the gate ran (NULL: none).';
COMMENT ON COLUMN model_promotions.candidate_metrics IS 'Candidate metrics on the gate rows (JSON, metric -> value).';
COMMENT ON COLUMN model_promotions.champion_metrics IS 'Champion metrics on the same rows.';
COMMENT ON COLUMN model_promotions.thresholds IS 'Gate settings used (primary, gated metrics, tolerances).';
