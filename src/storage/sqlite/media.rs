//! Media metadata in SQLite: the `media` table maps media ids to the
//! SHA-256 names of files on disk; `remote_media` does the same for the
//! cached copies of other servers' media.

use async_trait::async_trait;
use rusqlite::{OptionalExtension, params};

use super::{CachedSql, SqliteStore};
use crate::storage::{
    MediaStore, Result,
    media::{CompleteOutcome, EvictedMedia, MediaContent, MediaRecord, RemoteMediaRecord},
    now_ms,
};

#[async_trait]
impl MediaStore for SqliteStore {
    async fn insert_media(&self, media_id: String, user_id: String, content: MediaContent) -> Result<()> {
        self.write(move |c| {
            c.exec(
                "INSERT INTO media (media_id, user_id, content_type, filename, size, sha256, created_ts)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![
                    media_id,
                    user_id,
                    content.content_type,
                    content.filename,
                    content.size,
                    content.sha256,
                    now_ms()
                ],
            )?;
            Ok(())
        })
        .await
    }

    async fn reserve_media(&self, media_id: String, user_id: String, expires_ts: i64) -> Result<()> {
        self.write(move |c| {
            c.exec(
                "INSERT INTO media (media_id, user_id, created_ts, expires_ts) VALUES (?1, ?2, ?3, ?4)",
                params![media_id, user_id, now_ms(), expires_ts],
            )?;
            Ok(())
        })
        .await
    }

    async fn pending_media_count(&self, user_id: String) -> Result<i64> {
        self.read(move |c| {
            Ok(c.one(
                "SELECT COUNT(*) FROM media WHERE user_id = ?1 AND sha256 IS NULL AND expires_ts > ?2",
                params![user_id, now_ms()],
                |r| r.get(0),
            )?)
        })
        .await
    }

    async fn complete_media(
        &self,
        media_id: String,
        user_id: String,
        content: MediaContent,
    ) -> Result<CompleteOutcome> {
        self.write(move |c| {
            let row: Option<(String, Option<String>, Option<i64>)> = c
                .one("SELECT user_id, sha256, expires_ts FROM media WHERE media_id = ?1", [&media_id], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                })
                .optional()?;
            let Some((owner, sha, expires)) = row else { return Ok(CompleteOutcome::NotFound) };
            if owner != user_id {
                return Ok(CompleteOutcome::NotOwner);
            }
            if sha.is_some() {
                return Ok(CompleteOutcome::AlreadyUploaded);
            }
            if expires.is_some_and(|e| e <= now_ms()) {
                return Ok(CompleteOutcome::Expired);
            }
            c.exec(
                "UPDATE media SET content_type = ?2, filename = ?3, size = ?4, sha256 = ?5, expires_ts = NULL
                 WHERE media_id = ?1",
                params![media_id, content.content_type, content.filename, content.size, content.sha256],
            )?;
            Ok(CompleteOutcome::Done)
        })
        .await
    }

    async fn get_media(&self, media_id: String) -> Result<Option<MediaRecord>> {
        self.read(move |c| {
            Ok(c.one(
                "SELECT media_id, user_id, content_type, filename, size, sha256, created_ts, expires_ts
                 FROM media WHERE media_id = ?1",
                [&media_id],
                |r| {
                    Ok(MediaRecord {
                        media_id: r.get(0)?,
                        user_id: r.get(1)?,
                        content_type: r.get(2)?,
                        filename: r.get(3)?,
                        size: r.get(4)?,
                        sha256: r.get(5)?,
                        created_ts: r.get(6)?,
                        expires_ts: r.get(7)?,
                    })
                },
            )
            .optional()?)
        })
        .await
    }

    async fn get_remote_media(&self, origin: String, media_id: String) -> Result<Option<RemoteMediaRecord>> {
        self.read(move |c| {
            Ok(c.one(
                "SELECT origin, media_id, content_type, filename, size, sha256, fetched_ts, last_access_ts
                 FROM remote_media WHERE origin = ?1 AND media_id = ?2",
                [&origin, &media_id],
                |r| {
                    Ok(RemoteMediaRecord {
                        origin: r.get(0)?,
                        media_id: r.get(1)?,
                        content_type: r.get(2)?,
                        filename: r.get(3)?,
                        size: r.get(4)?,
                        sha256: r.get(5)?,
                        fetched_ts: r.get(6)?,
                        last_access_ts: r.get(7)?,
                    })
                },
            )
            .optional()?)
        })
        .await
    }

    async fn insert_remote_media(&self, record: RemoteMediaRecord) -> Result<()> {
        self.write(move |c| {
            c.exec(
                "INSERT OR REPLACE INTO remote_media
                     (origin, media_id, content_type, filename, size, sha256, thumbnails_size, fetched_ts,
                      last_access_ts)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, 0, ?7, ?8)",
                params![
                    record.origin,
                    record.media_id,
                    record.content_type,
                    record.filename,
                    record.size,
                    record.sha256,
                    record.fetched_ts,
                    record.last_access_ts
                ],
            )?;
            Ok(())
        })
        .await
    }

    async fn touch_remote_media(&self, origin: String, media_id: String, now_ms: i64) -> Result<()> {
        self.write(move |c| {
            c.exec(
                "UPDATE remote_media SET last_access_ts = ?3 WHERE origin = ?1 AND media_id = ?2",
                params![origin, media_id, now_ms],
            )?;
            Ok(())
        })
        .await
    }

    async fn add_remote_thumbnail_size(&self, origin: String, media_id: String, bytes: i64) -> Result<()> {
        self.write(move |c| {
            c.exec(
                "UPDATE remote_media SET thumbnails_size = thumbnails_size + ?3 WHERE origin = ?1 AND media_id = ?2",
                params![origin, media_id, bytes],
            )?;
            Ok(())
        })
        .await
    }

    async fn delete_remote_media(&self, origin: String, media_id: String) -> Result<()> {
        self.write(move |c| {
            c.exec("DELETE FROM remote_media WHERE origin = ?1 AND media_id = ?2", params![origin, media_id])?;
            Ok(())
        })
        .await
    }

    async fn evict_remote_media(&self, max_bytes: i64) -> Result<Vec<EvictedMedia>> {
        self.write(move |c| {
            let mut total: i64 =
                c.one("SELECT COALESCE(SUM(size + thumbnails_size), 0) FROM remote_media", [], |r| r.get(0))?;
            let mut evicted = Vec::new();
            while total > max_bytes {
                let oldest: Option<(String, String, String, i64)> = c
                    .one(
                        "SELECT origin, media_id, sha256, size + thumbnails_size FROM remote_media
                         ORDER BY last_access_ts, fetched_ts, rowid LIMIT 1",
                        [],
                        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
                    )
                    .optional()?;
                let Some((origin, media_id, sha256, bytes)) = oldest else { break };
                c.exec("DELETE FROM remote_media WHERE origin = ?1 AND media_id = ?2", params![origin, media_id])?;
                total -= bytes;
                evicted.push(sha256);
            }
            let mut out = Vec::with_capacity(evicted.len());
            for sha256 in evicted {
                let still_used: bool =
                    c.one("SELECT EXISTS(SELECT 1 FROM remote_media WHERE sha256 = ?1)", [&sha256], |r| r.get(0))?;
                out.push(EvictedMedia { sha256, still_used });
            }
            Ok(out)
        })
        .await
    }
}
