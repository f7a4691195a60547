//! Push actions in SQLite, and the unread notification counts sync reads
//! from them.

use std::collections::HashMap;

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, params};

use super::{CachedSql, SqliteStore, snapshot};
use crate::storage::{
    PushStore, Result,
    push::{NotificationRow, PushActionRow},
    sync::{NotificationCounts, UnreadCount},
};

/// The stream position each of the user's read receipts in the room
/// reaches, by thread (`""`: unthreaded), in thread order. Joining counts
/// as an unthreaded receipt at the join: what came before it (the invite
/// that notified the user, say) is not unread in the room.
fn read_receipt_positions(c: &Connection, room_id: &str, user_id: &str) -> Result<Vec<(String, i64)>> {
    let mut stmt = c.prepare_cached(
        "SELECT r.thread_id, MAX(e.stream_ordering) FROM receipts r JOIN events e ON e.event_id = r.event_id
         WHERE r.room_id = ?1 AND r.user_id = ?2 AND r.receipt_type IN ('m.read', 'm.read.private')
         GROUP BY r.thread_id ORDER BY r.thread_id",
    )?;
    let rows = stmt.query_map(params![room_id, user_id], |r| Ok((r.get(0)?, r.get(1)?)))?;
    let mut positions: Vec<(String, i64)> = rows.collect::<rusqlite::Result<_>>()?;
    let joined: Option<i64> = c
        .one(
            "SELECT stream_ordering FROM room_memberships WHERE room_id = ?1 AND user_id = ?2 AND membership = 'join'",
            params![room_id, user_id],
            |r| r.get(0),
        )
        .optional()?;
    if let Some(joined) = joined {
        match positions.first_mut() {
            Some((thread, position)) if thread.is_empty() => *position = (*position).max(joined),
            _ => positions.insert(0, (String::new(), joined)),
        }
    }
    Ok(positions)
}

/// Where the user has read up to for events of `thread` (`""`: the main
/// timeline): an unthreaded receipt covers every thread, a threaded one
/// its own (the main timeline's is called `main`).
fn read_up_to(receipts: &[(String, i64)], thread: &str) -> i64 {
    let key = if thread.is_empty() { "main" } else { thread };
    let find = |k: &str| receipts.iter().find(|(t, _)| t == k).map_or(0, |(_, p)| *p);
    find("").max(find(key))
}

/// Adds the unread ones among push actions `(seq, stream, thread, highlight)`.
fn count_unread(count: &mut UnreadCount, actions: impl Iterator<Item = (i64, i64, String, bool)>) {
    for (seq, stream, thread, highlight) in actions {
        count.counted_seq = count.counted_seq.max(seq);
        if stream <= read_up_to(&count.receipts, &thread) {
            continue;
        }
        let counts = if thread.is_empty() {
            &mut count.main
        } else {
            match count.threads.binary_search_by(|(t, _)| t.as_str().cmp(&thread)) {
                Ok(i) => &mut count.threads[i].1,
                Err(i) => {
                    count.threads.insert(i, (thread, NotificationCounts::default()));
                    &mut count.threads[i].1
                }
            }
        };
        counts.notifications += 1;
        counts.highlights += u64::from(highlight);
    }
}

/// The user's unread notifications in a room. Counting from the receipts
/// costs a pass over every unread action, so an earlier count against the
/// same receipts is carried on with the actions stored since it: nothing
/// it counted changes except by a redaction, itself an event after it.
pub(super) fn unread_count(
    c: &Connection,
    room_id: &str,
    user_id: &str,
    earlier: Option<UnreadCount>,
) -> Result<UnreadCount> {
    let receipts = read_receipt_positions(c, room_id, user_id)?;
    let newest: i64 = c.one(
        "SELECT COALESCE(MAX(stream_ordering), 0) FROM events WHERE room_id = ?1 AND outlier = 0",
        [room_id],
        |r| r.get(0),
    )?;
    let row = |r: &rusqlite::Row<'_>| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?));
    if let Some(mut count) = earlier.filter(|e| e.receipts == receipts && e.counted_until <= newest) {
        let redacted: bool = c.one(
            "SELECT EXISTS (SELECT 1 FROM events WHERE room_id = ?1 AND stream_ordering > ?2
             AND type = 'm.room.redaction')",
            params![room_id, count.counted_until],
            |r| r.get(0),
        )?;
        if !redacted {
            let mut stmt = c.prepare_cached(
                "SELECT seq, stream_ordering, thread_id, highlight FROM push_actions
                 WHERE user_id = ?1 AND room_id = ?2 AND seq > ?3",
            )?;
            let actions = stmt.query_map(params![user_id, room_id, count.counted_seq], row)?;
            count_unread(&mut count, actions.collect::<rusqlite::Result<Vec<_>>>()?.into_iter());
            count.counted_until = newest;
            return Ok(count);
        }
    }
    // Every action at or before the unthreaded receipt is read.
    let unthreaded = receipts.iter().find(|(t, _)| t.is_empty()).map_or(0, |(_, p)| *p);
    let mut count = UnreadCount { receipts, counted_until: newest, ..UnreadCount::default() };
    let mut stmt = c.prepare_cached(
        "SELECT seq, stream_ordering, thread_id, highlight FROM push_actions
         WHERE user_id = ?1 AND room_id = ?2 AND stream_ordering > ?3",
    )?;
    let actions = stmt.query_map(params![user_id, room_id, unthreaded], row)?;
    count_unread(&mut count, actions.collect::<rusqlite::Result<Vec<_>>>()?.into_iter());
    Ok(count)
}

