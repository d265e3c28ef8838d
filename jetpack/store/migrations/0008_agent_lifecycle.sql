-- Agent lifecycle and recovery: a retried task waits (exponential backoff) before it is ready again.
--
-- While it waits, a task is 'open' with retry_at in the future; the readiness rule holds it back
-- until retry_at has passed, and the sweep that runs before every claim (and in every server's
-- sweeper) makes it ready then. Only tasks in a retry wait have a retry_at, so the index stays tiny
-- and claims, which never write this column, do not pay for it.

ALTER TABLE tasks ADD COLUMN retry_at INTEGER;
CREATE INDEX tasks_retry_due ON tasks(retry_at) WHERE retry_at IS NOT NULL;
