//! Events in SQLite: the timeline and outliers, DAG and auth edges,
//! forward extremities and transaction ids. Appending an event also writes
//! its state group, the current state, the sender's membership and the
//! federation queue, in the same transaction.

use std::collections::HashMap;

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, params};

use super::{CachedSql, SqliteStore};
use crate::storage::{
    EventStore, Result, StorageError, now_ms,
    rooms::{
        AppendOutcome, Appended, CurrentStateWrite, Direction, NewEvent, Outlier, QueuedAppend, RoomHeadRecord,
        StateWrite, StoredEvent, StoredState,
    },
};

/// The columns `event_from_row` reads, from `events` (unaliased).
pub(super) const EVENT_COLUMNS: &str = "stream_ordering, event_id, room_id, json, state_group, replaces_state,
    redacted_by, rejected,
    (SELECT device_id FROM event_txns t WHERE t.event_id = events.event_id AND t.user_id = events.sender LIMIT 1),
    (SELECT txn_id FROM event_txns t WHERE t.event_id = events.event_id AND t.user_id = events.sender LIMIT 1)";

pub(super) fn event_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<StoredEvent> {
    Ok(StoredEvent {
        stream_ordering: r.get(0)?,
        event_id: r.get(1)?,
        room_id: r.get(2)?,
        json: r.get(3)?,
        state_group: r.get(4)?,
        replaces_state: r.get(5)?,
        redacted_by: r.get(6)?,
        rejected: r.get(7)?,
        txn: match (r.get::<_, Option<String>>(8)?, r.get::<_, Option<String>>(9)?) {
            (Some(device), Some(txn)) => Some((device, txn)),
            _ => None,
        },
    })
}

