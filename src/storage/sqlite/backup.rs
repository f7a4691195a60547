//! Server-side key backup in SQLite (client-server API, "Server-side key
//! backups"): versions, and the session keys backed up in each.

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, params};

use super::{CachedSql, SqliteStore};
use crate::storage::{
    KeyBackupStore, Result,
    e2ee::{BackupError, BackupKeyRow, BackupVersion},
};

fn current_backup_version(c: &Connection, user_id: &str) -> Result<Option<i64>> {
    Ok(c.one("SELECT MAX(version) FROM backup_versions WHERE user_id = ?1 AND deleted = 0", [user_id], |r| {
        r.get::<_, Option<i64>>(0)
    })?)
}

/// `(etag, number of keys)` of a backup version.
fn etag_and_count(c: &Connection, user_id: &str, version: i64) -> Result<(i64, i64)> {
    let etag: i64 = c.one(
        "SELECT etag FROM backup_versions WHERE user_id = ?1 AND version = ?2",
        params![user_id, version],
        |r| r.get(0),
    )?;
    Ok((etag, backup_count(c, user_id, version)?))
}

fn backup_count(c: &Connection, user_id: &str, version: i64) -> Result<i64> {
    Ok(c.one("SELECT COUNT(*) FROM backup_keys WHERE user_id = ?1 AND version = ?2", params![user_id, version], |r| {
        r.get(0)
    })?)
}

#[async_trait]
impl KeyBackupStore for SqliteStore {
    async fn create_backup_version(&self, user_id: String, algorithm: String) -> Result<i64> {
        self.write(move |c| {
            let next: i64 = c.one(
                "SELECT COALESCE(MAX(version), 0) + 1 FROM backup_versions WHERE user_id = ?1",
                [&user_id],
                |r| r.get(0),
            )?;
            c.exec(
                "INSERT INTO backup_versions (user_id, version, algorithm) VALUES (?1, ?2, ?3)",
                params![user_id, next, algorithm],
            )?;
            Ok(next)
        })
        .await
    }

    async fn backup_version(&self, user_id: String, version: Option<i64>) -> Result<Option<BackupVersion>> {
        self.read(move |c| {
            let version = match version {
                Some(v) => v,
                None => match current_backup_version(c, &user_id)? {
                    Some(v) => v,
                    None => return Ok(None),
                },
            };
            let row: Option<(String, i64)> = c
                .one(
                    "SELECT algorithm, etag FROM backup_versions WHERE user_id = ?1 AND version = ?2 AND deleted = 0",
                    params![user_id, version],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()?;
            let Some((algorithm, etag)) = row else { return Ok(None) };
            Ok(Some(BackupVersion { version, algorithm, etag, count: backup_count(c, &user_id, version)? }))
        })
        .await
    }

    async fn update_backup_version(&self, user_id: String, version: i64, algorithm: String) -> Result<bool> {
        self.write(move |c| {
            let n = c.exec(
                "UPDATE backup_versions SET algorithm = ?3 WHERE user_id = ?1 AND version = ?2 AND deleted = 0",
                params![user_id, version, algorithm],
            )?;
            Ok(n > 0)
        })
        .await
    }

    async fn delete_backup_version(&self, user_id: String, version: i64) -> Result<bool> {
        self.write(move |c| {
            let n = c.exec(
                "UPDATE backup_versions SET deleted = 1 WHERE user_id = ?1 AND version = ?2 AND deleted = 0",
                params![user_id, version],
            )?;
            c.exec("DELETE FROM backup_keys WHERE user_id = ?1 AND version = ?2", params![user_id, version])?;
            Ok(n > 0)
        })
        .await
    }

    async fn put_backup_keys(
        &self,
        user_id: String,
        version: i64,
        keys: Vec<BackupKeyRow>,
    ) -> Result<Result<(i64, i64), BackupError>> {
        self.write(move |c| {
            let current = current_backup_version(c, &user_id)?;
            if current != Some(version) {
                return Ok(Err(BackupError::WrongVersion(current)));
            }
            let mut changed = false;
            for k in &keys {
                let existing: Option<(i64, i64, bool)> = c
                    .one(
                        "SELECT first_message_index, forwarded_count, is_verified FROM backup_keys
                         WHERE user_id = ?1 AND version = ?2 AND room_id = ?3 AND session_id = ?4",
                        params![user_id, version, k.room_id, k.session_id],
                        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                    )
                    .optional()?;
                let better = match existing {
                    None => true,
                    Some((fmi, fc, verified)) => {
                        (k.is_verified, -k.first_message_index, -k.forwarded_count) > (verified, -fmi, -fc)
                    }
                };
                if better {
                    c.exec(
                        "INSERT INTO backup_keys (user_id, version, room_id, session_id, json, first_message_index,
                                                  forwarded_count, is_verified)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
                         ON CONFLICT (user_id, version, room_id, session_id) DO UPDATE SET json = excluded.json,
                             first_message_index = excluded.first_message_index,
                             forwarded_count = excluded.forwarded_count, is_verified = excluded.is_verified",
                        params![
                            user_id,
                            version,
                            k.room_id,
                            k.session_id,
                            k.json,
                            k.first_message_index,
                            k.forwarded_count,
                            k.is_verified
                        ],
                    )?;
                    changed = true;
                }
            }
            if changed {
                c.exec(
                    "UPDATE backup_versions SET etag = etag + 1 WHERE user_id = ?1 AND version = ?2",
                    params![user_id, version],
                )?;
            }
            Ok(Ok(etag_and_count(c, &user_id, version)?))
        })
        .await
    }

    async fn backup_keys(
        &self,
        user_id: String,
        version: i64,
        room_id: Option<String>,
        session_id: Option<String>,
    ) -> Result<Vec<BackupKeyRow>> {
        self.read(move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT room_id, session_id, json, first_message_index, forwarded_count, is_verified FROM backup_keys
                 WHERE user_id = ?1 AND version = ?2 AND (?3 IS NULL OR room_id = ?3) AND (?4 IS NULL OR session_id = ?4)
                 ORDER BY room_id, session_id",
            )?;
            let rows = stmt.query_map(params![user_id, version, room_id, session_id], |r| {
                Ok(BackupKeyRow {
                    room_id: r.get(0)?,
                    session_id: r.get(1)?,
                    json: r.get(2)?,
                    first_message_index: r.get(3)?,
                    forwarded_count: r.get(4)?,
                    is_verified: r.get(5)?,
                })
            })?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .await
    }

    async fn delete_backup_keys(
        &self,
        user_id: String,
        version: i64,
        room_id: Option<String>,
        session_id: Option<String>,
    ) -> Result<Result<(i64, i64), BackupError>> {
        self.write(move |c| {
            let current = current_backup_version(c, &user_id)?;
            if current != Some(version) {
                return Ok(Err(BackupError::WrongVersion(current)));
            }
            c.exec(
                "DELETE FROM backup_keys WHERE user_id = ?1 AND version = ?2
                 AND (?3 IS NULL OR room_id = ?3) AND (?4 IS NULL OR session_id = ?4)",
                params![user_id, version, room_id, session_id],
            )?;
            c.exec(
                "UPDATE backup_versions SET etag = etag + 1 WHERE user_id = ?1 AND version = ?2",
                params![user_id, version],
            )?;
            Ok(Ok(etag_and_count(c, &user_id, version)?))
        })
        .await
    }
}
