//! Small server-wide facts that must survive restarts (for example, that the
//! first-run registration token has been created).

use async_trait::async_trait;
use rusqlite::{OptionalExtension, params};

use super::{CachedSql, SqliteStore};
use crate::storage::{Result, ServerMetaStore};

#[async_trait]
impl ServerMetaStore for SqliteStore {
    async fn get_meta(&self, key: &'static str) -> Result<Option<String>> {
        self.read(move |c| Ok(c.one("SELECT value FROM server_meta WHERE key = ?1", [key], |r| r.get(0)).optional()?))
            .await
    }

    async fn set_meta(&self, key: &'static str, value: String) -> Result<()> {
        self.write(move |c| {
            c.exec(
                "INSERT INTO server_meta (key, value) VALUES (?1, ?2)
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                params![key, value],
            )?;
            Ok(())
        })
        .await
    }
}
