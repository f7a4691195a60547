//! End-to-end encryption keys and queues in SQLite: device keys, one-time
//! and fallback keys, cross-signing keys, device list changes and to-device
//! messages. Writes that other users must learn about take a `misc` stream
//! position.

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, params};

use super::{CachedSql, SqliteStore, streams::next_misc_position};
use crate::storage::{
    E2eeStore, Result, StorageError,
    e2ee::{ClaimedKey, DeviceKeysOutcome, DeviceUpdate, OutgoingToDevice, SameIdentity, ToDeviceRow},
};

pub(super) fn mark_device_list_change(c: &Connection, user_id: &str) -> Result<i64> {
    let pos = next_misc_position(c)?;
    c.exec(
        "INSERT INTO device_list_changes (user_id, stream_id) VALUES (?1, ?2)
         ON CONFLICT (user_id) DO UPDATE SET stream_id = excluded.stream_id",
        params![user_id, pos],
    )?;
    Ok(pos)
}

/// Records a change of some of a local user's devices (new, renamed,
/// deleted, new keys): each device takes its own stream id, chained to the
/// user's update before it (server-server API, "Device Management":
/// `stream_id` and `prev_id`), and the whole write is one device list change
/// (at the last stream id), whose position is returned.
pub(super) fn record_device_updates(c: &Connection, user_id: &str, device_ids: &[&str]) -> Result<i64> {
    let mut prev: Option<i64> =
        c.one("SELECT MAX(stream_id) FROM device_list_updates WHERE user_id = ?1", [user_id], |r| r.get(0))?;
    let mut updates = Vec::with_capacity(device_ids.len());
    for device_id in device_ids {
        let stream_id = next_misc_position(c)?;
        updates.push((*device_id, stream_id, prev));
        prev = Some(stream_id);
    }
    // No device (a deactivation of an account without devices): only the
    // cross-signing keys changed.
    let Some(&(_, change, _)) = updates.last() else {
        return mark_device_list_change(c, user_id);
    };
    for (device_id, stream_id, prev_id) in updates {
        c.exec(
            "INSERT INTO device_list_updates (user_id, device_id, stream_id, prev_id, change_position)
             VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (user_id, device_id) DO UPDATE SET stream_id = excluded.stream_id,
                 prev_id = excluded.prev_id, change_position = excluded.change_position",
            params![user_id, device_id, stream_id, prev_id, change],
        )?;
    }
    c.exec(
        "INSERT INTO device_list_changes (user_id, stream_id) VALUES (?1, ?2)
         ON CONFLICT (user_id) DO UPDATE SET stream_id = excluded.stream_id",
        params![user_id, change],
    )?;
    Ok(change)
}

/// Removes everything end-to-end about a device (called when it is
/// deleted; the caller records the device update).
pub(super) fn delete_device_keys(c: &Connection, user_id: &str, device_id: &str) -> Result<()> {
    for sql in [
        "DELETE FROM device_keys WHERE user_id = ?1 AND device_id = ?2",
        "DELETE FROM one_time_keys WHERE user_id = ?1 AND device_id = ?2",
        "DELETE FROM fallback_keys WHERE user_id = ?1 AND device_id = ?2",
        "DELETE FROM to_device_messages WHERE user_id = ?1 AND device_id = ?2",
    ] {
        c.exec(sql, params![user_id, device_id])?;
    }
    Ok(())
}

#[async_trait]
impl E2eeStore for SqliteStore {
    async fn upload_device_keys(
        &self,
        user_id: String,
        device_id: String,
        json: String,
        same_identity: SameIdentity,
    ) -> Result<DeviceKeysOutcome> {
        self.write(move |c| {
            let existing: Option<String> = c
                .one(
                    "SELECT json FROM device_keys WHERE user_id = ?1 AND device_id = ?2",
                    params![user_id, device_id],
                    |r| r.get(0),
                )
                .optional()?;
            if let Some(old) = &existing {
                if *old == json {
                    return Ok(DeviceKeysOutcome::Unchanged);
                }
                if !same_identity(old) {
                    return Ok(DeviceKeysOutcome::Conflict);
                }
            }
            c.exec(
                "INSERT INTO device_keys (user_id, device_id, json) VALUES (?1, ?2, ?3)
                 ON CONFLICT (user_id, device_id) DO UPDATE SET json = excluded.json",
                params![user_id, device_id, json],
            )?;
            Ok(DeviceKeysOutcome::Changed(record_device_updates(c, &user_id, &[&device_id])?))
        })
        .await
    }

