//! Schema migrations, embedded in the binary and applied in order at start.
//! `PRAGMA user_version` records how many have run.

use rusqlite::Connection;

use super::CachedSql;
use crate::storage::Result;

/// Each entry is one migration; never edit a released one, append a new one.
const MIGRATIONS: &[&str] = &[
    include_str!("migrations/0001_accounts.sql"),
    include_str!("migrations/0002_rooms.sql"),
    include_str!("migrations/0003_streams.sql"),
    include_str!("migrations/0004_e2ee.sql"),
    include_str!("migrations/0005_media.sql"),
    include_str!("migrations/0006_federation.sql"),
    include_str!("migrations/0007_membership_counts.sql"),
    include_str!("migrations/0008_push.sql"),
    include_str!("migrations/0009_pushers.sql"),
    include_str!("migrations/0010_relations.sql"),
];

pub(super) fn apply(conn: &mut Connection) -> Result<()> {
    let done: usize = conn.one("PRAGMA user_version", [], |r| r.get::<_, i64>(0))? as usize;
    if done > MIGRATIONS.len() {
        return Err(crate::storage::StorageError::Corrupt(format!(
            "database schema version {done} is newer than this binary knows ({})",
            MIGRATIONS.len()
        )));
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(done) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", (i + 1) as i64)?;
        tx.commit()?;
        tracing::info!(version = i + 1, "applied database migration");
    }
    Ok(())
}
