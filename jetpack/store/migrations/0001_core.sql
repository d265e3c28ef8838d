-- Core schema: tasks, their hierarchy and dependencies, the event log, agents.
-- Times are integer milliseconds since the Unix epoch (UTC).
-- Only SQL that a libSQL server also accepts: no recursive CTEs, no WITHOUT ROWID.

CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

INSERT INTO meta(key, value) VALUES ('graph_version', '0');

-- A guard statement inserts (0) here to abort its batch: see jetpack.store.port.expect().
CREATE TABLE write_guards (
    ok INTEGER NOT NULL CONSTRAINT write_guard_failed CHECK (ok = 1)
);

CREATE TABLE tasks (
    id               TEXT PRIMARY KEY,
    parent_id        TEXT REFERENCES tasks(id) DEFERRABLE INITIALLY DEFERRED,
    depth            INTEGER NOT NULL CHECK (depth >= 1),
    title            TEXT NOT NULL,
    description      TEXT NOT NULL DEFAULT '',
    acceptance       TEXT NOT NULL DEFAULT '',
    state            TEXT NOT NULL CHECK (state IN
                        ('open', 'ready', 'claimed', 'in_progress', 'done', 'failed', 'cancelled', 'blocked')),
    priority         INTEGER NOT NULL DEFAULT 2 CHECK (priority BETWEEN 0 AND 4),
    skills           TEXT NOT NULL DEFAULT '[]',
    files            TEXT NOT NULL DEFAULT '[]',
    labels           TEXT NOT NULL DEFAULT '[]',
    metadata         TEXT NOT NULL DEFAULT '{}',
    estimate_minutes INTEGER CHECK (estimate_minutes IS NULL OR estimate_minutes >= 0),
    created_by       TEXT NOT NULL,
    assignee         TEXT,
    lease_expires_at INTEGER,
    attempts         INTEGER NOT NULL DEFAULT 0,
    max_attempts     INTEGER NOT NULL DEFAULT 3 CHECK (max_attempts >= 1),
    blocked_reason   TEXT,
    progress_note    TEXT,
    result_summary   TEXT,
    next_child       INTEGER NOT NULL DEFAULT 0,
    -- Who made the latest change, why, and a note: copied into events by the triggers below.
    changed_by       TEXT,
    change_kind      TEXT,
    change_note      TEXT,
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL,
    claimed_at       INTEGER,
    closed_at        INTEGER
);

-- "What is ready" (and any one state) is an index range scan in claim order. Claimed tasks are
-- few (one or two per agent), so lease sweeps and renewals scan them through this index too.
-- Every index on a column that claims change costs a write per claim: keep them few.
CREATE INDEX tasks_by_state ON tasks(state, priority, created_at, id);
CREATE INDEX tasks_children ON tasks(parent_id);

-- Closure of the hierarchy (distance 0 = the task itself); ids never move, so rows never change.
CREATE TABLE task_ancestors (
    task_id     TEXT NOT NULL REFERENCES tasks(id) DEFERRABLE INITIALLY DEFERRED,
    ancestor_id TEXT NOT NULL REFERENCES tasks(id) DEFERRABLE INITIALLY DEFERRED,
    distance    INTEGER NOT NULL,
    PRIMARY KEY (task_id, ancestor_id)
);
CREATE INDEX task_ancestors_by_ancestor ON task_ancestors(ancestor_id, distance);

-- task_id depends on depends_on. Only 'blocks' holds back readiness.
CREATE TABLE dependencies (
    task_id    TEXT NOT NULL REFERENCES tasks(id) DEFERRABLE INITIALLY DEFERRED,
    depends_on TEXT NOT NULL REFERENCES tasks(id) DEFERRABLE INITIALLY DEFERRED,
    kind       TEXT NOT NULL CHECK (kind IN ('blocks', 'related', 'discovered-from')),
    created_by TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (task_id, depends_on),
    CHECK (task_id != depends_on)
);
CREATE INDEX dependencies_by_target ON dependencies(depends_on, kind);

-- Append-only audit log read by mail, the dashboard and metrics. id is the resume cursor.
CREATE TABLE events (
    id           INTEGER PRIMARY KEY,
    at           INTEGER NOT NULL,
    actor        TEXT NOT NULL,
    kind         TEXT NOT NULL,
    task_id      TEXT,
    before_state TEXT,
    after_state  TEXT,
    note         TEXT,
    data         TEXT
);
CREATE INDEX events_by_task ON events(task_id, id);

CREATE TRIGGER tasks_created_event AFTER INSERT ON tasks
BEGIN
    INSERT INTO events(at, actor, kind, task_id, before_state, after_state, note)
    VALUES (NEW.created_at, NEW.created_by, 'created', NEW.id, NULL, NEW.state, NULL);
END;

CREATE TRIGGER tasks_state_event AFTER UPDATE OF state ON tasks
WHEN OLD.state IS NOT NEW.state
BEGIN
    INSERT INTO events(at, actor, kind, task_id, before_state, after_state, note)
    VALUES (NEW.updated_at, coalesce(NEW.changed_by, 'system'), coalesce(NEW.change_kind, 'state_changed'),
            NEW.id, OLD.state, NEW.state, NEW.change_note);
END;

CREATE TABLE agents (
    name              TEXT PRIMARY KEY,
    skills            TEXT NOT NULL DEFAULT '[]',
    session_id        TEXT NOT NULL,
    client_name       TEXT,
    client_session_id TEXT,
    pid               INTEGER,
    host              TEXT,
    registered_at     INTEGER NOT NULL,
    last_seen_at      INTEGER NOT NULL,
    ended_at          INTEGER
);
