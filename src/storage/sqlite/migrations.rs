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
    include_str!("migrations/0010_search.sql"),
    include_str!("migrations/0011_relations.sql"),
    include_str!("migrations/0012_reports.sql"),
    include_str!("migrations/0013_openid.sql"),
    include_str!("migrations/0014_delayed_events.sql"),
    include_str!("migrations/0015_appservice.sql"),
    include_str!("migrations/0016_remote_media.sql"),
    include_str!("migrations/0017_remote_device_lists.sql"),
    include_str!("migrations/0018_guests.sql"),
    include_str!("migrations/0019_device_list_updates.sql"),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relations_are_filled_from_events_stored_before() {
        let mut conn = Connection::open_in_memory().expect("an in-memory database");
        // The migrations before `0011_relations.sql`.
        let before = 10;
        for sql in &MIGRATIONS[..before] {
            conn.execute_batch(sql).expect("migration applies");
        }
        conn.pragma_update(None, "user_version", before as i64).expect("version set");
        let insert = "INSERT INTO events (event_id, room_id, type, sender, origin_server_ts, depth, json,
                                          state_group, outlier)
                      VALUES (?1, '!room:test', 'm.room.message', '@alice:test', 1, 1, ?2, 0, ?3)";
        let reply = r#"{"content": {"m.relates_to": {"rel_type": "m.thread", "event_id": "$root"}}}"#;
        let plain = r#"{"content": {"body": "hi"}}"#;
        let reply_only = r#"{"content": {"m.relates_to": {"m.in_reply_to": {"event_id": "$root"}}}}"#;
        conn.execute(insert, rusqlite::params!["$reply", reply, 0]).expect("stored");
        conn.execute(insert, rusqlite::params!["$outlier", reply, 1]).expect("stored");
        conn.execute(insert, rusqlite::params!["$plain", plain, 0]).expect("stored");
        conn.execute(insert, rusqlite::params!["$quote", reply_only, 0]).expect("stored");

        apply(&mut conn).expect("the relations migration applies");
        let rows: Vec<(String, String, String)> = conn
            .prepare("SELECT event_id, relates_to, rel_type FROM event_relations")
            .expect("prepared")
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .expect("read")
            .collect::<rusqlite::Result<_>>()
            .expect("rows");
        assert_eq!(rows, [("$reply".to_owned(), "$root".to_owned(), "m.thread".to_owned())]);
    }
}
