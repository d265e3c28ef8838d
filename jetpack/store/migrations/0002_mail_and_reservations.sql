-- Agent Mail: messages, per-recipient deliveries with a durable cursor, topics; advisory file reservations.

CREATE TABLE messages (
    id           INTEGER PRIMARY KEY,
    thread_id    TEXT NOT NULL,
    sender       TEXT NOT NULL,
    sender_kind  TEXT NOT NULL CHECK (sender_kind IN ('agent', 'human', 'system')),
    subject      TEXT NOT NULL,
    body         TEXT NOT NULL DEFAULT '',
    importance   TEXT NOT NULL DEFAULT 'normal' CHECK (importance IN ('low', 'normal', 'high', 'urgent')),
    ack_required INTEGER NOT NULL DEFAULT 0,
    kind         TEXT NOT NULL DEFAULT 'note',
    task_id      TEXT,
    topic        TEXT,
    reply_to     INTEGER,
    addressed_to TEXT NOT NULL DEFAULT '[]',  -- JSON: what the sender wrote in `to` (names, '*')
    created_at   INTEGER NOT NULL
);
CREATE INDEX messages_by_thread ON messages(thread_id, id);

-- One row per (recipient, message). Its id orders a recipient's inbox and is the fetch cursor:
-- ids grow in commit order because writes are serialised.
CREATE TABLE deliveries (
    id           INTEGER PRIMARY KEY,
    message_id   INTEGER NOT NULL REFERENCES messages(id) DEFERRABLE INITIALLY DEFERRED,
    recipient    TEXT NOT NULL,
    urgent       INTEGER NOT NULL,  -- importance high or urgent
    ack_required INTEGER NOT NULL,
    read_at      INTEGER,
    acked_at     INTEGER,
    UNIQUE (recipient, message_id)
);
CREATE INDEX deliveries_by_recipient ON deliveries(recipient, id);
-- What the one-line notice on every tool result counts, and the unread count.
CREATE INDEX deliveries_needing_attention ON deliveries(recipient)
    WHERE (urgent = 1 AND read_at IS NULL) OR (ack_required = 1 AND acked_at IS NULL);
CREATE INDEX deliveries_unread ON deliveries(recipient) WHERE read_at IS NULL;

CREATE TABLE mail_cursors (
    recipient   TEXT PRIMARY KEY,
    delivery_id INTEGER NOT NULL
);

CREATE TABLE topic_subscriptions (
    topic      TEXT NOT NULL,
    agent      TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (topic, agent)
);

-- Advisory file reservations. `prefix` is the pattern's leading literal segments: two patterns can
-- overlap only if one prefix is a segment-prefix of the other, so candidates are an index lookup.
CREATE TABLE reservations (
    id          INTEGER PRIMARY KEY,
    agent       TEXT NOT NULL,
    pattern     TEXT NOT NULL,
    prefix      TEXT NOT NULL,
    shared      INTEGER NOT NULL DEFAULT 0,   -- observe-only: never conflicts with other shared ones
    exclusive   INTEGER NOT NULL DEFAULT 0,   -- made with mode=exclusive: blocks others' commits
    reason      TEXT,
    task_id     TEXT,
    intent      INTEGER NOT NULL DEFAULT 0,   -- made by announce_intent; closed by complete_task
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL,
    released_at INTEGER
);
CREATE INDEX reservations_active_by_prefix ON reservations(prefix) WHERE released_at IS NULL;
CREATE INDEX reservations_active_by_agent ON reservations(agent) WHERE released_at IS NULL;

-- Files an agent reported touching when it completed the task (closing its intent).
ALTER TABLE tasks ADD COLUMN files_touched TEXT NOT NULL DEFAULT '[]';
