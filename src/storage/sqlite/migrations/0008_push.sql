-- Push actions: for each local user an event notifies, what the user's
-- push rules said (client-server API "Push notifications"). Unread
-- notification counts are the rows after the user's read receipts;
-- `GET /notifications` pages through them. `seq` is insertion order, so a
-- sync counts on from the rows it counted before.
CREATE TABLE push_actions (
    seq             INTEGER PRIMARY KEY,
    user_id         TEXT NOT NULL,
    room_id         TEXT NOT NULL,
    event_id        TEXT NOT NULL,
    stream_ordering INTEGER NOT NULL,
    thread_id       TEXT NOT NULL DEFAULT '',  -- '' for the main timeline
    highlight       INTEGER NOT NULL,
    actions         TEXT NOT NULL,
    ts              INTEGER NOT NULL
);
CREATE INDEX push_actions_by_room ON push_actions(user_id, room_id, stream_ordering);
CREATE INDEX push_actions_by_user ON push_actions(user_id, stream_ordering);
CREATE INDEX push_actions_by_event ON push_actions(event_id);
