-- Query plans of apalis-sqlite's hot queries (EXPLAIN QUERY PLAN; see BENCHMARKS.md):
-- * the acknowledgement (UPDATE ... FROM json_each WHERE Jobs.id = ... AND lock_by = ?) used LIdx
--   and so read every row the worker ever processed (finished rows keep lock_by);
-- * the lock (UPDATE ... WHERE id IN (json_each) AND status IN (...)) used the status index and
--   read every pending, queued and failed row: the whole backlog, for each batch.
-- Without those two indexes both go by the job id. The orphan re-enqueue, which did need lock_by,
-- gets a partial index over the few rows it looks at.
DROP INDEX IF EXISTS LIdx;
DROP INDEX IF EXISTS idx_jobs_status_run_at;
CREATE INDEX IF NOT EXISTS idx_jobs_active_lock_by ON Jobs (lock_by) WHERE status IN ('Running', 'Queued');
