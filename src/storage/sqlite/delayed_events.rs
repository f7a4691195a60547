//! Delayed events (MSC4140) in SQLite: one row per delayed event, whose
//! `status` moves from `scheduled` (through `sending`) to a final one.

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, Row, params};

use super::{CachedSql, SqliteStore};
use crate::storage::{
    DelayedEventStore, Result, StorageError,
    delayed_events::{DelayedEventRow, DelayedQuery, DelayedStatus, Finalised, NewDelayedEvent, ScheduleOutcome},
};

/// The columns `row_of` reads, in its order (a macro, so statements are
/// whole literals built at compile time).
macro_rules! columns {
    () => {
        "delay_id, user_id, device_id, room_id, type, state_key, content, delay_ms, running_since, send_ts, status,
         reason, event_id, error, finalised_ts"
    };
}

fn row_of(r: &Row<'_>) -> rusqlite::Result<(DelayedEventRow, String)> {
    let status: String = r.get(10)?;
    Ok((
        DelayedEventRow {
            delay_id: r.get(0)?,
            user_id: r.get(1)?,
            device_id: r.get(2)?,
            room_id: r.get(3)?,
            kind: r.get(4)?,
            state_key: r.get(5)?,
            content: r.get(6)?,
            delay_ms: r.get(7)?,
            running_since: r.get(8)?,
            send_ts: r.get(9)?,
            status: DelayedStatus::Scheduled,
            reason: r.get(11)?,
            event_id: r.get(12)?,
            error: r.get(13)?,
            finalised_ts: r.get(14)?,
        },
        status,
    ))
}

/// Runs a query of `COLUMNS` and parses the status of each row.
fn rows<P: rusqlite::Params>(c: &Connection, sql: &str, params: P) -> Result<Vec<DelayedEventRow>> {
    let mut stmt = c.prepare_cached(sql)?;
    let found = stmt.query_map(params, row_of)?.collect::<rusqlite::Result<Vec<_>>>()?;
    found
        .into_iter()
        .map(|(mut row, status)| {
            row.status = DelayedStatus::parse(&status)
                .ok_or_else(|| StorageError::Corrupt(format!("delayed event status `{status}`")))?;
            Ok(row)
        })
        .collect()
}

#[async_trait]
impl DelayedEventStore for SqliteStore {
    async fn schedule_delayed_event(&self, event: NewDelayedEvent, limit: usize) -> Result<ScheduleOutcome> {
        self.write(move |c| {
            if let Some(txn_id) = &event.txn_id {
                let seen: Option<String> = c
                    .one(
                        "SELECT delay_id FROM delayed_events WHERE user_id = ?1 AND device_id = ?2 AND txn_id = ?3",
                        params![event.user_id, event.device_id, txn_id],
                        |r| r.get(0),
                    )
                    .optional()?;
                if let Some(delay_id) = seen {
                    return Ok(ScheduleOutcome::AlreadyScheduled(delay_id));
                }
            }
            let (pending, next): (i64, Option<i64>) = c.one(
                "SELECT COUNT(*), MIN(send_ts) FROM delayed_events
                 WHERE user_id = ?1 AND status IN ('scheduled', 'sending')",
                [&event.user_id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?;
            if usize::try_from(pending).unwrap_or(0) >= limit {
                return Ok(ScheduleOutcome::LimitReached { next_send_ts: next.unwrap_or(event.now) });
            }
            c.exec(
                "INSERT INTO delayed_events (delay_id, user_id, device_id, txn_id, room_id, type, state_key, content,
                                             delay_ms, running_since, send_ts, status)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, 'scheduled')",
                params![
                    event.delay_id,
                    event.user_id,
                    event.device_id,
                    event.txn_id,
                    event.room_id,
                    event.kind,
                    event.state_key,
                    event.content,
                    event.delay_ms,
                    event.now,
                    event.now.saturating_add(event.delay_ms),
                ],
            )?;
            Ok(ScheduleOutcome::Scheduled)
        })
        .await
    }

    async fn restart_delayed_event(&self, delay_id: String, now: i64) -> Result<Option<i64>> {
        self.write(move |c| {
            Ok(c.one(
                "UPDATE delayed_events SET running_since = ?2, send_ts = ?2 + delay_ms
                 WHERE delay_id = ?1 AND status = 'scheduled' RETURNING send_ts",
                params![delay_id, now],
                |r| r.get(0),
            )
            .optional()?)
        })
        .await
    }

    async fn cancel_delayed_event(&self, delay_id: String, now: i64) -> Result<bool> {
        self.write(move |c| {
            let changed = c.exec(
                "UPDATE delayed_events SET status = 'cancelled', reason = 'action', finalised_ts = ?2
                 WHERE delay_id = ?1 AND status = 'scheduled'",
                params![delay_id, now],
            )?;
            Ok(changed == 1)
        })
        .await
    }

