-- Memory: episodic (permanent), working (expires), procedural (learned patterns). This table is the
-- source of truth; the vector and full-text indexes (migrations 5 and 6) are rebuilt from it.

CREATE TABLE memories (
    id               INTEGER PRIMARY KEY,
    layer            TEXT NOT NULL CHECK (layer IN ('episodic', 'working', 'procedural')),
    content          TEXT NOT NULL,
    tags             TEXT NOT NULL DEFAULT '[]',
    task_id          TEXT,
    agent            TEXT,
    source           TEXT NOT NULL DEFAULT 'agent',
    importance       REAL NOT NULL DEFAULT 0.5 CHECK (importance >= 0 AND importance <= 1),
    confidence       REAL CHECK (confidence IS NULL OR (confidence >= 0 AND confidence <= 1)),
    access_count     INTEGER NOT NULL DEFAULT 0,
    last_accessed_at INTEGER,
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL,
    expires_at       INTEGER,
    content_hash     TEXT NOT NULL,
    model            TEXT NOT NULL,
    -- float32 × 384, little-endian: a wrong-sized vector would break every query, so refuse it.
    embedding        BLOB NOT NULL CHECK (length(embedding) = 1536)
);
CREATE INDEX memories_by_layer ON memories(layer, created_at);
CREATE INDEX memories_by_task ON memories(task_id) WHERE task_id IS NOT NULL;
CREATE INDEX memories_expiring ON memories(expires_at) WHERE expires_at IS NOT NULL;
CREATE INDEX memories_by_hash ON memories(layer, content_hash);

CREATE TABLE memory_tags (
    tag       TEXT NOT NULL,
    memory_id INTEGER NOT NULL,
    PRIMARY KEY (tag, memory_id)
);
CREATE INDEX memory_tags_by_memory ON memory_tags(memory_id);

-- A learned (procedural) memory and the episodes it was learned from.
CREATE TABLE memory_evidence (
    memory_id   INTEGER NOT NULL,
    evidence_id INTEGER NOT NULL,
    PRIMARY KEY (memory_id, evidence_id)
);
CREATE INDEX memory_evidence_by_evidence ON memory_evidence(evidence_id);

-- Which memories were handed to an agent with a task, so the task's outcome can rate them.
CREATE TABLE memory_uses (
    task_id   TEXT NOT NULL,
    memory_id INTEGER NOT NULL,
    agent     TEXT NOT NULL,
    used_at   INTEGER NOT NULL,
    PRIMARY KEY (task_id, memory_id)
);
