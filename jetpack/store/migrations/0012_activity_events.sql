-- Activity beyond task state changes joins the event log, so the dashboard's live feed (one cursor
-- over `events`) also carries mail, reservations and agents coming and going.
--
-- Heartbeats (agents.last_seen_at) deliberately leave no event: they would flood the log.

CREATE TRIGGER messages_sent_event AFTER INSERT ON messages
BEGIN
    INSERT INTO events(at, actor, kind, task_id, note, data)
    VALUES (NEW.created_at, NEW.sender, 'mail_sent', NEW.task_id, NEW.subject,
            json_object('message_id', NEW.id, 'thread_id', NEW.thread_id, 'importance', NEW.importance));
END;

CREATE TRIGGER reservations_made_event AFTER INSERT ON reservations
BEGIN
    INSERT INTO events(at, actor, kind, task_id, note, data)
    VALUES (NEW.created_at, NEW.agent, 'files_reserved', NEW.task_id, NEW.pattern,
            json_object('reservation_id', NEW.id, 'exclusive', NEW.exclusive, 'shared', NEW.shared));
END;

CREATE TRIGGER reservations_released_event AFTER UPDATE OF released_at ON reservations
WHEN OLD.released_at IS NULL AND NEW.released_at IS NOT NULL
BEGIN
    INSERT INTO events(at, actor, kind, task_id, note, data)
    VALUES (NEW.released_at, NEW.agent, 'files_released', NEW.task_id, NEW.pattern,
            json_object('reservation_id', NEW.id));
END;

CREATE TRIGGER agents_joined_event AFTER INSERT ON agents
BEGIN
    INSERT INTO events(at, actor, kind, note) VALUES (NEW.registered_at, NEW.name, 'agent_joined', NEW.client_name);
END;

CREATE TRIGGER agents_left_event AFTER UPDATE OF ended_at ON agents
WHEN OLD.ended_at IS NULL AND NEW.ended_at IS NOT NULL
BEGIN
    INSERT INTO events(at, actor, kind) VALUES (NEW.ended_at, NEW.name, 'agent_left');
END;

CREATE TRIGGER agents_rejoined_event AFTER UPDATE OF session_id ON agents
WHEN OLD.session_id IS NOT NEW.session_id
BEGIN
    INSERT INTO events(at, actor, kind, note) VALUES (NEW.last_seen_at, NEW.name, 'agent_joined', NEW.client_name);
END;
