//! State groups (a delta on an earlier group, or a full snapshot) and each
//! room's current state in SQLite.

use std::collections::HashMap;

use async_trait::async_trait;
use rusqlite::Connection;

use super::{CachedSql, SqliteStore, snapshot};
use crate::storage::{Result, StateStore, rooms::StoredState};

#[async_trait]
impl StateStore for SqliteStore {
    async fn state_group(&self, group: i64) -> Result<StoredState> {
        self.read(move |c| load_state_group(c, group)).await
    }

    async fn state_groups(&self, groups: Vec<i64>) -> Result<HashMap<i64, StoredState>> {
        if groups.is_empty() {
            return Ok(HashMap::new());
        }
        self.read(move |c| {
            snapshot(c, |c| groups.iter().map(|g| Ok((*g, load_state_group(c, *g)?))).collect::<Result<_>>())
        })
        .await
    }

    async fn current_state(&self, room_id: String) -> Result<StoredState> {
        self.read(move |c| {
            let mut stmt =
                c.prepare_cached("SELECT type, state_key, event_id FROM current_state WHERE room_id = ?1")?;
            let rows = stmt.query_map([&room_id], |r| Ok(((r.get(0)?, r.get(1)?), r.get(2)?)))?;
            Ok(rows.collect::<rusqlite::Result<StoredState>>()?)
        })
        .await
    }

    async fn state_storage_counts(&self, room_id: String) -> Result<(i64, i64)> {
        self.read(move |c| {
            let groups: i64 = c.one("SELECT COUNT(*) FROM state_groups WHERE room_id = ?1", [&room_id], |r| r.get(0))?;
            let entries: i64 = c.one(
                "SELECT COUNT(*) FROM state_group_entries e JOIN state_groups g ON g.id = e.group_id WHERE g.room_id = ?1",
                [&room_id],
                |r| r.get(0),
            )?;
            Ok((groups, entries))
        })
        .await
    }
}

/// Resolves a group by walking its delta chain back to a snapshot and
/// applying the entries oldest first.
pub(super) fn load_state_group(c: &Connection, group: i64) -> Result<StoredState> {
    let mut stmt = c.prepare_cached(
        "WITH RECURSIVE chain(id, prev, lvl) AS (
             SELECT id, prev_group, 0 FROM state_groups WHERE id = ?1
             UNION ALL
             SELECT g.id, g.prev_group, chain.lvl + 1 FROM state_groups g JOIN chain ON g.id = chain.prev
         )
         SELECT e.type, e.state_key, e.event_id FROM chain
         JOIN state_group_entries e ON e.group_id = chain.id
         ORDER BY chain.lvl DESC",
    )?;
    let rows = stmt.query_map([group], |r| Ok(((r.get(0)?, r.get(1)?), r.get(2)?)))?;
    let mut state = StoredState::new();
    for row in rows {
        let (key, event_id) = row?;
        state.insert(key, event_id);
    }
    Ok(state)
}
