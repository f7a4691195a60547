//! Reports in SQLite: one row per report, its target in the columns its
//! `kind` names.

use async_trait::async_trait;
use rusqlite::{OptionalExtension, Row, params};

use super::{CachedSql, SqliteStore};
use crate::storage::{
    ReportStore, Result, StorageError,
    reports::{ReportListing, ReportRow, ReportTarget, StoredReport},
};

/// A report from the columns `id, kind, reporter, room_id, event_id,
/// user_id, reason, ts, resolved_by, resolved_ts` (an error message when
/// its target columns do not fit its kind).
fn stored_report(r: &Row<'_>) -> rusqlite::Result<std::result::Result<StoredReport, String>> {
    let kind: String = r.get(1)?;
    let room_id: Option<String> = r.get(3)?;
    let event_id: Option<String> = r.get(4)?;
    let user_id: Option<String> = r.get(5)?;
    let target = match (kind.as_str(), room_id, event_id, user_id) {
        ("event", Some(room_id), Some(event_id), Some(sender)) => ReportTarget::Event { room_id, event_id, sender },
        ("room", Some(room_id), _, _) => ReportTarget::Room { room_id },
        ("user", _, _, Some(user_id)) => ReportTarget::User { user_id },
        _ => return Ok(Err(format!("report {} has no complete {kind} target", r.get::<_, i64>(0)?))),
    };
    let resolved_by: Option<String> = r.get(8)?;
    let resolved_ts: Option<i64> = r.get(9)?;
    Ok(Ok(StoredReport {
        id: r.get(0)?,
        report: ReportRow { reporter: r.get(2)?, target, reason: r.get(6)?, ts: r.get(7)? },
        resolved: resolved_by.zip(resolved_ts),
    }))
}

#[async_trait]
impl ReportStore for SqliteStore {
    async fn add_report(&self, report: ReportRow) -> Result<i64> {
        self.write(move |c| {
            let (kind, room_id, event_id, user_id) = match report.target {
                ReportTarget::Event { room_id, event_id, sender } => {
                    ("event", Some(room_id), Some(event_id), Some(sender))
                }
                ReportTarget::Room { room_id } => ("room", Some(room_id), None, None),
                ReportTarget::User { user_id } => ("user", None, None, Some(user_id)),
            };
            c.exec(
                "INSERT INTO reports (kind, reporter, room_id, event_id, user_id, reason, ts)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![kind, report.reporter, room_id, event_id, user_id, report.reason, report.ts],
            )?;
            Ok(c.last_insert_rowid())
        })
        .await
    }

    async fn get_report(&self, id: i64) -> Result<Option<StoredReport>> {
        self.read(move |c| {
            let sql = "SELECT id, kind, reporter, room_id, event_id, user_id, reason, ts, resolved_by, resolved_ts
                       FROM reports WHERE id = ?1";
            match c.one(sql, [id], stored_report).optional()? {
                Some(report) => Ok(Some(report.map_err(StorageError::Corrupt)?)),
                None => Ok(None),
            }
        })
        .await
    }

    async fn list_reports(&self, listing: ReportListing) -> Result<Vec<StoredReport>> {
        self.read(move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT id, kind, reporter, room_id, event_id, user_id, reason, ts, resolved_by, resolved_ts
                 FROM reports
                 WHERE (?1 IS NULL OR (resolved_by IS NOT NULL) = ?1) AND (?2 IS NULL OR id < ?2)
                 ORDER BY id DESC LIMIT ?3",
            )?;
            let limit = i64::try_from(listing.limit).unwrap_or(i64::MAX);
            let rows = stmt.query_map(params![listing.resolved, listing.before, limit], stored_report)?;
            let mut out = Vec::new();
            for row in rows {
                out.push(row?.map_err(StorageError::Corrupt)?);
            }
            Ok(out)
        })
        .await
    }

    async fn resolve_report(&self, id: i64, admin: String, ts: i64) -> Result<bool> {
        self.write(move |c| {
            let changed = c.exec(
                "UPDATE reports SET resolved_by = ?2, resolved_ts = ?3 WHERE id = ?1 AND resolved_by IS NULL",
                params![id, admin, ts],
            )?;
            Ok(changed == 1)
        })
        .await
    }
}
