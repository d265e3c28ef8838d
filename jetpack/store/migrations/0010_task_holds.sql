-- Holds: a push-style claim strategy (round-robin, load-balanced; jetpack/swarm/holds.py) pre-assigns a
-- ready task to an idle agent for a few seconds. Until the hold lapses only that agent may claim the
-- task, and its own claims take it first. A hold on a task that is no longer ready means nothing.
--
-- The claim statements look holds up by task (the primary key) and by agent; the table holds at most
-- one row per ready task and is usually empty, so claims that never meet a hold pay one empty lookup.

CREATE TABLE task_holds (
    task_id    TEXT PRIMARY KEY REFERENCES tasks(id) DEFERRABLE INITIALLY DEFERRED,
    agent      TEXT NOT NULL,
    strategy   TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
);
CREATE INDEX task_holds_by_agent ON task_holds(agent, expires_at);
