-- The media repository: metadata here, bytes on disk addressed by SHA-256.

CREATE TABLE media (
    media_id     TEXT PRIMARY KEY,
    user_id      TEXT NOT NULL,
    content_type TEXT,
    filename     TEXT,
    size         INTEGER,
    sha256       TEXT,             -- NULL while an async upload is pending
    created_ts   INTEGER NOT NULL,
    expires_ts   INTEGER           -- pending uploads expire unused
);
CREATE INDEX media_by_user ON media(user_id, created_ts);
