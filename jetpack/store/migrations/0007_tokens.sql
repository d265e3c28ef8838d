-- Bearer tokens for the HTTP transports (jetpack token create|list|revoke).
-- The secret itself is never stored: only its SHA-256 hash (to verify a presented token) and a
-- short prefix of it (to recognise a token in listings). A token may be bound to one agent name.

CREATE TABLE tokens (
    id           INTEGER PRIMARY KEY,
    name         TEXT NOT NULL DEFAULT '',
    prefix       TEXT NOT NULL UNIQUE,
    secret_hash  TEXT NOT NULL UNIQUE,
    agent        TEXT,
    created_at   INTEGER NOT NULL,
    created_by   TEXT NOT NULL,
    last_used_at INTEGER,
    revoked_at   INTEGER,
    revoked_by   TEXT
);

-- "Is this agent name bound to a live token?" (asked when a session takes a name).
CREATE INDEX tokens_by_agent ON tokens(agent, revoked_at);
