-- Rooms as event DAGs: events, edges, state groups, current state.

CREATE TABLE rooms (
    room_id             TEXT PRIMARY KEY,
    room_version        TEXT NOT NULL,
    creator             TEXT NOT NULL,
    is_public           INTEGER NOT NULL DEFAULT 0,  -- listed in the public room directory
    current_state_group INTEGER,
    created_ts          INTEGER NOT NULL
);

-- Every event once, as its canonical JSON PDU. `stream_ordering` is the
-- local timeline position, used by pagination and (later) sync.
CREATE TABLE events (
    stream_ordering  INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id         TEXT NOT NULL UNIQUE,
    room_id          TEXT NOT NULL,
    type             TEXT NOT NULL,
    state_key        TEXT,
    sender           TEXT NOT NULL,
    origin_server_ts INTEGER NOT NULL,
    depth            INTEGER NOT NULL,
    json             TEXT NOT NULL,
    state_group      INTEGER NOT NULL,  -- the room state after this event
    replaces_state   TEXT,              -- the state event this one replaced
    outlier          INTEGER NOT NULL DEFAULT 0,
    rejected         INTEGER NOT NULL DEFAULT 0,
    redacted_by      TEXT
);
CREATE INDEX events_by_room ON events(room_id, stream_ordering);
CREATE INDEX events_by_room_ts ON events(room_id, origin_server_ts);
CREATE INDEX events_by_room_type ON events(room_id, type, state_key);

CREATE TABLE event_edges (
    event_id      TEXT NOT NULL,
    prev_event_id TEXT NOT NULL,
    PRIMARY KEY (event_id, prev_event_id)
);

CREATE TABLE event_auth (
    event_id      TEXT NOT NULL,
    auth_event_id TEXT NOT NULL,
    PRIMARY KEY (event_id, auth_event_id)
);

CREATE TABLE forward_extremities (
    room_id  TEXT NOT NULL,
    event_id TEXT NOT NULL,
    PRIMARY KEY (room_id, event_id)
);

-- A state group is a delta on `prev_group`, or a full snapshot when
-- `prev_group` is NULL. `delta_depth` counts the deltas back to a snapshot
-- so that chains stay short.
CREATE TABLE state_groups (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    room_id     TEXT NOT NULL,
    prev_group  INTEGER REFERENCES state_groups(id),
    delta_depth INTEGER NOT NULL
);

CREATE TABLE state_group_entries (
    group_id  INTEGER NOT NULL REFERENCES state_groups(id),
    type      TEXT NOT NULL,
    state_key TEXT NOT NULL,
    event_id  TEXT NOT NULL,
    PRIMARY KEY (group_id, type, state_key)
);

CREATE TABLE current_state (
    room_id   TEXT NOT NULL,
    type      TEXT NOT NULL,
    state_key TEXT NOT NULL,
    event_id  TEXT NOT NULL,
    PRIMARY KEY (room_id, type, state_key)
);

-- Current membership of each user in each room, derived from current state.
CREATE TABLE room_memberships (
    room_id         TEXT NOT NULL,
    user_id         TEXT NOT NULL,
    membership      TEXT NOT NULL,
    event_id        TEXT NOT NULL,
    stream_ordering INTEGER NOT NULL,
    forgotten       INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (room_id, user_id)
);
CREATE INDEX room_memberships_by_user ON room_memberships(user_id, membership);

-- Client transaction ids, so a retried send returns the same event.
CREATE TABLE event_txns (
    user_id   TEXT NOT NULL,
    device_id TEXT NOT NULL,
    txn_id    TEXT NOT NULL,
    event_id  TEXT NOT NULL,
    PRIMARY KEY (user_id, device_id, txn_id)
);

CREATE TABLE room_aliases (
    alias   TEXT PRIMARY KEY,
    room_id TEXT NOT NULL,
    creator TEXT NOT NULL
);
CREATE INDEX room_aliases_by_room ON room_aliases(room_id);
