-- Task outcomes waiting to become memory. A completion writes its row in the same transaction as the
-- task's new state, so nothing is lost if the process dies; a background worker in each server (or
-- the CLI, at once) turns rows into memories — embedding, duplicate merge, procedural learning — off
-- the request path, and deletes them. A worker claims rows for a while; rows whose claim lapsed (the
-- worker died) are taken again by the next one.

CREATE TABLE memory_backlog (
    id            INTEGER PRIMARY KEY,
    task_id       TEXT NOT NULL,
    agent         TEXT NOT NULL,
    summary       TEXT NOT NULL,
    learnings     TEXT NOT NULL DEFAULT '[]',
    failed        INTEGER NOT NULL DEFAULT 0,
    created_at    INTEGER NOT NULL,
    claimed_by    TEXT,
    claimed_until INTEGER
);
CREATE INDEX memory_backlog_by_claim ON memory_backlog(claimed_until);
