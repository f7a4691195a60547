//! The appservice queues in SQLite: one table, a transaction being the
//! items that carry its `txn_id` (the id of its first item).

use async_trait::async_trait;
use rusqlite::{OptionalExtension, params};

use super::{CachedSql, SqliteStore};
use crate::storage::{
    AppserviceStore, Result, StorageError,
    appservice::{AppserviceItem, AppserviceItemKind, AppserviceTransaction},
};

fn items_of(c: &rusqlite::Connection, appservice_id: &str, txn_id: i64) -> Result<AppserviceTransaction> {
    let mut stmt = c.prepare_cached(
        "SELECT kind, json FROM appservice_queue WHERE appservice_id = ?1 AND txn_id = ?2 ORDER BY id",
    )?;
    let rows = stmt
        .query_map(params![appservice_id, txn_id], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let items = rows
        .into_iter()
        .map(|(kind, json)| {
            let kind = AppserviceItemKind::parse(&kind)
                .ok_or_else(|| StorageError::Corrupt(format!("unknown appservice queue item kind {kind}")))?;
            Ok((kind, json))
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(AppserviceTransaction { txn_id, items })
}

#[async_trait]
impl AppserviceStore for SqliteStore {
    async fn queue_appservice_items(&self, items: Vec<AppserviceItem>) -> Result<()> {
        if items.is_empty() {
            return Ok(());
        }
        self.write(move |c| {
            let mut insert =
                c.prepare_cached("INSERT INTO appservice_queue (appservice_id, kind, json) VALUES (?1, ?2, ?3)")?;
            for item in &items {
                insert.execute(params![item.appservice_id, item.kind.as_str(), item.json])?;
            }
            Ok(())
        })
        .await
    }

    async fn appservice_transaction(
        &self,
        appservice_id: String,
        limit: usize,
    ) -> Result<Option<AppserviceTransaction>> {
        self.write(move |c| {
            let in_flight: Option<i64> = c
                .one(
                    "SELECT txn_id FROM appservice_queue WHERE appservice_id = ?1 AND txn_id IS NOT NULL
                     ORDER BY id LIMIT 1",
                    [&appservice_id],
                    |r| r.get(0),
                )
                .optional()?;
            if let Some(txn_id) = in_flight {
                return Ok(Some(items_of(c, &appservice_id, txn_id)?));
            }
            let first: Option<i64> = c
                .one(
                    "SELECT id FROM appservice_queue WHERE appservice_id = ?1 ORDER BY id LIMIT 1",
                    [&appservice_id],
                    |r| r.get(0),
                )
                .optional()?;
            let Some(txn_id) = first else { return Ok(None) };
            c.exec(
                "UPDATE appservice_queue SET txn_id = ?2 WHERE id IN
                     (SELECT id FROM appservice_queue WHERE appservice_id = ?1 ORDER BY id LIMIT ?3)",
                params![appservice_id, txn_id, limit as i64],
            )?;
            Ok(Some(items_of(c, &appservice_id, txn_id)?))
        })
        .await
    }

    async fn complete_appservice_transaction(&self, appservice_id: String, txn_id: i64) -> Result<()> {
        self.write(move |c| {
            c.exec(
                "DELETE FROM appservice_queue WHERE appservice_id = ?1 AND txn_id = ?2",
                params![appservice_id, txn_id],
            )?;
            Ok(())
        })
        .await
    }

    async fn queued_appservices(&self) -> Result<Vec<String>> {
        self.read(move |c| {
            let mut stmt =
                c.prepare_cached("SELECT DISTINCT appservice_id FROM appservice_queue ORDER BY appservice_id")?;
            let rows = stmt.query_map([], |r| r.get(0))?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .await
    }
}