    async fn claim_delayed_event(&self, delay_id: String) -> Result<Option<DelayedEventRow>> {
        self.write(move |c| {
            let claimed = rows(
                c,
                concat!(
                    "UPDATE delayed_events SET status = 'sending' WHERE delay_id = ?1 AND status = 'scheduled'
                     RETURNING ",
                    columns!(),
                    ""
                ),
                [&delay_id],
            )?;
            Ok(claimed.into_iter().next())
        })
        .await
    }

    async fn claim_due_delayed_events(&self, now: i64) -> Result<Vec<DelayedEventRow>> {
        self.write(move |c| {
            let mut claimed = rows(
                c,
                concat!(
                    "UPDATE delayed_events SET status = 'sending' WHERE status = 'scheduled' AND send_ts <= ?1
                     RETURNING ",
                    columns!(),
                    ""
                ),
                [now],
            )?;
            claimed.sort_by_key(|r| r.send_ts);
            Ok(claimed)
        })
        .await
    }

    async fn release_delayed_event(&self, delay_id: String) -> Result<()> {
        self.write(move |c| {
            c.exec(
                "UPDATE delayed_events SET status = 'scheduled' WHERE delay_id = ?1 AND status = 'sending'",
                [&delay_id],
            )?;
            Ok(())
        })
        .await
    }

    async fn finalise_delayed_event(&self, delay_id: String, outcome: Finalised) -> Result<()> {
        self.write(move |c| {
            c.exec(
                "UPDATE delayed_events SET status = ?2, reason = ?3, event_id = ?4, error = ?5, finalised_ts = ?6
                 WHERE delay_id = ?1",
                params![
                    delay_id,
                    outcome.status.as_str(),
                    outcome.reason,
                    outcome.event_id,
                    outcome.error,
                    outcome.now
                ],
            )?;
            Ok(())
        })
        .await
    }

    async fn reschedule_claimed_delayed_events(&self) -> Result<usize> {
        self.write(|c| Ok(c.exec("UPDATE delayed_events SET status = 'scheduled' WHERE status = 'sending'", [])?)).await
    }

    async fn next_delayed_send_ts(&self) -> Result<Option<i64>> {
        self.read(
            |c| Ok(c.one("SELECT MIN(send_ts) FROM delayed_events WHERE status = 'scheduled'", [], |r| r.get(0))?),
        )
        .await
    }

    async fn others_delayed_state_pending(
        &self,
        room_id: String,
        kind: String,
        state_key: String,
        sender: String,
    ) -> Result<bool> {
        self.read(move |c| {
            Ok(c.one(
                "SELECT EXISTS (SELECT 1 FROM delayed_events
                                WHERE room_id = ?1 AND type = ?2 AND state_key = ?3 AND status = 'scheduled'
                                  AND user_id != ?4)",
                params![room_id, kind, state_key, sender],
                |r| r.get(0),
            )?)
        })
        .await
    }

    async fn cancel_others_delayed_state(
        &self,
        room_id: String,
        kind: String,
        state_key: String,
        sender: String,
        error: String,
        now: i64,
    ) -> Result<usize> {
        self.write(move |c| {
            Ok(c.exec(
                "UPDATE delayed_events SET status = 'cancelled', reason = 'error', error = ?5, finalised_ts = ?6
                 WHERE room_id = ?1 AND type = ?2 AND state_key = ?3 AND status = 'scheduled' AND user_id != ?4",
                params![room_id, kind, state_key, sender, error, now],
            )?)
        })
        .await
    }

    async fn delayed_events_of(&self, user_id: String, query: DelayedQuery) -> Result<Vec<DelayedEventRow>> {
        let ids = serde_json::to_string(&query.delay_ids).map_err(|e| StorageError::Backend(Box::new(e)))?;
        self.read(move |c| {
            let mut found = Vec::new();
            if query.pending != Some(false) {
                found.extend(rows(
                    c,
                    concat!(
                        "SELECT ",
                        columns!(),
                        " FROM delayed_events
                         WHERE user_id = ?1 AND status IN ('scheduled', 'sending')
                           AND (?2 = '[]' OR delay_id IN (SELECT value FROM json_each(?2)))
                         ORDER BY send_ts"
                    ),
                    params![user_id, ids],
                )?);
            }
            if query.pending != Some(true) {
                found.extend(rows(
                    c,
                    concat!(
                        "SELECT ",
                        columns!(),
                        " FROM delayed_events
                         WHERE user_id = ?1 AND status IN ('sent', 'cancelled', 'failed')
                           AND (?2 = '[]' OR delay_id IN (SELECT value FROM json_each(?2)))
                         ORDER BY finalised_ts DESC LIMIT ?3"
                    ),
                    params![user_id, ids, query.finalised_limit as i64],
                )?);
            }
            Ok(found)
        })
        .await
    }

    async fn prune_finalised_delayed_events(&self, before: i64) -> Result<usize> {
        self.write(move |c| {
            Ok(c.exec("DELETE FROM delayed_events WHERE finalised_ts IS NOT NULL AND finalised_ts < ?1", [before])?)
        })
        .await
    }
}
