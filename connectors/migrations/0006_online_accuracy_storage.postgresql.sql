-- 0006 (plain PostgreSQL): a BRIN index on the pairs' time (they arrive in time order); the
-- accuracy sink deletes pairs older than 14 days itself (TimescaleDB's retention does it there).
-- ev_accuracy is small (a row per battery and bucket): no retention here.
CREATE INDEX IF NOT EXISTS ev_accuracy_pairs_time_brin ON ev_accuracy_pairs USING brin (time);