fn append(c: &Connection, e: &NewEvent) -> Result<Appended> {
    if let Some((version, creator)) = &e.new_room {
        c.prepare_cached(
            "INSERT OR IGNORE INTO rooms (room_id, room_version, creator, created_ts) VALUES (?1, ?2, ?3, ?4)",
        )?
        .execute(params![e.room_id, version, creator, now_ms()])?;
    }
    let state_group = match &e.state {
        StateWrite::Unchanged { group } => *group,
        StateWrite::Delta { prev_group, delta_depth, key, event_id } => {
            c.prepare_cached("INSERT INTO state_groups (room_id, prev_group, delta_depth) VALUES (?1, ?2, ?3)")?
                .execute(params![e.room_id, prev_group, delta_depth])?;
            let group = c.last_insert_rowid();
            c.prepare_cached(
                "INSERT INTO state_group_entries (group_id, type, state_key, event_id) VALUES (?1, ?2, ?3, ?4)",
            )?
            .execute(params![group, key.0, key.1, event_id])?;
            group
        }
        StateWrite::Full { state } => {
            c.prepare_cached("INSERT INTO state_groups (room_id, prev_group, delta_depth) VALUES (?1, NULL, 0)")?
                .execute(params![e.room_id])?;
            let group = c.last_insert_rowid();
            let mut stmt = c.prepare_cached(
                "INSERT INTO state_group_entries (group_id, type, state_key, event_id) VALUES (?1, ?2, ?3, ?4)",
            )?;
            for ((kind, key), event_id) in state {
                stmt.execute(params![group, kind, key, event_id])?;
            }
            group
        }
    };
    // An event known as an outlier (fetched as part of a room's state)
    // becomes part of the timeline now.
    c.prepare_cached("DELETE FROM events WHERE event_id = ?1 AND outlier = 1")?.execute([&e.event_id])?;
    c.prepare_cached(
        "INSERT INTO events (event_id, room_id, type, state_key, sender, origin_server_ts, depth, json,
                             state_group, replaces_state)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
    )?
    .execute(params![
        e.event_id,
        e.room_id,
        e.kind,
        e.state_key,
        e.sender,
        e.origin_server_ts,
        e.depth,
        e.json,
        state_group,
        e.replaces_state
    ])?;
    let stream_ordering = c.last_insert_rowid();
    record_relation(c, &e.event_id)?;
    {
        let mut edge =
            c.prepare_cached("INSERT OR IGNORE INTO event_edges (event_id, prev_event_id) VALUES (?1, ?2)")?;
        for prev in &e.prev_events {
            edge.execute(params![e.event_id, prev])?;
        }
        let mut auth =
            c.prepare_cached("INSERT OR IGNORE INTO event_auth (event_id, auth_event_id) VALUES (?1, ?2)")?;
        for id in &e.auth_events {
            auth.execute(params![e.event_id, id])?;
        }
    }
    c.prepare_cached("DELETE FROM forward_extremities WHERE room_id = ?1")?.execute([&e.room_id])?;
    {
        let mut ext = c.prepare_cached("INSERT INTO forward_extremities (room_id, event_id) VALUES (?1, ?2)")?;
        for id in &e.forward_extremities {
            ext.execute(params![e.room_id, id])?;
        }
    }
    match &e.current_state {
        CurrentStateWrite::ThisEvent => {
            if let Some(key) = &e.state_key {
                c.prepare_cached(
                    "INSERT INTO current_state (room_id, type, state_key, event_id) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (room_id, type, state_key) DO UPDATE SET event_id = excluded.event_id",
                )?
                .execute(params![e.room_id, e.kind, key, e.event_id])?;
                c.exec(
                    "UPDATE rooms SET current_state_group = ?2 WHERE room_id = ?1",
                    params![e.room_id, state_group],
                )?;
            }
        }
        CurrentStateWrite::Replace(state) => {
            replace_current_state(c, &e.room_id, state, stream_ordering)?;
            c.exec("UPDATE rooms SET current_state_group = ?2 WHERE room_id = ?1", params![e.room_id, state_group])?;
        }
        CurrentStateWrite::Unchanged => {}
    }
    if !e.send_to.is_empty() {
        let mut queue =
            c.prepare_cached("INSERT INTO federation_queue (destination, kind, json) VALUES (?1, 'pdu', ?2)")?;
        for destination in &e.send_to {
            queue.execute(params![destination, e.json])?;
        }
    }
    if let Some((user, membership)) = &e.membership {
        c.prepare_cached(
            "INSERT INTO room_memberships (room_id, user_id, membership, event_id, stream_ordering, forgotten)
             VALUES (?1, ?2, ?3, ?4, ?5, 0)
             ON CONFLICT (room_id, user_id) DO UPDATE SET membership = excluded.membership,
                 event_id = excluded.event_id, stream_ordering = excluded.stream_ordering, forgotten = 0",
        )?
        .execute(params![e.room_id, user, membership.as_str(), e.event_id, stream_ordering])?;
    }
    if let Some((user, device, txn)) = &e.txn {
        c.prepare_cached("INSERT INTO event_txns (user_id, device_id, txn_id, event_id) VALUES (?1, ?2, ?3, ?4)")?
            .execute(params![user, device, txn, e.event_id])?;
    }
    if let Some((target, json)) = &e.redaction {
        c.prepare_cached("UPDATE events SET json = ?2, redacted_by = ?3 WHERE event_id = ?1")?
            .execute(params![target, json, e.event_id])?;
    }
    Ok(Appended { stream_ordering, state_group })
}

/// Makes `state` the room's current state; memberships follow the member
/// events that changed.
fn replace_current_state(c: &Connection, room_id: &str, state: &StoredState, stream_ordering: i64) -> Result<()> {
    let mut old: StoredState = HashMap::new();
    {
        let mut stmt = c.prepare_cached("SELECT type, state_key, event_id FROM current_state WHERE room_id = ?1")?;
        for row in stmt.query_map([room_id], |r| Ok(((r.get(0)?, r.get(1)?), r.get(2)?)))? {
            let (key, id): ((String, String), String) = row?;
            old.insert(key, id);
        }
    }
    c.exec("DELETE FROM current_state WHERE room_id = ?1", [room_id])?;
    let mut insert =
        c.prepare_cached("INSERT INTO current_state (room_id, type, state_key, event_id) VALUES (?1, ?2, ?3, ?4)")?;
    let mut member = c.prepare_cached(
        "INSERT INTO room_memberships (room_id, user_id, membership, event_id, stream_ordering, forgotten)
         SELECT ?1, ?2, json_extract(json, '$.content.membership'), event_id, ?4, 0 FROM events WHERE event_id = ?3
         ON CONFLICT (room_id, user_id) DO UPDATE SET membership = excluded.membership,
             event_id = excluded.event_id, stream_ordering = excluded.stream_ordering, forgotten = 0",
    )?;
    for ((kind, key), id) in state {
        insert.execute(params![room_id, kind, key, id])?;
        if kind == "m.room.member" && old.get(&(kind.clone(), key.clone())) != Some(id) {
            member.execute(params![room_id, key, id, stream_ordering])?;
        }
    }
    Ok(())
}

