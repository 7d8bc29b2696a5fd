-- 0008 (TimescaleDB): nothing to do. The hourly rollup is a continuous aggregate that TimescaleDB
-- refreshes incrementally by its own policy (0003); on plain PostgreSQL the sink now keeps it with
-- every batch (0008_incremental_rollup.postgresql.sql).
SELECT 1;
