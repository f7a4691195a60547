//! Room aliases and the public room directory (client-server API, "Room
//! aliases" and "Listing rooms"): which alias names which room, and which
//! rooms are listed.

use async_trait::async_trait;
use rusqlite::{OptionalExtension, params};

use super::{CachedSql, SqliteStore};
use crate::storage::{DirectoryStore, Result};

#[async_trait]
impl DirectoryStore for SqliteStore {
    async fn create_alias(&self, alias: String, room_id: String, creator: String) -> Result<bool> {
        self.write(move |c| {
            let n = c.exec(
                "INSERT OR IGNORE INTO room_aliases (alias, room_id, creator) VALUES (?1, ?2, ?3)",
                params![alias, room_id, creator],
            )?;
            Ok(n > 0)
        })
        .await
    }

    async fn resolve_alias(&self, alias: String) -> Result<Option<(String, String)>> {
        self.read(move |c| {
            Ok(c.one("SELECT room_id, creator FROM room_aliases WHERE alias = ?1", [&alias], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .optional()?)
        })
        .await
    }

    async fn delete_alias(&self, alias: String) -> Result<bool> {
        self.write(move |c| Ok(c.exec("DELETE FROM room_aliases WHERE alias = ?1", [&alias])? > 0)).await
    }

    async fn room_aliases(&self, room_id: String) -> Result<Vec<String>> {
        self.read(move |c| {
            let mut stmt = c.prepare_cached("SELECT alias FROM room_aliases WHERE room_id = ?1 ORDER BY alias")?;
            let rows = stmt.query_map([&room_id], |r| r.get(0))?;
            Ok(rows.collect::<rusqlite::Result<Vec<String>>>()?)
        })
        .await
    }

    async fn set_room_public(&self, room_id: String, public: bool) -> Result<()> {
        self.write(move |c| {
            c.exec("UPDATE rooms SET is_public = ?2 WHERE room_id = ?1", params![room_id, public])?;
            Ok(())
        })
        .await
    }

    async fn room_is_public(&self, room_id: String) -> Result<bool> {
        self.read(move |c| {
            Ok(c.one("SELECT is_public FROM rooms WHERE room_id = ?1", [&room_id], |r| r.get(0))
                .optional()?
                .unwrap_or(false))
        })
        .await
    }

    async fn public_rooms(&self) -> Result<Vec<(String, i64)>> {
        self.read(move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT r.room_id,
                        (SELECT COUNT(*) FROM room_memberships m WHERE m.room_id = r.room_id AND m.membership = 'join')
                            AS joined
                 FROM rooms r WHERE r.is_public = 1 ORDER BY joined DESC, r.room_id",
            )?;
            let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .await
    }
}