/// Stores an outlier (unless the event is stored already) with its auth
/// edges; returns its stream position.
pub(super) fn insert_outlier(c: &Connection, e: &Outlier) -> Result<i64> {
    c.prepare_cached(
        "INSERT OR IGNORE INTO events (event_id, room_id, type, state_key, sender, origin_server_ts, depth,
                                       json, state_group, outlier, rejected)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 0, 1, ?9)",
    )?
    .execute(params![
        e.event_id,
        e.room_id,
        e.kind,
        e.state_key,
        e.sender,
        e.origin_server_ts,
        e.depth,
        e.json,
        e.rejected
    ])?;
    let mut auth = c.prepare_cached("INSERT OR IGNORE INTO event_auth (event_id, auth_event_id) VALUES (?1, ?2)")?;
    for id in &e.auth_events {
        auth.execute(params![e.event_id, id])?;
    }
    Ok(c.prepare_cached("SELECT stream_ordering FROM events WHERE event_id = ?1")?
        .query_row([&e.event_id], |r| r.get(0))?)
}

#[async_trait]
impl EventStore for SqliteStore {
    async fn store_outliers(&self, events: Vec<Outlier>) -> Result<()> {
        self.write(move |c| {
            for e in &events {
                insert_outlier(c, e)?;
            }
            Ok(())
        })
        .await
    }

    async fn oldest_timeline_event(&self, room_id: String) -> Result<Option<StoredEvent>> {
        self.read(move |c| {
            Ok(c.one(
                &format!(
                    "SELECT {EVENT_COLUMNS} FROM events WHERE room_id = ?1 AND outlier = 0
                     ORDER BY stream_ordering ASC LIMIT 1"
                ),
                [&room_id],
                event_from_row,
            )
            .optional()?)
        })
        .await
    }