    async fn replace_device_keys(&self, user_id: String, device_id: String, json: String) -> Result<i64> {
        self.write(move |c| {
            c.exec(
                "UPDATE device_keys SET json = ?3 WHERE user_id = ?1 AND device_id = ?2",
                params![user_id, device_id, json],
            )?;
            record_device_updates(c, &user_id, &[&device_id])
        })
        .await
    }

    async fn add_one_time_keys(
        &self,
        user_id: String,
        device_id: String,
        keys: Vec<(String, String, String)>,
    ) -> Result<Option<String>> {
        self.write(move |c| {
            for (algorithm, key_id, json) in &keys {
                let existing: Option<String> = c
                    .one(
                        "SELECT json FROM one_time_keys WHERE user_id = ?1 AND device_id = ?2 AND key_id = ?3",
                        params![user_id, device_id, key_id],
                        |r| r.get(0),
                    )
                    .optional()?;
                match existing {
                    Some(old) if old == *json => continue,
                    Some(_) => return Err(StorageError::Conflict(key_id.clone())),
                    None => {}
                }
                c.exec(
                    "INSERT INTO one_time_keys (user_id, device_id, algorithm, key_id, json) VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![user_id, device_id, algorithm, key_id, json],
                )?;
            }
            Ok(None)
        })
        .await
        .or_else(|e| match e {
            StorageError::Conflict(id) => Ok(Some(id)),
            e => Err(e),
        })
    }

    async fn set_fallback_keys(
        &self,
        user_id: String,
        device_id: String,
        keys: Vec<(String, String, String)>,
    ) -> Result<()> {
        self.write(move |c| {
            for (algorithm, key_id, json) in &keys {
                c.exec(
                    "INSERT INTO fallback_keys (user_id, device_id, algorithm, key_id, json, used) VALUES (?1, ?2, ?3, ?4, ?5, 0)
                     ON CONFLICT (user_id, device_id, algorithm) DO UPDATE
                     SET key_id = excluded.key_id, json = excluded.json, used = 0",
                    params![user_id, device_id, algorithm, key_id, json],
                )?;
            }
            Ok(())
        })
        .await
    }

    async fn one_time_key_counts(&self, user_id: String, device_id: String) -> Result<Vec<(String, i64)>> {
        self.read(move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT algorithm, COUNT(*) FROM one_time_keys WHERE user_id = ?1 AND device_id = ?2 GROUP BY algorithm",
            )?;
            let rows = stmt.query_map(params![user_id, device_id], |r| Ok((r.get(0)?, r.get(1)?)))?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .await
    }

    async fn unused_fallback_key_types(&self, user_id: String, device_id: String) -> Result<Vec<String>> {
        self.read(move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT algorithm FROM fallback_keys WHERE user_id = ?1 AND device_id = ?2 AND used = 0 ORDER BY algorithm",
            )?;
            let rows = stmt.query_map(params![user_id, device_id], |r| r.get(0))?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .await
    }

