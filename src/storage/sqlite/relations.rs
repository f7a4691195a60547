//! Relations in SQLite: `event_relations`, one row per relating timeline
//! event, written by the appends in `events.rs`, and the reads behind
//! `/relations`, `/threads` and bundled aggregations.

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, params};

use super::{
    CachedSql, SqliteStore,
    events::{EVENT_COLUMNS, event_from_row},
};
use crate::storage::{
    Result,
    relations::{RelationQuery, RelationStore, RelationSummary, ThreadRoot, ThreadSummary},
    rooms::{Direction, StoredEvent},
};

/// Up to how many events' summaries are read on the calling thread.
const QUICK_SUMMARIES: usize = 16;

/// One event's summary. Relations from other rooms never count (an event
/// may name any event id in `m.relates_to`).
fn summary(c: &Connection, parent: &str, user: &str) -> Result<Option<RelationSummary>> {
    // The edit must come from the original's sender and keep its type
    // (spec: "Validity of replacement events").
    let latest_edit: Option<String> = c
        .one(
            "SELECT r.event_id FROM event_relations r
             JOIN events e ON e.event_id = r.event_id
             JOIN events p ON p.event_id = r.relates_to
             WHERE r.relates_to = ?1 AND r.rel_type = 'm.replace' AND e.redacted_by IS NULL
               AND +r.room_id = p.room_id AND e.sender = p.sender AND e.type = p.type
               AND e.state_key IS NULL AND p.state_key IS NULL
               AND json_type(e.json, '$.content.\"m.new_content\"') = 'object'
             ORDER BY e.origin_server_ts DESC, e.event_id DESC LIMIT 1",
            [parent],
            |r| r.get(0),
        )
        .optional()?;
    let thread = c.one(
        "SELECT COUNT(*), MAX(r.sender = ?2),
                    (SELECT r2.event_id FROM event_relations r2 JOIN events e2 ON e2.event_id = r2.event_id
                     WHERE r2.relates_to = ?1 AND r2.rel_type = 'm.thread' AND e2.redacted_by IS NULL
                       AND +r2.room_id = (SELECT room_id FROM events WHERE event_id = ?1)
                     ORDER BY r2.stream_ordering DESC LIMIT 1)
             FROM event_relations r JOIN events e ON e.event_id = r.event_id
             WHERE r.relates_to = ?1 AND r.rel_type = 'm.thread' AND e.redacted_by IS NULL
               AND +r.room_id = (SELECT room_id FROM events WHERE event_id = ?1)",
        params![parent, user],
        |r| {
            let count: i64 = r.get(0)?;
            let participated: Option<bool> = r.get(1)?;
            let latest: Option<String> = r.get(2)?;
            Ok(latest.filter(|_| count > 0).map(|latest_event| ThreadSummary {
                count,
                latest_event,
                participated: participated.unwrap_or(false),
            }))
        },
    )?;
    let references = {
        let mut stmt = c.prepare_cached(
            "SELECT r.event_id FROM event_relations r JOIN events e ON e.event_id = r.event_id
             WHERE r.relates_to = ?1 AND r.rel_type = 'm.reference' AND e.redacted_by IS NULL
               AND +r.room_id = (SELECT room_id FROM events WHERE event_id = ?1)
             ORDER BY r.stream_ordering ASC",
        )?;
        stmt.query_map([parent], |r| r.get(0))?.collect::<rusqlite::Result<Vec<String>>>()?
    };
    if latest_edit.is_none() && thread.is_none() && references.is_empty() {
        return Ok(None);
    }
    Ok(Some(RelationSummary { parent: parent.to_owned(), latest_edit, thread, references }))
}

