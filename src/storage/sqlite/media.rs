//! Media metadata in SQLite: the `media` table maps media ids to the
//! SHA-256 names of files on disk.

use async_trait::async_trait;
use rusqlite::{OptionalExtension, params};

use super::{CachedSql, SqliteStore};
use crate::storage::{
    MediaStore, Result,
    media::{CompleteOutcome, MediaContent, MediaRecord},
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
}