    // Read and delete in the single writer, so no key is handed out twice.
    async fn claim_key(&self, user_id: String, device_id: String, algorithm: String) -> Result<Option<ClaimedKey>> {
        self.write(move |c| {
            let otk: Option<(String, String)> = c
                .one(
                    "SELECT key_id, json FROM one_time_keys WHERE user_id = ?1 AND device_id = ?2 AND algorithm = ?3
                     ORDER BY key_id LIMIT 1",
                    params![user_id, device_id, algorithm],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()?;
            if let Some((key_id, json)) = otk {
                c.exec(
                    "DELETE FROM one_time_keys WHERE user_id = ?1 AND device_id = ?2 AND key_id = ?3",
                    params![user_id, device_id, key_id],
                )?;
                return Ok(Some(ClaimedKey { key_id, json }));
            }
            let fallback: Option<(String, String)> = c
                .one(
                    "SELECT key_id, json FROM fallback_keys WHERE user_id = ?1 AND device_id = ?2 AND algorithm = ?3",
                    params![user_id, device_id, algorithm],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()?;
            if let Some((key_id, json)) = fallback {
                c.exec(
                    "UPDATE fallback_keys SET used = 1 WHERE user_id = ?1 AND device_id = ?2 AND algorithm = ?3",
                    params![user_id, device_id, algorithm],
                )?;
                return Ok(Some(ClaimedKey { key_id, json }));
            }
            Ok(None)
        })
        .await
    }

    async fn device_keys_of(&self, user_id: String) -> Result<Vec<(String, String)>> {
        self.read(move |c| {
            let mut stmt =
                c.prepare_cached("SELECT device_id, json FROM device_keys WHERE user_id = ?1 ORDER BY device_id")?;
            let rows = stmt.query_map([&user_id], |r| Ok((r.get(0)?, r.get(1)?)))?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .await
    }

    async fn cross_signing_keys_of(&self, user_id: String) -> Result<Vec<(String, String)>> {
        self.read(move |c| {
            let mut stmt = c.prepare_cached("SELECT key_type, json FROM cross_signing_keys WHERE user_id = ?1")?;
            let rows = stmt.query_map([&user_id], |r| Ok((r.get(0)?, r.get(1)?)))?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .await
    }

    async fn set_cross_signing_keys(&self, user_id: String, keys: Vec<(String, String)>) -> Result<i64> {
        self.write(move |c| {
            for (kind, json) in &keys {
                c.exec(
                    "INSERT INTO cross_signing_keys (user_id, key_type, json) VALUES (?1, ?2, ?3)
                     ON CONFLICT (user_id, key_type) DO UPDATE SET json = excluded.json",
                    params![user_id, kind, json],
                )?;
            }
            mark_device_list_change(c, &user_id)
        })
        .await
    }

    async fn mark_remote_device_list_change(&self, user_id: String) -> Result<i64> {
        self.write(move |c| mark_device_list_change(c, &user_id)).await
    }

    async fn device_list_position(&self, user_id: String) -> Result<Option<i64>> {
        self.read(move |c| {
            Ok(c.one("SELECT stream_id FROM device_list_changes WHERE user_id = ?1", [&user_id], |r| r.get(0))
                .optional()?)
        })
        .await
    }

    async fn remote_device_list(&self, user_id: String) -> Result<Option<(i64, String)>> {
        self.read(move |c| {
            Ok(c.one("SELECT stream_id, devices FROM remote_device_lists WHERE user_id = ?1", [&user_id], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .optional()?)
        })
        .await
    }

    async fn set_remote_device_list(&self, user_id: String, stream_id: i64, devices: String) -> Result<i64> {
        self.write(move |c| {
            c.exec(
                "INSERT INTO remote_device_lists (user_id, stream_id, devices) VALUES (?1, ?2, ?3)
                 ON CONFLICT (user_id) DO UPDATE SET stream_id = excluded.stream_id, devices = excluded.devices",
                params![user_id, stream_id, devices],
            )?;
            mark_device_list_change(c, &user_id)
        })
        .await
    }

    async fn device_updates_of_change(&self, user_id: String, position: i64) -> Result<Vec<DeviceUpdate>> {
        self.read(move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT device_id, stream_id, prev_id FROM device_list_updates
                 WHERE user_id = ?1 AND change_position = ?2 ORDER BY stream_id",
            )?;
            let rows = stmt.query_map(params![user_id, position], |r| {
                Ok(DeviceUpdate { device_id: r.get(0)?, stream_id: r.get(1)?, prev_id: r.get(2)? })
            })?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .await
    }

    async fn device_stream_id(&self, user_id: String) -> Result<i64> {
        self.read(move |c| {
            Ok(c.one(
                "SELECT COALESCE(MAX(stream_id), 0) FROM device_list_updates WHERE user_id = ?1",
                [&user_id],
                |r| r.get(0),
            )?)
        })
        .await
    }

    async fn forget_remote_device_list(&self, user_id: String) -> Result<()> {
        self.write(move |c| {
            c.exec("DELETE FROM remote_device_lists WHERE user_id = ?1", [&user_id])?;
            Ok(())
        })
        .await
    }

    async fn remote_cross_signing_keys(&self, user_id: String) -> Result<(Option<String>, Option<String>)> {
        self.read(move |c| {
            Ok(c.one(
                "SELECT master_key, self_signing_key FROM remote_device_lists WHERE user_id = ?1",
                [&user_id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?
            .unwrap_or((None, None)))
        })
        .await
    }

    async fn set_remote_cross_signing_keys(
        &self,
        user_id: String,
        master_key: Option<String>,
        self_signing_key: Option<String>,
    ) -> Result<()> {
        self.write(move |c| {
            c.exec(
                "UPDATE remote_device_lists SET master_key = ?2, self_signing_key = ?3 WHERE user_id = ?1",
                params![user_id, master_key, self_signing_key],
            )?;
            Ok(())
        })
        .await
    }

    async fn device_list_changes(&self, viewer: String, since: i64, until: i64) -> Result<Vec<String>> {
        self.read(move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT d.user_id FROM device_list_changes d
                 WHERE d.stream_id > ?2 AND d.stream_id <= ?3 AND (d.user_id = ?1 OR d.user_id IN (
                     SELECT other.user_id FROM room_memberships mine
                     JOIN room_memberships other ON other.room_id = mine.room_id
                     WHERE mine.user_id = ?1 AND mine.membership = 'join' AND other.membership = 'join'))",
            )?;
            let rows = stmt.query_map(params![viewer, since, until], |r| r.get(0))?;
            Ok(rows.collect::<rusqlite::Result<Vec<String>>>()?)
        })
        .await
    }

    async fn queue_to_device(
        &self,
        sender: String,
        sender_device: String,
        txn_id: String,
        messages: Vec<OutgoingToDevice>,
    ) -> Result<Option<(i64, Vec<String>)>> {
        self.write(move |c| {
            let fresh = c.exec(
                "INSERT OR IGNORE INTO to_device_txns (sender, sender_device, txn_id) VALUES (?1, ?2, ?3)",
                params![sender, sender_device, txn_id],
            )?;
            if fresh == 0 {
                return Ok(None);
            }
            let pos = next_misc_position(c)?;
            let mut recipients = Vec::new();
            for (user, device, kind, content) in &messages {
                let devices: Vec<String> = if device == "*" {
                    let mut stmt = c.prepare_cached("SELECT device_id FROM devices WHERE user_id = ?1")?;
                    stmt.query_map([user], |r| r.get(0))?.collect::<rusqlite::Result<Vec<_>>>()?
                } else {
                    vec![device.clone()]
                };
                for d in devices {
                    c.exec(
                        "INSERT INTO to_device_messages (user_id, device_id, sender, type, content, stream_id)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                        params![user, d, sender, kind, content, pos],
                    )?;
                }
                recipients.push(user.clone());
            }
            Ok(Some((pos, recipients)))
        })
        .await
    }

    async fn ack_to_device(&self, user_id: String, device_id: String, through: i64) -> Result<()> {
        self.write(move |c| {
            c.exec(
                "DELETE FROM to_device_messages WHERE user_id = ?1 AND device_id = ?2 AND stream_id <= ?3",
                params![user_id, device_id, through],
            )?;
            Ok(())
        })
        .await
    }

    async fn to_device_at(&self, position: i64, users: Vec<String>) -> Result<Vec<(String, String, ToDeviceRow)>> {
        self.read(move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT device_id, sender, type, content FROM to_device_messages
                 WHERE user_id = ?1 AND stream_id = ?2 ORDER BY id",
            )?;
            let mut out = Vec::new();
            for user in users {
                let rows = stmt.query_map(params![user, position], |r| {
                    Ok((r.get::<_, String>(0)?, ToDeviceRow { sender: r.get(1)?, kind: r.get(2)?, content: r.get(3)? }))
                })?;
                for row in rows {
                    let (device, message) = row?;
                    out.push((user.clone(), device, message));
                }
            }
            Ok(out)
        })
        .await
    }

    async fn delete_to_device_at(&self, position: i64, users: Vec<String>) -> Result<()> {
        self.write(move |c| {
            for user in &users {
                c.exec(
                    "DELETE FROM to_device_messages WHERE user_id = ?1 AND stream_id = ?2",
                    params![user, position],
                )?;
            }
            Ok(())
        })
        .await
    }
}
