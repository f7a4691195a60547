//! Federation tables in SQLite: other servers' verify keys, the persistent
//! outbound queue with the transaction in flight per destination, and the
//! ids of transactions received.

use async_trait::async_trait;
use rusqlite::{OptionalExtension, params};

use super::{CachedSql, SqliteStore};
use crate::storage::{
    FederationStore, Result,
    federation::{OutgoingTxn, QueueKind, QueuedItem, StoredServerKey},
    now_ms,
};

/// How a queue row names its kind.
fn kind_column(kind: QueueKind) -> &'static str {
    match kind {
        QueueKind::Pdu => "pdu",
        QueueKind::Edu => "edu",
    }
}

#[async_trait]
impl FederationStore for SqliteStore {
    async fn server_keys(&self, server: String) -> Result<Vec<StoredServerKey>> {
        self.read(move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT key_id, public_key, valid_until_ts, expired_ts FROM server_keys WHERE server_name = ?1",
            )?;
            let rows = stmt.query_map([&server], |r| {
                Ok(StoredServerKey {
                    key_id: r.get(0)?,
                    public_key: r.get(1)?,
                    valid_until_ts: r.get(2)?,
                    expired_ts: r.get(3)?,
                })
            })?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .await
    }

    async fn store_server_keys(&self, server: String, keys: Vec<StoredServerKey>) -> Result<()> {
        self.write(move |c| {
            let mut stmt = c.prepare_cached(
                "INSERT INTO server_keys (server_name, key_id, public_key, valid_until_ts, expired_ts, fetched_ts)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT (server_name, key_id) DO UPDATE SET public_key = excluded.public_key,
                     valid_until_ts = MAX(valid_until_ts, excluded.valid_until_ts),
                     expired_ts = excluded.expired_ts, fetched_ts = excluded.fetched_ts",
            )?;
            for key in &keys {
                stmt.execute(params![
                    server,
                    key.key_id,
                    key.public_key,
                    key.valid_until_ts,
                    key.expired_ts,
                    now_ms()
                ])?;
            }
            Ok(())
        })
        .await
    }

    async fn enqueue_federation(&self, items: Vec<(String, QueueKind, String)>) -> Result<()> {
        self.write(move |c| {
            let mut stmt =
                c.prepare_cached("INSERT INTO federation_queue (destination, kind, json) VALUES (?1, ?2, ?3)")?;
            for (destination, kind, json) in &items {
                stmt.execute(params![destination, kind_column(*kind), json])?;
            }
            Ok(())
        })
        .await
    }

    async fn queued_destinations(&self) -> Result<Vec<String>> {
        self.read(|c| {
            let mut stmt = c.prepare_cached("SELECT DISTINCT destination FROM federation_queue")?;
            Ok(stmt.query_map([], |r| r.get(0))?.collect::<rusqlite::Result<Vec<String>>>()?)
        })
        .await
    }

    async fn next_federation_txn(
        &self,
        destination: String,
        max_pdus: usize,
        max_edus: usize,
    ) -> Result<Option<OutgoingTxn>> {
        self.write(move |c| {
            let in_flight: Option<(String, i64)> = c
                .one("SELECT txn_id, last_id FROM federation_txn_out WHERE destination = ?1", [&destination], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })
                .optional()?;
            let mut stmt = c.prepare_cached(
                "SELECT id, kind, json FROM federation_queue WHERE destination = ?1 AND id <= ?2 ORDER BY id",
            )?;
            let bound = in_flight.as_ref().map(|(_, last)| *last).unwrap_or(i64::MAX);
            let mut rows = stmt.query(params![destination, bound])?;
            let (mut pdus, mut edus, mut last_id) = (0usize, 0usize, None);
            let mut items = Vec::new();
            while let Some(row) = rows.next()? {
                let id: i64 = row.get(0)?;
                let kind: String = row.get(1)?;
                let kind = if kind == "pdu" { QueueKind::Pdu } else { QueueKind::Edu };
                if in_flight.is_none() {
                    let full = match kind {
                        QueueKind::Pdu => pdus >= max_pdus,
                        QueueKind::Edu => edus >= max_edus,
                    };
                    if full {
                        break;
                    }
                }
                match kind {
                    QueueKind::Pdu => pdus += 1,
                    QueueKind::Edu => edus += 1,
                }
                items.push(QueuedItem { kind, json: row.get(2)? });
                last_id = Some(id);
            }
            drop(rows);
            if let Some((txn_id, last)) = in_flight {
                return Ok(Some(OutgoingTxn { txn_id, items, last_id: last }));
            }
            let Some(last_id) = last_id else { return Ok(None) };
            let txn_id = format!("{}-{last_id}", now_ms());
            c.exec(
                "INSERT INTO federation_txn_out (destination, txn_id, last_id) VALUES (?1, ?2, ?3)",
                params![destination, txn_id, last_id],
            )?;
            Ok(Some(OutgoingTxn { txn_id, items, last_id }))
        })
        .await
    }

    async fn federation_txn_done(&self, destination: String, last_id: i64) -> Result<()> {
        self.write(move |c| {
            c.exec("DELETE FROM federation_queue WHERE destination = ?1 AND id <= ?2", params![destination, last_id])?;
            c.exec("DELETE FROM federation_txn_out WHERE destination = ?1", [&destination])?;
            Ok(())
        })
        .await
    }

    async fn federation_txn_seen(&self, origin: String, txn_id: String) -> Result<bool> {
        self.read(move |c| {
            Ok(c.one(
                "SELECT EXISTS (SELECT 1 FROM federation_txn_in WHERE origin = ?1 AND txn_id = ?2)",
                params![origin, txn_id],
                |r| r.get(0),
            )?)
        })
        .await
    }

    async fn mark_federation_txn(&self, origin: String, txn_id: String) -> Result<()> {
        self.write(move |c| {
            c.exec(
                "INSERT OR IGNORE INTO federation_txn_in (origin, txn_id, received_ts) VALUES (?1, ?2, ?3)",
                params![origin, txn_id, now_ms()],
            )?;
            Ok(())
        })
        .await
    }
}
