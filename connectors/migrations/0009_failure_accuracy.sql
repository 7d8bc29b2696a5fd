-- 0009: online accuracy of the failure probability (issue 11): each pair keeps the predicted
-- failure_probability and the truth's failure_within_horizon, and ev_accuracy the sums that add up
-- to the calibration of any window (mean probability vs observed rate, Brier score). Pairs stored
-- before this migration read NULL and count in no failure sum; defaults of 0 keep the old bucket
-- rows additive (a catalogue change, no table rewrite). Same on PostgreSQL and TimescaleDB.
ALTER TABLE ev_accuracy_pairs ADD COLUMN IF NOT EXISTS failure_probability DOUBLE PRECISION;
ALTER TABLE ev_accuracy_pairs ADD COLUMN IF NOT EXISTS failure_within_horizon BOOLEAN;
ALTER TABLE ev_accuracy ADD COLUMN IF NOT EXISTS failure_pairs BIGINT NOT NULL DEFAULT 0;
ALTER TABLE ev_accuracy ADD COLUMN IF NOT EXISTS failure_probability_sum DOUBLE PRECISION NOT NULL DEFAULT 0;
ALTER TABLE ev_accuracy ADD COLUMN IF NOT EXISTS failure_observed BIGINT NOT NULL DEFAULT 0;
ALTER TABLE ev_accuracy ADD COLUMN IF NOT EXISTS failure_sq_error_sum DOUBLE PRECISION NOT NULL DEFAULT 0;
ALTER TABLE ev_accuracy ADD COLUMN IF NOT EXISTS failure_brier DOUBLE PRECISION;

COMMENT ON COLUMN ev_accuracy_pairs.failure_probability IS 'Predicted probability (0-1) of failure within the horizon.';
COMMENT ON COLUMN ev_accuracy_pairs.failure_within_horizon IS 'The truth: end of life or a fault within the horizon.';
COMMENT ON COLUMN ev_accuracy.failure_pairs IS 'Pairs with both a failure probability and a failure label (count).';
COMMENT ON COLUMN ev_accuracy.failure_probability_sum IS 'Sum of their predicted failure probabilities (mean = sum / failure_pairs).';
COMMENT ON COLUMN ev_accuracy.failure_observed IS 'Those whose truth says failure within the horizon (count; rate = / failure_pairs).';
COMMENT ON COLUMN ev_accuracy.failure_sq_error_sum IS 'Sum of (probability - label)^2 (Brier score = sum / failure_pairs).';
COMMENT ON COLUMN ev_accuracy.failure_brier IS 'failure_sq_error_sum / failure_pairs of the bucket; NULL without such pairs.';
