-- requires: vec
-- The vector index of memories (sqlite-vec): 1-bit codes, one partition per layer, searched for
-- candidates that are then re-scored exactly against memories.embedding. Rebuilt from memories.

CREATE VIRTUAL TABLE memories_vec USING vec0(
    memory_id INTEGER PRIMARY KEY,
    layer TEXT PARTITION KEY,
    code BIT[384]
);
