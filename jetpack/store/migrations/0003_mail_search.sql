-- requires: fts5
-- Full-text index over message subjects and bodies. Engines without FTS5 skip this migration and
-- search falls back to a plain scan (jetpack/mail/search.py); the index can be rebuilt any time.

CREATE VIRTUAL TABLE messages_fts USING fts5(
    subject, body, content='messages', content_rowid='id', tokenize='unicode61 remove_diacritics 2'
);

CREATE TRIGGER messages_fts_insert AFTER INSERT ON messages
BEGIN
    INSERT INTO messages_fts(rowid, subject, body) VALUES (NEW.id, NEW.subject, NEW.body);
END;

INSERT INTO messages_fts(messages_fts) VALUES ('rebuild');
