-- Mail, reservations and agents coming and going also write events (migration 0012), most without a
-- task; their index entries under a NULL task_id served no query but cost every send_mail one more
-- b-tree to walk and write. Queries by task (`task_id = ?`, joins on it) use the partial index alike.

DROP INDEX events_by_task;
CREATE INDEX events_by_task ON events(task_id, id) WHERE task_id IS NOT NULL;