    async fn store_backfilled(&self, events: Vec<(Outlier, Vec<String>)>, state_group: i64) -> Result<usize> {
        self.write(move |c| {
            let lowest: i64 = c.one("SELECT COALESCE(MIN(stream_ordering), 0) FROM events", [], |r| r.get(0))?;
            let mut next = lowest.min(0) - 1;
            let mut stored = 0;
            // Newest first, so older events get lower positions.
            for (e, prev_events) in events.iter().rev() {
                let in_timeline: Option<bool> = c
                    .one("SELECT outlier = 0 FROM events WHERE event_id = ?1", [&e.event_id], |r| r.get(0))
                    .optional()?;
                if in_timeline == Some(true) {
                    continue;
                }
                c.exec("DELETE FROM events WHERE event_id = ?1 AND outlier = 1", [&e.event_id])?;
                c.exec(
                    "INSERT INTO events (stream_ordering, event_id, room_id, type, state_key, sender,
                                         origin_server_ts, depth, json, state_group)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
                    params![
                        next,
                        e.event_id,
                        e.room_id,
                        e.kind,
                        e.state_key,
                        e.sender,
                        e.origin_server_ts,
                        e.depth,
                        e.json,
                        state_group
                    ],
                )?;
                record_relation(c, &e.event_id)?;
                next -= 1;
                stored += 1;
                let mut edge =
                    c.prepare_cached("INSERT OR IGNORE INTO event_edges (event_id, prev_event_id) VALUES (?1, ?2)")?;
                for prev in prev_events {
                    edge.execute(params![e.event_id, prev])?;
                }
                let mut auth =
                    c.prepare_cached("INSERT OR IGNORE INTO event_auth (event_id, auth_event_id) VALUES (?1, ?2)")?;
                for id in &e.auth_events {
                    auth.execute(params![e.event_id, id])?;
                }
            }
            Ok(stored)
        })
        .await
    }

    async fn event_outlier(&self, event_id: String) -> Result<Option<bool>> {
        self.read(move |c| {
            Ok(c.one("SELECT outlier FROM events WHERE event_id = ?1", [&event_id], |r| r.get(0)).optional()?)
        })
        .await
    }

    async fn auth_chain(&self, event_ids: Vec<String>) -> Result<Vec<String>> {
        self.read(move |c| {
            let starts = serde_json::to_string(&event_ids).map_err(|e| StorageError::Corrupt(e.to_string()))?;
            let mut stmt = c.prepare_cached(
                "WITH RECURSIVE chain(id) AS (
                     SELECT a.auth_event_id FROM event_auth a WHERE a.event_id IN (SELECT value FROM json_each(?1))
                     UNION
                     SELECT a.auth_event_id FROM event_auth a JOIN chain ON a.event_id = chain.id
                 )
                 SELECT id FROM chain",
            )?;
            Ok(stmt.query_map([starts], |r| r.get(0))?.collect::<rusqlite::Result<Vec<String>>>()?)
        })
        .await
    }

    async fn auth_event_ids(&self, event_id: String) -> Result<Vec<String>> {
        self.read(move |c| {
            let mut stmt = c.prepare_cached("SELECT auth_event_id FROM event_auth WHERE event_id = ?1")?;
            Ok(stmt.query_map([&event_id], |r| r.get(0))?.collect::<rusqlite::Result<Vec<String>>>()?)
        })
        .await
    }

    async fn append_event(&self, event: NewEvent) -> Result<Appended> {
        self.write(move |c| append(c, &event)).await
    }

    // The transaction id is checked in the writer, so the check and the
    // insert are one step and a send costs no separate read.
    fn queue_local_append(&self, event: NewEvent, then: Box<dyn FnOnce(bool) + Send>) -> Result<QueuedAppend> {
        let queued = self.write_queued(
            move |c| {
                if let Some((user, device, txn)) = &event.txn
                    && let Some(existing) = c
                        .one(
                            "SELECT event_id FROM event_txns WHERE user_id = ?1 AND device_id = ?2 AND txn_id = ?3",
                            params![user, device, txn],
                            |r| r.get(0),
                        )
                        .optional()?
                {
                    return Ok(AppendOutcome::AlreadySent(existing));
                }
                for prev in &event.prev_events {
                    let stored: bool =
                        c.one("SELECT EXISTS (SELECT 1 FROM events WHERE event_id = ?1)", [prev], |r| r.get(0))?;
                    if !stored {
                        return Ok(AppendOutcome::StaleHead);
                    }
                }
                Ok(AppendOutcome::Stored(append(c, &event)?))
            },
            move |result| then(matches!(result, Ok(AppendOutcome::Stored(_)))),
        )?;
        Ok(Box::pin(queued))
    }

    async fn room_head(&self, room_id: String) -> Result<Option<RoomHeadRecord>> {
        self.read(move |c| {
            let row: Option<(String, Option<i64>)> = c
                .one("SELECT room_version, current_state_group FROM rooms WHERE room_id = ?1", [&room_id], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })
                .optional()?;
            let Some((room_version, group)) = row else {
                return Ok(None);
            };
            let mut stmt = c.prepare_cached("SELECT event_id FROM forward_extremities WHERE room_id = ?1")?;
            let forward_extremities =
                stmt.query_map([&room_id], |r| r.get(0))?.collect::<rusqlite::Result<Vec<String>>>()?;
            let max_depth: i64 =
                c.one("SELECT COALESCE(MAX(depth), 0) FROM events WHERE room_id = ?1", [&room_id], |r| r.get(0))?;
            Ok(Some(RoomHeadRecord {
                room_version,
                current_state_group: group.unwrap_or(0),
                forward_extremities,
                max_depth,
            }))
        })
        .await
    }

    async fn get_event(&self, event_id: String) -> Result<Option<StoredEvent>> {
        self.read(move |c| {
            Ok(c.one(&format!("SELECT {EVENT_COLUMNS} FROM events WHERE event_id = ?1"), [&event_id], event_from_row)
                .optional()?)
        })
        .await
    }

    async fn get_events(&self, event_ids: Vec<String>) -> Result<Vec<StoredEvent>> {
        self.read(move |c| {
            let mut stmt = c.prepare_cached(&format!("SELECT {EVENT_COLUMNS} FROM events WHERE event_id = ?1"))?;
            let mut out = Vec::with_capacity(event_ids.len());
            for id in &event_ids {
                if let Some(e) = stmt.query_row([id], event_from_row).optional()? {
                    out.push(e);
                }
            }
            Ok(out)
        })
        .await
    }

    async fn room_events(
        &self,
        room_id: String,
        from: i64,
        to: Option<i64>,
        direction: Direction,
        limit: usize,
    ) -> Result<Vec<StoredEvent>> {
        self.read(move |c| {
            let (sql, bound) = match direction {
                Direction::Backward => (
                    format!(
                        "SELECT {EVENT_COLUMNS} FROM events WHERE room_id = ?1 AND stream_ordering <= ?2
                         AND stream_ordering > ?3 AND outlier = 0 ORDER BY stream_ordering DESC LIMIT ?4"
                    ),
                    to.unwrap_or(i64::MIN),
                ),
                Direction::Forward => (
                    format!(
                        "SELECT {EVENT_COLUMNS} FROM events WHERE room_id = ?1 AND stream_ordering > ?2
                         AND stream_ordering <= ?3 AND outlier = 0 ORDER BY stream_ordering ASC LIMIT ?4"
                    ),
                    to.unwrap_or(i64::MAX),
                ),
            };
            let mut stmt = c.prepare_cached(&sql)?;
            let rows = stmt.query_map(params![room_id, from, bound, limit as i64], event_from_row)?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .await
    }

    async fn room_max_stream(&self, room_id: String) -> Result<i64> {
        self.read(move |c| {
            Ok(c.one("SELECT COALESCE(MAX(stream_ordering), 0) FROM events WHERE room_id = ?1", [&room_id], |r| {
                r.get(0)
            })?)
        })
        .await
    }

    async fn event_near_timestamp(
        &self,
        room_id: String,
        ts: i64,
        direction: Direction,
    ) -> Result<Option<StoredEvent>> {
        self.read(move |c| {
            let sql = match direction {
                Direction::Forward => format!(
                    "SELECT {EVENT_COLUMNS} FROM events WHERE room_id = ?1 AND origin_server_ts >= ?2 AND outlier = 0
                     ORDER BY origin_server_ts ASC, stream_ordering ASC LIMIT 1"
                ),
                Direction::Backward => format!(
                    "SELECT {EVENT_COLUMNS} FROM events WHERE room_id = ?1 AND origin_server_ts <= ?2 AND outlier = 0
                     ORDER BY origin_server_ts DESC, stream_ordering DESC LIMIT 1"
                ),
            };
            Ok(c.one(&sql, params![room_id, ts], event_from_row).optional()?)
        })
        .await
    }

    async fn room_version(&self, room_id: String) -> Result<Option<String>> {
        self.read(move |c| {
            Ok(c.one("SELECT room_version FROM rooms WHERE room_id = ?1", [&room_id], |r| r.get(0)).optional()?)
        })
        .await
    }

    async fn find_txn(&self, user_id: String, device_id: String, txn_id: String) -> Result<Option<String>> {
        self.read(move |c| {
            Ok(c.one(
                "SELECT event_id FROM event_txns WHERE user_id = ?1 AND device_id = ?2 AND txn_id = ?3",
                params![user_id, device_id, txn_id],
                |r| r.get(0),
            )
            .optional()?)
        })
        .await
    }
}

/// Records the relation of a just stored timeline event, if it has one
/// (`m.relates_to` with a `rel_type` and an `event_id`).
fn record_relation(c: &Connection, event_id: &str) -> Result<()> {
    c.exec(
        "INSERT OR IGNORE INTO event_relations (event_id, room_id, relates_to, rel_type, type, sender, stream_ordering)
         SELECT event_id, room_id, json_extract(json, '$.content.\"m.relates_to\".event_id'),
                json_extract(json, '$.content.\"m.relates_to\".rel_type'), type, sender, stream_ordering
         FROM events
         WHERE event_id = ?1 AND outlier = 0
           AND json_type(json, '$.content.\"m.relates_to\".rel_type') = 'text'
           AND json_type(json, '$.content.\"m.relates_to\".event_id') = 'text'",
        [event_id],
    )?;
    Ok(())
}
