-- Pushers and the outbound push queue (client-server API "Push
-- notifications", push gateway API). A pusher belongs to the device that
-- set it: deleting the device (logout, device deletion, deactivation)
-- deletes its pushers, and a pusher's queued pushes go with it.

-- `data` is the pusher's `data` object as JSON (with `url` and `format`);
-- `pushkey_ts` is when the pushkey was last set, in milliseconds.
CREATE TABLE pushers (
    id                  INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id             TEXT NOT NULL,
    device_id           TEXT NOT NULL,
    app_id              TEXT NOT NULL,
    pushkey             TEXT NOT NULL,
    kind                TEXT NOT NULL,
    app_display_name    TEXT NOT NULL,
    device_display_name TEXT NOT NULL,
    profile_tag         TEXT,
    lang                TEXT NOT NULL,
    data                TEXT NOT NULL,
    pushkey_ts          INTEGER NOT NULL,
    UNIQUE (user_id, app_id, pushkey),
    FOREIGN KEY (user_id, device_id) REFERENCES devices(user_id, device_id) ON DELETE CASCADE
);
CREATE INDEX pushers_by_key ON pushers(app_id, pushkey);
CREATE INDEX pushers_by_device ON pushers(user_id, device_id);

-- What each pusher still has to send to its gateway, oldest first: one row
-- per pusher per notification. `actions` are the push actions (JSON) the
-- user's rules gave the event; `queued_ts` (milliseconds) is when delivery
-- gives up.
CREATE TABLE push_queue (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    pusher_id INTEGER NOT NULL REFERENCES pushers(id) ON DELETE CASCADE,
    event_id  TEXT NOT NULL,
    room_id   TEXT NOT NULL,
    actions   TEXT NOT NULL,
    queued_ts INTEGER NOT NULL
);
CREATE INDEX push_queue_by_pusher ON push_queue(pusher_id, id);
CREATE INDEX push_queue_by_event ON push_queue(event_id);
