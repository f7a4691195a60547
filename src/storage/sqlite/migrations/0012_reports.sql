-- Reports of events, rooms and users (client-server API, "Reporting
-- content"). `kind` says which target columns are set: an event report
-- has the room, the event and its sender; a room report the room; a user
-- report the user.
CREATE TABLE reports (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    kind        TEXT NOT NULL CHECK (kind IN ('event', 'room', 'user')),
    reporter    TEXT NOT NULL,
    room_id     TEXT,
    event_id    TEXT,
    user_id     TEXT,
    reason      TEXT NOT NULL,
    ts          INTEGER NOT NULL,
    resolved_by TEXT,
    resolved_ts INTEGER
);

