//! Server-side key backups (client-server API, "Server-side key
//! backups"): versions with opaque auth data, and encrypted session keys
//! of which the better one is kept.

use ruma::UserId;
use serde_json::Value;

use super::{E2ee, E2eeError, Result};
use crate::storage::{
    StorageError,
    e2ee::{BackupError, BackupKeyRow},
};

/// A backup version as served.
#[derive(Debug, Clone)]
pub struct BackupSummary {
    pub version: String,
    /// `{"algorithm", "auth_data"}`.
    pub algorithm: Value,
    pub etag: String,
    pub count: u64,
}

/// One session key as served: `(room_id, session_id, key backup data)`.
pub type BackupKey = (String, String, Value);

fn parse_version(version: &str) -> Result<i64> {
    version.parse().map_err(|_| E2eeError::NotFound("unknown backup version".into()))
}

fn wrong_version(e: BackupError) -> E2eeError {
    match e {
        BackupError::WrongVersion(current) => E2eeError::WrongBackupVersion(current.map(|v| v.to_string())),
    }
}

impl E2ee {
    pub async fn create_backup(&self, user: &UserId, algorithm: Value) -> Result<String> {
        check_algorithm(&algorithm)?;
        Ok(self.db.create_backup_version(user.to_string(), algorithm.to_string()).await?.to_string())
    }

    /// A version, or the current one when `version` is `None`.
    pub async fn backup_info(&self, user: &UserId, version: Option<&str>) -> Result<BackupSummary> {
        let version = version.map(parse_version).transpose()?;
        let info = self
            .db
            .backup_version(user.to_string(), version)
            .await?
            .ok_or_else(|| E2eeError::NotFound("no such backup version".into()))?;
        let algorithm = serde_json::from_str(&info.algorithm).map_err(|e| StorageError::Corrupt(e.to_string()))?;
        Ok(BackupSummary {
            version: info.version.to_string(),
            algorithm,
            etag: info.etag.to_string(),
            count: info.count as u64,
        })
    }

    pub async fn update_backup(&self, user: &UserId, version: &str, algorithm: Value) -> Result<()> {
        check_algorithm(&algorithm)?;
        let current = self.backup_info(user, Some(version)).await?;
        if current.algorithm.get("algorithm") != algorithm.get("algorithm") {
            return Err(E2eeError::BadJson("the algorithm of a backup version cannot change".into()));
        }
        self.db.update_backup_version(user.to_string(), parse_version(version)?, algorithm.to_string()).await?;
        Ok(())
    }

    pub async fn delete_backup(&self, user: &UserId, version: &str) -> Result<()> {
        if !self.db.delete_backup_version(user.to_string(), parse_version(version)?).await? {
            return Err(E2eeError::NotFound("no such backup version".into()));
        }
        Ok(())
    }

    /// Stores session keys; returns `(etag, count)`.
    pub async fn put_backup_keys(&self, user: &UserId, version: &str, keys: Vec<BackupKey>) -> Result<(String, u64)> {
        let mut rows = Vec::with_capacity(keys.len());
        for (room_id, session_id, data) in keys {
            let parsed: ruma::api::client::backup::KeyBackupData = serde_json::from_value(data.clone())
                .map_err(|e| E2eeError::BadJson(format!("session {session_id}: {e}")))?;
            rows.push(BackupKeyRow {
                room_id,
                session_id,
                json: data.to_string(),
                first_message_index: u64::from(parsed.first_message_index) as i64,
                forwarded_count: u64::from(parsed.forwarded_count) as i64,
                is_verified: parsed.is_verified,
            });
        }
        let version = parse_version(version).map_err(|_| E2eeError::WrongBackupVersion(None))?;
        let (etag, count) = self.db.put_backup_keys(user.to_string(), version, rows).await?.map_err(wrong_version)?;
        Ok((etag.to_string(), count as u64))
    }

    pub async fn get_backup_keys(
        &self,
        user: &UserId,
        version: &str,
        room_id: Option<&str>,
        session_id: Option<&str>,
    ) -> Result<Vec<BackupKey>> {
        let v = parse_version(version)?;
        if self.db.backup_version(user.to_string(), Some(v)).await?.is_none() {
            return Err(E2eeError::NotFound("no such backup version".into()));
        }
        let rows =
            self.db.backup_keys(user.to_string(), v, room_id.map(str::to_owned), session_id.map(str::to_owned)).await?;
        rows.into_iter()
            .map(|r| {
                let data = serde_json::from_str(&r.json).map_err(|e| StorageError::Corrupt(e.to_string()))?;
                Ok((r.room_id, r.session_id, data))
            })
            .collect()
    }

    pub async fn delete_backup_keys(
        &self,
        user: &UserId,
        version: &str,
        room_id: Option<&str>,
        session_id: Option<&str>,
    ) -> Result<(String, u64)> {
        let v = parse_version(version).map_err(|_| E2eeError::WrongBackupVersion(None))?;
        let (etag, count) = self
            .db
            .delete_backup_keys(user.to_string(), v, room_id.map(str::to_owned), session_id.map(str::to_owned))
            .await?
            .map_err(wrong_version)?;
        Ok((etag.to_string(), count as u64))
    }
}

fn check_algorithm(algorithm: &Value) -> Result<()> {
    // `auth_data` is the clients' to read: any JSON is kept, as Synapse
    // keeps it (Sytest sends a string).
    let ok = algorithm.get("algorithm").and_then(Value::as_str).is_some() && algorithm.get("auth_data").is_some();
    if !ok {
        return Err(E2eeError::BadJson("a backup needs `algorithm` and `auth_data`".into()));
    }
    Ok(())
}
