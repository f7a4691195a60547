-- The cache of other servers' media: which file on disk (named by its
-- SHA-256, under media/remote/) holds mxc://origin/media_id, and how
-- recently it was used, so the least recently used go first once the
-- cache passes its size limit.

CREATE TABLE remote_media (
    origin          TEXT NOT NULL,
    media_id        TEXT NOT NULL,
    content_type    TEXT,
    filename        TEXT,
    size            INTEGER NOT NULL,
    sha256          TEXT NOT NULL,
    thumbnails_size INTEGER NOT NULL DEFAULT 0, -- thumbnails made of it here
    fetched_ts      INTEGER NOT NULL,
    last_access_ts  INTEGER NOT NULL,
    PRIMARY KEY (origin, media_id)
);
CREATE INDEX remote_media_by_access ON remote_media(last_access_ts);
CREATE INDEX remote_media_by_sha256 ON remote_media(sha256);
