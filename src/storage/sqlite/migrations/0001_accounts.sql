-- Accounts, devices, tokens and profiles.

CREATE TABLE server_meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

CREATE TABLE users (
    user_id       TEXT PRIMARY KEY,
    password_hash TEXT,
    is_admin      INTEGER NOT NULL DEFAULT 0,
    deactivated   INTEGER NOT NULL DEFAULT 0,
    created_ts    INTEGER NOT NULL
);

CREATE TABLE profile_fields (
    user_id TEXT NOT NULL REFERENCES users(user_id),
    field   TEXT NOT NULL,
    value   TEXT NOT NULL, -- JSON value
    PRIMARY KEY (user_id, field)
);

CREATE TABLE devices (
    user_id      TEXT NOT NULL REFERENCES users(user_id),
    device_id    TEXT NOT NULL,
    display_name TEXT,
    last_seen_ts INTEGER,
    last_seen_ip TEXT,
    created_ts   INTEGER NOT NULL,
    PRIMARY KEY (user_id, device_id)
);

-- Tokens are stored only as SHA-256 hashes of the token the client holds.
CREATE TABLE access_tokens (
    token_hash BLOB PRIMARY KEY,
    user_id    TEXT NOT NULL,
    device_id  TEXT NOT NULL,
    expires_ts INTEGER,            -- NULL: never expires
    created_ts INTEGER NOT NULL,
    FOREIGN KEY (user_id, device_id) REFERENCES devices(user_id, device_id) ON DELETE CASCADE
);
CREATE INDEX access_tokens_by_device ON access_tokens(user_id, device_id);

CREATE TABLE refresh_tokens (
    token_hash BLOB PRIMARY KEY,
    user_id    TEXT NOT NULL,
    device_id  TEXT NOT NULL,
    created_ts INTEGER NOT NULL,
    FOREIGN KEY (user_id, device_id) REFERENCES devices(user_id, device_id) ON DELETE CASCADE
);
CREATE INDEX refresh_tokens_by_device ON refresh_tokens(user_id, device_id);

CREATE TABLE registration_tokens (
    token_hash   BLOB PRIMARY KEY,
    uses_allowed INTEGER,          -- NULL: unlimited
    completed    INTEGER NOT NULL DEFAULT 0,
    expiry_ts    INTEGER,          -- NULL: never expires
    created_ts   INTEGER NOT NULL
);
