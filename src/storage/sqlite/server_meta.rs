//! Small server-wide facts that must survive restarts (for example, that the
//! first-run registration token has been created).

use rusqlite::{OptionalExtension, params};

use super::{CachedSql, Db};
use crate::storage::Result;

impl Db {
    pub async fn get_meta(&self, key: &'static str) -> Result<Option<String>> {
        self.read(move |c| Ok(c.one("SELECT value FROM server_meta WHERE key = ?1", [key], |r| r.get(0)).optional()?))
            .await
    }

    pub async fn set_meta(&self, key: &'static str, value: String) -> Result<()> {
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
