-- Quality gates: snapshots of the configured commands' results (tests, lint, types, build, coverage).
--
-- A 'baseline' snapshot is what the project looked like when it was recorded (legacy failures
-- included); a 'check' snapshot is compared with the latest baseline and keeps the verdict, the
-- regressions and the notes. Gate results are one JSON array per snapshot: they are always read
-- whole, and a snapshot is written once and never updated.

CREATE TABLE quality_snapshots (
    id           INTEGER PRIMARY KEY,
    kind         TEXT NOT NULL CHECK (kind IN ('baseline', 'check')),
    commit_sha   TEXT,                          -- HEAD of the directory the gates ran in, if a git repository
    dirty        INTEGER NOT NULL DEFAULT 0,    -- 1 when that directory had uncommitted changes
    directory    TEXT NOT NULL,
    task_id      TEXT,                          -- the task a check was run for
    actor        TEXT NOT NULL,
    results      TEXT NOT NULL,                 -- JSON: one object per gate
    baseline_id  INTEGER REFERENCES quality_snapshots(id),
    passed       INTEGER,                       -- checks: 1 no regression, 0 regressions; NULL for baselines
    regressions  TEXT NOT NULL DEFAULT '[]',    -- JSON: what regressed, with details
    notes        TEXT NOT NULL DEFAULT '[]',    -- JSON: what did not block (legacy failures, fixes)
    created_at   INTEGER NOT NULL
);

-- The latest baseline; the recent checks (of a task).
CREATE INDEX quality_snapshots_by_kind ON quality_snapshots(kind, id);
CREATE INDEX quality_snapshots_by_task ON quality_snapshots(task_id, id) WHERE task_id IS NOT NULL;