#[async_trait]
impl RelationStore for SqliteStore {
    async fn relations(&self, q: RelationQuery) -> Result<Vec<StoredEvent>> {
        self.read(move |c| {
            let (order, bounds, from, to) = match q.direction {
                Direction::Backward => (
                    "DESC",
                    "r.stream_ordering <= ?5 AND r.stream_ordering > ?6",
                    q.from.unwrap_or(i64::MAX),
                    q.to.unwrap_or(i64::MIN),
                ),
                Direction::Forward => (
                    "ASC",
                    "r.stream_ordering > ?5 AND r.stream_ordering <= ?6",
                    q.from.unwrap_or(i64::MIN),
                    q.to.unwrap_or(i64::MAX),
                ),
            };
            // The page's ids first, then their columns. Direct relations of
            // one type are a range of the by-parent index, read in order and
            // stopped at the limit; otherwise the relations (and theirs, to
            // the depth asked) are gathered and sorted. `+room_id` keeps
            // SQLite off the by-room index, which would scan every relation
            // in the room (and, in the recursive step, once per relation).
            let relating = if q.depth <= 1 && q.rel_type.is_some() {
                "SELECT r.event_id, r.stream_ordering FROM event_relations r
                 JOIN events e ON e.event_id = r.event_id
                 WHERE r.relates_to = ?1 AND +r.room_id = ?2 AND r.rel_type = ?3 AND ?8 >= 1"
            } else {
                "WITH RECURSIVE tree(event_id, depth) AS (
                     SELECT event_id, 1 FROM event_relations WHERE relates_to = ?1 AND +room_id = ?2
                     UNION
                     SELECT r.event_id, tree.depth + 1 FROM tree
                     JOIN event_relations r ON r.relates_to = tree.event_id
                     WHERE tree.depth < ?8 AND +r.room_id = ?2)
                 SELECT r.event_id, r.stream_ordering FROM tree
                 JOIN event_relations r ON r.event_id = tree.event_id
                 JOIN events e ON e.event_id = r.event_id
                 WHERE (?3 IS NULL OR r.rel_type = ?3)"
            };
            let sql = format!(
                "WITH page(id, pos) AS (
                     {relating} AND (?4 IS NULL OR r.type = ?4) AND {bounds} AND e.redacted_by IS NULL
                     ORDER BY r.stream_ordering {order} LIMIT ?7)
                 SELECT {EVENT_COLUMNS} FROM page JOIN events ON events.event_id = page.id
                 ORDER BY page.pos {order}"
            );
            let mut stmt = c.prepare_cached(&sql)?;
            let rows = stmt.query_map(
                params![q.parent, q.room_id, q.rel_type, q.event_type, from, to, q.limit as i64, q.depth.max(1)],
                event_from_row,
            )?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .await
    }

    async fn relation_summaries(&self, parents: Vec<String>, user: String) -> Result<Vec<RelationSummary>> {
        let parents_len = parents.len();
        let read = move |c: &Connection| {
            let mut out = Vec::new();
            for parent in &parents {
                if let Some(summary) = summary(c, parent, &user)? {
                    out.push(summary);
                }
            }
            Ok(out)
        };
        // An incremental sync's few events are a few index lookups, cheaper
        // here than handed to the blocking pool (as its other reads).
        if parents_len <= QUICK_SUMMARIES { self.read_quick(read).await } else { self.read(read).await }
    }

    async fn thread_roots(
        &self,
        room_id: String,
        participant: Option<String>,
        before: Option<i64>,
        limit: usize,
    ) -> Result<Vec<ThreadRoot>> {
        self.read(move |c| {
            let sql = format!(
                "SELECT {EVENT_COLUMNS}, t.latest FROM
                   (SELECT r.relates_to AS root, MAX(r.stream_ordering) AS latest
                    FROM event_relations r JOIN events e ON e.event_id = r.event_id
                    WHERE r.room_id = ?1 AND r.rel_type = 'm.thread' AND e.redacted_by IS NULL
                    GROUP BY r.relates_to) t
                 JOIN events ON events.event_id = t.root
                 WHERE t.latest <= ?2 AND events.outlier = 0 AND events.room_id = ?1
                   AND (?3 IS NULL OR events.sender = ?3 OR EXISTS (
                        SELECT 1 FROM event_relations p JOIN events pe ON pe.event_id = p.event_id
                        WHERE p.relates_to = t.root AND p.rel_type = 'm.thread' AND p.sender = ?3
                          AND pe.redacted_by IS NULL))
                 ORDER BY t.latest DESC LIMIT ?4"
            );
            let mut stmt = c.prepare_cached(&sql)?;
            let rows = stmt
                .query_map(params![room_id, before.unwrap_or(i64::MAX), participant, limit as i64], |r| {
                    Ok(ThreadRoot { root: event_from_row(r)?, latest_position: r.get(10)? })
                })?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .await
    }
}
