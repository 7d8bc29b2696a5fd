-- 0001: the sink tables. Same on PostgreSQL and TimescaleDB (0002 makes ev_telemetry a hypertable
-- where TimescaleDB is present). Units as in schemas/prediction.avsc and schemas/alert.avsc.

-- One row per scored telemetry reading. The primary key makes a replayed event a no-op.
CREATE TABLE IF NOT EXISTS ev_telemetry (
    time                 TIMESTAMPTZ      NOT NULL,
    battery_id           VARCHAR(50)      NOT NULL,
    soc                  DOUBLE PRECISION,
    soh                  DOUBLE PRECISION,
    voltage              DOUBLE PRECISION,
    current              DOUBLE PRECISION,
    temperature          DOUBLE PRECISION,
    charge_cycles        INTEGER,
    power_consumption    DOUBLE PRECISION,
    rul_prediction       DOUBLE PRECISION,
    failure_probability  DOUBLE PRECISION,
    rul_p10              DOUBLE PRECISION,
    rul_p90              DOUBLE PRECISION,
    anomaly_score        DOUBLE PRECISION,
    model_version        TEXT,
    event_id             TEXT,
    scored_at            TIMESTAMPTZ,
    PRIMARY KEY (time, battery_id)
);
CREATE INDEX IF NOT EXISTS ev_telemetry_battery_time_idx ON ev_telemetry (battery_id, time DESC);

COMMENT ON TABLE ev_telemetry IS 'Scored telemetry: one row per reading (ev.predictions.v1), key (time, battery_id).';
COMMENT ON COLUMN ev_telemetry.time IS 'Event time of the reading, UTC.';
COMMENT ON COLUMN ev_telemetry.soc IS 'State of charge, percent (0-100).';
COMMENT ON COLUMN ev_telemetry.soh IS 'State of health (BMS estimate), percent (0-100).';
COMMENT ON COLUMN ev_telemetry.voltage IS 'Pack terminal voltage, V.';
COMMENT ON COLUMN ev_telemetry.current IS 'Pack current, A; positive = discharge.';
COMMENT ON COLUMN ev_telemetry.temperature IS 'Highest pack temperature, degrees Celsius.';
COMMENT ON COLUMN ev_telemetry.charge_cycles IS 'Equivalent full cycles so far (count).';
COMMENT ON COLUMN ev_telemetry.power_consumption IS 'Power at the pack terminals, kW; positive = discharge.';
COMMENT ON COLUMN ev_telemetry.rul_prediction IS 'Remaining useful life P50 (rul_cycles), equivalent full cycles.';
COMMENT ON COLUMN ev_telemetry.failure_probability IS 'Probability (0-1) of failure within the model horizon.';
COMMENT ON COLUMN ev_telemetry.rul_p10 IS 'RUL band, 10th percentile, equivalent full cycles.';
COMMENT ON COLUMN ev_telemetry.rul_p90 IS 'RUL band, 90th percentile, equivalent full cycles.';
COMMENT ON COLUMN ev_telemetry.anomaly_score IS 'Anomaly score, 0-1 (dimensionless).';
COMMENT ON COLUMN ev_telemetry.event_id IS 'Id of the telemetry reading (a UUID from our producers; devices may send any text).';
COMMENT ON COLUMN ev_telemetry.scored_at IS 'When the prediction was made, UTC.';

-- One row per alert episode: inserted when it opens, updated once when it resolves.
CREATE TABLE IF NOT EXISTS ev_alerts (
    alert_id     TEXT             PRIMARY KEY,
    battery_id   VARCHAR(50)      NOT NULL,
    rule         TEXT             NOT NULL,
    severity     TEXT             NOT NULL,
    status       TEXT             NOT NULL,
    value        DOUBLE PRECISION,
    threshold    DOUBLE PRECISION,
    message      TEXT,
    event_id     TEXT,
    opened_at    TIMESTAMPTZ      NOT NULL,
    resolved_at  TIMESTAMPTZ,
    updated_at   TIMESTAMPTZ      NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS ev_alerts_open_idx ON ev_alerts (opened_at DESC) WHERE resolved_at IS NULL;
CREATE INDEX IF NOT EXISTS ev_alerts_battery_idx ON ev_alerts (battery_id, opened_at DESC);

COMMENT ON TABLE ev_alerts IS 'Alert episodes (ev.alerts.v1): OPENED rows, updated to RESOLVED with resolved_at.';
COMMENT ON COLUMN ev_alerts.value IS 'Value that opened the episode, in the unit of the rule''s signal.';
COMMENT ON COLUMN ev_alerts.threshold IS 'The rule''s threshold, same unit as value.';

-- The twin's latest state: one row per battery, only ever moved forward in time.
CREATE TABLE IF NOT EXISTS battery_state (
    battery_id           VARCHAR(50)      PRIMARY KEY,
    time                 TIMESTAMPTZ      NOT NULL,
    soc                  DOUBLE PRECISION,
    soh                  DOUBLE PRECISION,
    voltage              DOUBLE PRECISION,
    current              DOUBLE PRECISION,
    temperature          DOUBLE PRECISION,
    charge_cycles        INTEGER,
    power_consumption    DOUBLE PRECISION,
    rul_prediction       DOUBLE PRECISION,
    failure_probability  DOUBLE PRECISION,
    rul_p10              DOUBLE PRECISION,
    rul_p90              DOUBLE PRECISION,
    anomaly_score        DOUBLE PRECISION,
    model_version        TEXT,
    event_id             TEXT,
    scored_at            TIMESTAMPTZ,
    updated_at           TIMESTAMPTZ      NOT NULL DEFAULT now()
);

COMMENT ON TABLE battery_state IS 'Latest twin state per battery; an upsert only wins with a newer time.';
