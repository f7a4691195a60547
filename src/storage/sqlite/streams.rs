//! Account data, receipts, presence and filters in SQLite. Every change
//! takes the next position of the shared `misc` stream inside the same
//! transaction, so positions are committed in order.

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, params};

use super::{CachedSql, SqliteStore};
use crate::storage::{
    Result, StreamStore,
    streams::{PresenceRow, ReceiptRow},
};

pub(super) fn next_misc_position(c: &Connection) -> Result<i64> {
    Ok(c.one("UPDATE stream_positions SET pos = pos + 1 WHERE name = 'misc' RETURNING pos", [], |r| r.get(0))?)
}

#[async_trait]
impl StreamStore for SqliteStore {
    async fn misc_position(&self) -> Result<i64> {
        self.read(|c| Ok(c.one("SELECT pos FROM stream_positions WHERE name = 'misc'", [], |r| r.get(0))?)).await
    }

    async fn events_position(&self) -> Result<i64> {
        self.read(|c| Ok(c.one("SELECT COALESCE(MAX(stream_ordering), 0) FROM events", [], |r| r.get(0))?)).await
    }

    async fn set_account_data(&self, user_id: String, room_id: String, kind: String, content: String) -> Result<i64> {
        self.write(move |c| {
            let pos = next_misc_position(c)?;
            c.exec(
                "INSERT INTO account_data (user_id, room_id, type, content, stream_id) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (user_id, room_id, type) DO UPDATE SET content = excluded.content, stream_id = excluded.stream_id",
                params![user_id, room_id, kind, content, pos],
            )?;
            Ok(pos)
        })
        .await
    }

    async fn get_account_data(&self, user_id: String, room_id: String, kind: String) -> Result<Option<String>> {
        self.read(move |c| {
            Ok(c.one(
                "SELECT content FROM account_data WHERE user_id = ?1 AND room_id = ?2 AND type = ?3",
                params![user_id, room_id, kind],
                |r| r.get(0),
            )
            .optional()?)
        })
        .await
    }

    async fn set_receipt(&self, receipt: ReceiptRow) -> Result<i64> {
        self.write(move |c| {
            let pos = next_misc_position(c)?;
            c.exec(
                "INSERT INTO receipts (room_id, user_id, receipt_type, thread_id, event_id, ts, stream_id)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                 ON CONFLICT (room_id, user_id, receipt_type, thread_id) DO UPDATE
                 SET event_id = excluded.event_id, ts = excluded.ts, stream_id = excluded.stream_id",
                params![
                    receipt.room_id,
                    receipt.user_id,
                    receipt.receipt_type,
                    receipt.thread_id,
                    receipt.event_id,
                    receipt.ts,
                    pos
                ],
            )?;
            Ok(pos)
        })
        .await
    }

    async fn set_presence(&self, row: PresenceRow) -> Result<i64> {
        self.write(move |c| {
            let pos = next_misc_position(c)?;
            c.exec(
                "INSERT INTO presence (user_id, state, status_msg, last_active_ts, stream_id) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (user_id) DO UPDATE SET state = excluded.state, status_msg = excluded.status_msg,
                     last_active_ts = excluded.last_active_ts, stream_id = excluded.stream_id",
                params![row.user_id, row.state, row.status_msg, row.last_active_ts, pos],
            )?;
            Ok(pos)
        })
        .await
    }

    async fn get_presence(&self, user_id: String) -> Result<Option<PresenceRow>> {
        self.read(move |c| {
            Ok(c.one(
                "SELECT user_id, state, status_msg, last_active_ts FROM presence WHERE user_id = ?1",
                [&user_id],
                presence_from_row,
            )
            .optional()?)
        })
        .await
    }

    async fn create_filter(&self, user_id: String, json: String) -> Result<i64> {
        self.write(move |c| {
            let id: i64 =
                c.one("SELECT COALESCE(MAX(filter_id), -1) + 1 FROM filters WHERE user_id = ?1", [&user_id], |r| {
                    r.get(0)
                })?;
            c.exec("INSERT INTO filters (user_id, filter_id, json) VALUES (?1, ?2, ?3)", params![user_id, id, json])?;
            Ok(id)
        })
        .await
    }

    async fn get_filter(&self, user_id: String, filter_id: i64) -> Result<Option<String>> {
        self.read(move |c| {
            Ok(c.one(
                "SELECT json FROM filters WHERE user_id = ?1 AND filter_id = ?2",
                params![user_id, filter_id],
                |r| r.get(0),
            )
            .optional()?)
        })
        .await
    }
}

fn presence_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<PresenceRow> {
    Ok(PresenceRow { user_id: r.get(0)?, state: r.get(1)?, status_msg: r.get(2)?, last_active_ts: r.get(3)? })
}
