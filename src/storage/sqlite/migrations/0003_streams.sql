-- Per-user and ephemeral streams read by sync: account data, receipts,
-- presence, filters. They share one stream position sequence ("misc").

CREATE TABLE stream_positions (
    name TEXT PRIMARY KEY,
    pos  INTEGER NOT NULL
);
INSERT INTO stream_positions (name, pos) VALUES ('misc', 0);

CREATE TABLE account_data (
    user_id   TEXT NOT NULL,
    room_id   TEXT NOT NULL DEFAULT '',  -- '' for global account data
    type      TEXT NOT NULL,
    content   TEXT NOT NULL,             -- JSON object
    stream_id INTEGER NOT NULL,
    PRIMARY KEY (user_id, room_id, type)
);
CREATE INDEX account_data_by_stream ON account_data(user_id, stream_id);

CREATE TABLE receipts (
    room_id      TEXT NOT NULL,
    user_id      TEXT NOT NULL,
    receipt_type TEXT NOT NULL,
    thread_id    TEXT NOT NULL DEFAULT '',  -- '' for unthreaded receipts
    event_id     TEXT NOT NULL,
    ts           INTEGER NOT NULL,
    stream_id    INTEGER NOT NULL,
    PRIMARY KEY (room_id, user_id, receipt_type, thread_id)
);
CREATE INDEX receipts_by_stream ON receipts(room_id, stream_id);

CREATE TABLE presence (
    user_id          TEXT PRIMARY KEY,
    state            TEXT NOT NULL,
    status_msg       TEXT,
    last_active_ts   INTEGER NOT NULL,
    stream_id        INTEGER NOT NULL
);
CREATE INDEX presence_by_stream ON presence(stream_id);

CREATE TABLE filters (
    user_id   TEXT NOT NULL,
    filter_id INTEGER NOT NULL,
    json      TEXT NOT NULL,
    PRIMARY KEY (user_id, filter_id)
);

CREATE INDEX events_by_stream ON events(stream_ordering, room_id);
CREATE INDEX room_memberships_by_stream ON room_memberships(user_id, stream_ordering);
CREATE INDEX event_txns_by_event ON event_txns(event_id);