fn action_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<PushActionRow> {
    let thread: String = r.get(5)?;
    Ok(PushActionRow {
        user_id: r.get(0)?,
        room_id: r.get(1)?,
        event_id: r.get(2)?,
        stream_ordering: r.get(3)?,
        highlight: r.get(4)?,
        thread_id: (!thread.is_empty()).then_some(thread),
        actions: r.get(6)?,
        ts: r.get(7)?,
    })
}

#[async_trait]
impl PushStore for SqliteStore {
    async fn add_push_actions(&self, rows: Vec<PushActionRow>) -> Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        self.write(move |c| {
            let mut insert = c.prepare_cached(
                "INSERT INTO push_actions (user_id, room_id, event_id, stream_ordering, thread_id, highlight, actions, ts)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )?;
            for row in &rows {
                insert.execute(params![
                    row.user_id,
                    row.room_id,
                    row.event_id,
                    row.stream_ordering,
                    row.thread_id.as_deref().unwrap_or(""),
                    row.highlight,
                    row.actions,
                    row.ts
                ])?;
            }
            Ok(())
        })
        .await
    }

    async fn remove_push_actions(&self, event_id: String) -> Result<()> {
        self.write(move |c| {
            c.exec("DELETE FROM push_actions WHERE event_id = ?1", [&event_id])?;
            c.exec("DELETE FROM push_queue WHERE event_id = ?1", [&event_id])?;
            Ok(())
        })
        .await
    }

    async fn notifications(
        &self,
        user_id: String,
        before: Option<i64>,
        limit: usize,
        only_highlight: bool,
    ) -> Result<Vec<NotificationRow>> {
        self.read(move |c| {
            snapshot(c, |c| {
                let mut stmt = c.prepare_cached(
                    "SELECT user_id, room_id, event_id, stream_ordering, highlight, thread_id, actions, ts
                     FROM push_actions WHERE user_id = ?1 AND stream_ordering < ?2 AND (highlight = 1 OR ?3 = 0)
                     ORDER BY stream_ordering DESC LIMIT ?4",
                )?;
                let rows = stmt
                    .query_map(params![user_id, before.unwrap_or(i64::MAX), only_highlight, limit as i64], action_row)?
                    .collect::<rusqlite::Result<Vec<_>>>()?;
                let mut receipts: HashMap<String, Vec<(String, i64)>> = HashMap::new();
                let mut out = Vec::with_capacity(rows.len());
                for action in rows {
                    if !receipts.contains_key(&action.room_id) {
                        let positions = read_receipt_positions(c, &action.room_id, &user_id)?;
                        receipts.insert(action.room_id.clone(), positions);
                    }
                    let thread = action.thread_id.as_deref().unwrap_or("");
                    let read = action.stream_ordering <= read_up_to(&receipts[&action.room_id], thread);
                    out.push(NotificationRow { action, read });
                }
                Ok(out)
            })
        })
        .await
    }

    async fn unread_notification_total(&self, user_id: String) -> Result<u64> {
        self.read(move |c| {
            snapshot(c, |c| {
                let mut rooms = c.prepare_cached(
                    "SELECT room_id FROM room_memberships WHERE user_id = ?1 AND membership = 'join'",
                )?;
                let rooms =
                    rooms.query_map([&user_id], |r| r.get::<_, String>(0))?.collect::<rusqlite::Result<Vec<_>>>()?;
                let mut total = 0;
                for room in rooms {
                    total += unread_count(c, &room, &user_id, None)?.total().notifications;
                }
                Ok(total)
            })
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count(receipts: &[(&str, i64)], actions: &[(i64, i64, &str, bool)]) -> UnreadCount {
        let mut count = UnreadCount {
            receipts: receipts.iter().map(|(t, p)| (t.to_string(), *p)).collect(),
            ..UnreadCount::default()
        };
        count_unread(&mut count, actions.iter().map(|(s, p, t, h)| (*s, *p, t.to_string(), *h)));
        count
    }

    #[test]
    fn an_unthreaded_receipt_covers_every_thread() {
        let c = count(&[("", 5)], &[(1, 4, "", true), (2, 5, "$t", false), (3, 6, "", true), (4, 7, "$t", false)]);
        assert_eq!(c.main, NotificationCounts { notifications: 1, highlights: 1 });
        assert_eq!(c.threads, vec![("$t".to_owned(), NotificationCounts { notifications: 1, highlights: 0 })]);
        assert_eq!(c.counted_seq, 4);
        assert_eq!(c.total(), NotificationCounts { notifications: 2, highlights: 1 });
    }

    #[test]
    fn a_threaded_receipt_covers_only_its_thread() {
        let c = count(&[("$t", 9), ("main", 2)], &[(1, 3, "", false), (2, 5, "$t", false), (3, 8, "$u", true)]);
        assert_eq!(c.main.notifications, 1);
        assert_eq!(c.threads, vec![("$u".to_owned(), NotificationCounts { notifications: 1, highlights: 1 })]);
    }
}
