-- End-to-end encryption support: device keys, one-time and fallback keys,
-- cross-signing keys, device list changes, to-device messages, key backup.
-- Key material is stored as the JSON the client signed.

CREATE TABLE device_keys (
    user_id   TEXT NOT NULL,
    device_id TEXT NOT NULL,
    json      TEXT NOT NULL,
    PRIMARY KEY (user_id, device_id)
);

CREATE TABLE one_time_keys (
    user_id   TEXT NOT NULL,
    device_id TEXT NOT NULL,
    algorithm TEXT NOT NULL,
    key_id    TEXT NOT NULL,   -- "<algorithm>:<id>"
    json      TEXT NOT NULL,
    PRIMARY KEY (user_id, device_id, key_id)
);

CREATE TABLE fallback_keys (
    user_id   TEXT NOT NULL,
    device_id TEXT NOT NULL,
    algorithm TEXT NOT NULL,
    key_id    TEXT NOT NULL,
    json      TEXT NOT NULL,
    used      INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (user_id, device_id, algorithm)
);

CREATE TABLE cross_signing_keys (
    user_id  TEXT NOT NULL,
    key_type TEXT NOT NULL,   -- master | self_signing | user_signing
    json     TEXT NOT NULL,
    PRIMARY KEY (user_id, key_type)
);

-- One row per user whose devices or cross-signing keys changed, at the
-- misc stream position of the latest change.
CREATE TABLE device_list_changes (
    user_id   TEXT PRIMARY KEY,
    stream_id INTEGER NOT NULL
);
CREATE INDEX device_list_changes_by_stream ON device_list_changes(stream_id);

CREATE TABLE to_device_messages (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id    TEXT NOT NULL,
    device_id  TEXT NOT NULL,
    sender     TEXT NOT NULL,
    type       TEXT NOT NULL,
    content    TEXT NOT NULL,
    stream_id  INTEGER NOT NULL
);
CREATE INDEX to_device_by_device ON to_device_messages(user_id, device_id, stream_id);

CREATE TABLE to_device_txns (
    sender        TEXT NOT NULL,
    sender_device TEXT NOT NULL,
    txn_id        TEXT NOT NULL,
    PRIMARY KEY (sender, sender_device, txn_id)
);

CREATE TABLE backup_versions (
    user_id   TEXT NOT NULL,
    version   INTEGER NOT NULL,
    algorithm TEXT NOT NULL,   -- the {"algorithm", "auth_data"} JSON
    etag      INTEGER NOT NULL DEFAULT 0,
    deleted   INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (user_id, version)
);

CREATE TABLE backup_keys (
    user_id             TEXT NOT NULL,
    version             INTEGER NOT NULL,
    room_id             TEXT NOT NULL,
    session_id          TEXT NOT NULL,
    json                TEXT NOT NULL,
    first_message_index INTEGER NOT NULL,
    forwarded_count     INTEGER NOT NULL,
    is_verified         INTEGER NOT NULL,
    PRIMARY KEY (user_id, version, room_id, session_id)
);
