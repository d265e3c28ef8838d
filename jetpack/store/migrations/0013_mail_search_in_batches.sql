-- requires: fts5
-- send_mail stops indexing each message as it is written: FTS5 writes a new index segment per
-- transaction, which was 40% of a send and a third of the pages it wrote. Searches and the
-- servers' sweep add the messages sent since `indexed_through` in batches instead
-- (jetpack/mail/search.py index_new_messages), so a search still sees every message.

DROP TRIGGER messages_fts_insert;

CREATE TABLE mail_search_progress (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    indexed_through INTEGER NOT NULL
);

INSERT INTO mail_search_progress(id, indexed_through) SELECT 1, coalesce(max(id), 0) FROM messages;
