//! Accounts, devices, tokens, registration tokens and profile fields in
//! SQLite, with an in-memory cache of access-token lookups.

use std::collections::BTreeMap;

use async_trait::async_trait;
use ruma::{OwnedDeviceId, OwnedUserId};
use rusqlite::{Connection, OptionalExtension, params};

use super::{CachedSql, SqliteStore};
use crate::storage::{
    AccountStore, Result, StorageError, now_ms,
    users::{CreateUserOutcome, DeviceRecord, NewTokens, NewUser, TokenOwner, UserRecord},
};

/// Recently used access tokens, so that authenticating a request does not
/// read SQLite. Every write that can remove a token or deactivate an account
/// moves the epoch on, which retires all entries from before it: an entry is
/// used only while the epoch it was read under is still current.
pub(super) struct TokenCache {
    owners: quick_cache::sync::Cache<Vec<u8>, (u64, TokenOwner)>,
    epoch: std::sync::atomic::AtomicU64,
}

impl Default for TokenCache {
    fn default() -> Self {
        Self { owners: quick_cache::sync::Cache::new(TOKEN_CACHE_ENTRIES), epoch: Default::default() }
    }
}

const TOKEN_CACHE_ENTRIES: usize = 10_000;

impl TokenCache {
    fn epoch(&self) -> u64 {
        self.epoch.load(std::sync::atomic::Ordering::Acquire)
    }

    fn get(&self, hash: &[u8]) -> Option<TokenOwner> {
        let (epoch, owner) = self.owners.get(hash)?;
        (epoch == self.epoch()).then_some(owner)
    }

    /// Called after a write that removed tokens has committed.
    fn retire_all(&self) {
        self.epoch.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        self.owners.clear();
    }
}

fn parse_user_id(s: String) -> rusqlite::Result<OwnedUserId> {
    s.try_into().map_err(|e: ruma::IdParseError| {
        rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, Box::new(e))
    })
}

fn parse_device_id(s: String) -> OwnedDeviceId {
    s.into()
}

fn registration_token_usable(c: &Connection, hash: &[u8], now: i64) -> Result<bool> {
    let row: Option<(Option<i64>, i64, Option<i64>)> = c
        .one("SELECT uses_allowed, completed, expiry_ts FROM registration_tokens WHERE token_hash = ?1", [hash], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })
        .optional()?;
    Ok(match row {
        None => false,
        Some((uses, completed, expiry)) => uses.is_none_or(|u| completed < u) && expiry.is_none_or(|e| e > now),
    })
}

fn insert_tokens(c: &Connection, user: &str, device: &str, tokens: &NewTokens, now: i64) -> Result<()> {
    c.exec(
        "INSERT INTO access_tokens (token_hash, user_id, device_id, expires_ts, created_ts)
         VALUES (?1, ?2, ?3, ?4, ?5)",
        params![tokens.access_hash, user, device, tokens.access_expires_ts, now],
    )?;
    if let Some(refresh) = &tokens.refresh_hash {
        c.exec(
            "INSERT INTO refresh_tokens (token_hash, user_id, device_id, created_ts)
             VALUES (?1, ?2, ?3, ?4)",
            params![refresh, user, device, now],
        )?;
    }
    Ok(())
}

impl SqliteStore {
    /// `write` for a change that may remove access tokens: once it is
    /// done, every cached token lookup from before it is retired.
    async fn write_removing_tokens<R, F>(&self, f: F) -> Result<R>
    where
        R: Send + 'static,
        F: FnOnce(&Connection) -> Result<R> + Send + 'static,
    {
        let outcome = self.write(f).await;
        self.inner.tokens.retire_all();
        outcome
    }
}

#[async_trait]
impl AccountStore for SqliteStore {
    async fn create_user(&self, new: NewUser) -> Result<CreateUserOutcome> {
        self.write(move |c| {
            let now = now_ms();
            let exists: bool =
                c.one("SELECT EXISTS (SELECT 1 FROM users WHERE user_id = ?1)", [new.user_id.as_str()], |r| r.get(0))?;
            if exists {
                return Ok(CreateUserOutcome::UserInUse);
            }
            if let Some(hash) = &new.registration_token {
                if !registration_token_usable(c, hash, now)? {
                    return Ok(CreateUserOutcome::TokenInvalid);
                }
                c.exec("UPDATE registration_tokens SET completed = completed + 1 WHERE token_hash = ?1", [hash])?;
            }
            c.exec(
                "INSERT INTO users (user_id, password_hash, is_admin, is_guest, created_ts) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![new.user_id.as_str(), new.password_hash, new.is_admin, new.is_guest, now],
            )?;
            if let Some(name) = &new.displayname {
                c.exec(
                    "INSERT INTO profile_fields (user_id, field, value) VALUES (?1, 'displayname', ?2)",
                    params![new.user_id.as_str(), serde_json::Value::from(name.as_str()).to_string()],
                )?;
            }
            Ok(CreateUserOutcome::Created)
        })
        .await
    }

    async fn get_user(&self, user_id: OwnedUserId) -> Result<Option<UserRecord>> {
        self.read(move |c| {
            Ok(c.one(
                "SELECT user_id, password_hash, is_admin, deactivated, is_guest FROM users WHERE user_id = ?1",
                [user_id.as_str()],
                |r| {
                    Ok(UserRecord {
                        user_id: parse_user_id(r.get(0)?)?,
                        password_hash: r.get(1)?,
                        is_admin: r.get(2)?,
                        deactivated: r.get(3)?,
                        is_guest: r.get(4)?,
                    })
                },
            )
            .optional()?)
        })
        .await
    }

    async fn set_password_hash(&self, user_id: OwnedUserId, hash: String) -> Result<()> {
        self.write(move |c| {
            c.exec("UPDATE users SET password_hash = ?2 WHERE user_id = ?1", params![user_id.as_str(), hash])?;
            Ok(())
        })
        .await
    }

    async fn last_guest_number(&self) -> Result<u64> {
        self.read(move |c| {
            // The localpart is what lies between `@` and the first `:`.
            let last: Option<i64> = c.one(
                "SELECT MAX(CAST(substr(user_id, 2, instr(user_id, ':') - 2) AS INTEGER))
                 FROM users WHERE is_guest = 1",
                [],
                |r| r.get(0),
            )?;
            Ok(last.map_or(0, |n| n.max(0) as u64))
        })
        .await
    }

    async fn upgrade_guest(&self, user_id: OwnedUserId, password_hash: Option<String>) -> Result<bool> {
        self.write_removing_tokens(move |c| {
            let changed = c.exec(
                "UPDATE users SET is_guest = 0, password_hash = ?2 WHERE user_id = ?1 AND is_guest = 1",
                params![user_id.as_str(), password_hash],
            )?;
            Ok(changed > 0)
        })
        .await
    }

    async fn deactivate_user(&self, user_id: OwnedUserId) -> Result<()> {
        self.write_removing_tokens(move |c| {
            c.exec("UPDATE users SET deactivated = 1, password_hash = NULL WHERE user_id = ?1", [user_id.as_str()])?;
            let devices: Vec<String> = {
                let mut stmt = c.prepare_cached("SELECT device_id FROM devices WHERE user_id = ?1")?;
                stmt.query_map([user_id.as_str()], |r| r.get(0))?.collect::<rusqlite::Result<Vec<_>>>()?
            };
            for device in &devices {
                super::e2ee::delete_device_keys(c, user_id.as_str(), device)?;
            }
            let deleted: Vec<&str> = devices.iter().map(String::as_str).collect();
            super::e2ee::record_device_updates(c, user_id.as_str(), &deleted)?;
            c.exec("DELETE FROM cross_signing_keys WHERE user_id = ?1", [user_id.as_str()])?;
            c.exec("DELETE FROM devices WHERE user_id = ?1", [user_id.as_str()])?;
            c.exec("DELETE FROM openid_tokens WHERE user_id = ?1", [user_id.as_str()])?;
            Ok(())
        })
        .await
    }

    async fn login_device(
        &self,
        user_id: OwnedUserId,
        device_id: OwnedDeviceId,
        display_name: Option<String>,
        ip: Option<String>,
        tokens: NewTokens,
    ) -> Result<()> {
        self.write_removing_tokens(move |c| {
            let now = now_ms();
            let (user, device) = (user_id.as_str(), device_id.as_str());
            c.exec(
                "INSERT INTO devices (user_id, device_id, display_name, last_seen_ts, last_seen_ip, created_ts)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?4)
                 ON CONFLICT (user_id, device_id) DO UPDATE
                 SET last_seen_ts = excluded.last_seen_ts, last_seen_ip = excluded.last_seen_ip",
                params![user, device, display_name, now, ip],
            )?;
            // Spec: logging in with a known device id invalidates the
            // device's previous access tokens.
            c.exec("DELETE FROM access_tokens WHERE user_id = ?1 AND device_id = ?2", params![user, device])?;
            c.exec("DELETE FROM refresh_tokens WHERE user_id = ?1 AND device_id = ?2", params![user, device])?;
            // Other users learn of the new device (`device_lists.changed`).
            super::e2ee::record_device_updates(c, user, &[device])?;
            insert_tokens(c, user, device, &tokens, now)
        })
        .await
    }

    // Answered from the cache while the epoch it was read under is current.
    async fn find_access_token(&self, hash: Vec<u8>) -> Result<Option<TokenOwner>> {
        let cache = &self.inner.tokens;
        if let Some(owner) = cache.get(&hash) {
            return Ok(Some(owner));
        }
        let epoch = cache.epoch();
        let key = hash.clone();
        let owner = self
            .read(move |c| {
                Ok(c.one(
                    "SELECT t.user_id, t.device_id, t.expires_ts, u.is_admin, u.is_guest
                 FROM access_tokens t JOIN users u ON u.user_id = t.user_id
                 WHERE t.token_hash = ?1 AND u.deactivated = 0",
                    [hash],
                    |r| {
                        Ok(TokenOwner {
                            user_id: parse_user_id(r.get(0)?)?,
                            device_id: parse_device_id(r.get(1)?),
                            expires_ts: r.get(2)?,
                            is_admin: r.get(3)?,
                            is_guest: r.get(4)?,
                        })
                    },
                )
                .optional()?)
            })
            .await?;
        if let Some(owner) = &owner {
            cache.owners.insert(key, (epoch, owner.clone()));
        }
        Ok(owner)
    }

    async fn rotate_refresh_token(
        &self,
        refresh_hash: Vec<u8>,
        tokens: NewTokens,
    ) -> Result<Option<(OwnedUserId, OwnedDeviceId)>> {
        self.write_removing_tokens(move |c| {
            let owner: Option<(String, String)> = c
                .one("SELECT user_id, device_id FROM refresh_tokens WHERE token_hash = ?1", [&refresh_hash], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })
                .optional()?;
            let Some((user, device)) = owner else {
                return Ok(None);
            };
            c.exec("DELETE FROM refresh_tokens WHERE token_hash = ?1", [&refresh_hash])?;
            c.exec("DELETE FROM access_tokens WHERE user_id = ?1 AND device_id = ?2", params![user, device])?;
            insert_tokens(c, &user, &device, &tokens, now_ms())?;
            Ok(Some((parse_user_id(user)?, parse_device_id(device))))
        })
        .await
    }

    async fn list_devices(&self, user_id: OwnedUserId) -> Result<Vec<DeviceRecord>> {
        self.read(move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT device_id, display_name, last_seen_ts, last_seen_ip
                 FROM devices WHERE user_id = ?1 ORDER BY created_ts, device_id",
            )?;
            let rows = stmt.query_map([user_id.as_str()], device_from_row)?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .await
    }

    async fn get_device(&self, user_id: OwnedUserId, device_id: OwnedDeviceId) -> Result<Option<DeviceRecord>> {
        self.read(move |c| {
            Ok(c.one(
                "SELECT device_id, display_name, last_seen_ts, last_seen_ip
                 FROM devices WHERE user_id = ?1 AND device_id = ?2",
                params![user_id.as_str(), device_id.as_str()],
                device_from_row,
            )
            .optional()?)
        })
        .await
    }

    async fn rename_device(
        &self,
        user_id: OwnedUserId,
        device_id: OwnedDeviceId,
        display_name: Option<String>,
    ) -> Result<bool> {
        self.write(move |c| {
            let n = c.exec(
                "UPDATE devices SET display_name = ?3 WHERE user_id = ?1 AND device_id = ?2",
                params![user_id.as_str(), device_id.as_str(), display_name],
            )?;
            // The display name is part of what other users' clients show.
            if n > 0 {
                super::e2ee::record_device_updates(c, user_id.as_str(), &[device_id.as_str()])?;
            }
            Ok(n > 0)
        })
        .await
    }

    async fn delete_devices(&self, user_id: OwnedUserId, device_ids: Vec<OwnedDeviceId>) -> Result<usize> {
        self.write_removing_tokens(move |c| {
            let mut deleted = Vec::new();
            for device in &device_ids {
                super::e2ee::delete_device_keys(c, user_id.as_str(), device.as_str())?;
                if c.exec(
                    "DELETE FROM devices WHERE user_id = ?1 AND device_id = ?2",
                    params![user_id.as_str(), device.as_str()],
                )? > 0
                {
                    deleted.push(device.as_str());
                }
            }
            if !deleted.is_empty() {
                super::e2ee::record_device_updates(c, user_id.as_str(), &deleted)?;
            }
            Ok(deleted.len())
        })
        .await
    }

    async fn delete_other_devices(&self, user_id: OwnedUserId, keep: Option<OwnedDeviceId>) -> Result<usize> {
        self.write_removing_tokens(move |c| {
            let doomed: Vec<String> = {
                let mut stmt =
                    c.prepare_cached("SELECT device_id FROM devices WHERE user_id = ?1 AND device_id IS NOT ?2")?;
                stmt.query_map(params![user_id.as_str(), keep.as_ref().map(|d| d.as_str())], |r| r.get(0))?
                    .collect::<rusqlite::Result<Vec<_>>>()?
            };
            for device in &doomed {
                super::e2ee::delete_device_keys(c, user_id.as_str(), device)?;
            }
            let deleted: Vec<&str> = doomed.iter().map(String::as_str).collect();
            if !deleted.is_empty() {
                super::e2ee::record_device_updates(c, user_id.as_str(), &deleted)?;
            }
            Ok(c.exec(
                "DELETE FROM devices WHERE user_id = ?1 AND device_id IS NOT ?2",
                params![user_id.as_str(), keep.as_ref().map(|d| d.as_str())],
            )?)
        })
        .await
    }

    async fn get_profile(&self, user_id: OwnedUserId) -> Result<BTreeMap<String, serde_json::Value>> {
        self.read(move |c| {
            let mut stmt = c.prepare_cached("SELECT field, value FROM profile_fields WHERE user_id = ?1")?;
            let mut out = BTreeMap::new();
            let rows = stmt.query_map([user_id.as_str()], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
            for row in rows {
                let (field, value) = row?;
                let value = serde_json::from_str(&value)
                    .map_err(|e| StorageError::Corrupt(format!("profile field {field}: {e}")))?;
                out.insert(field, value);
            }
            Ok(out)
        })
        .await
    }

    async fn set_profile_field(
        &self,
        user_id: OwnedUserId,
        field: String,
        value: Option<serde_json::Value>,
    ) -> Result<()> {
        self.write(move |c| {
            match value {
                Some(v) => c.exec(
                    "INSERT INTO profile_fields (user_id, field, value) VALUES (?1, ?2, ?3)
                     ON CONFLICT (user_id, field) DO UPDATE SET value = excluded.value",
                    params![user_id.as_str(), field, v.to_string()],
                )?,
                None => c.exec(
                    "DELETE FROM profile_fields WHERE user_id = ?1 AND field = ?2",
                    params![user_id.as_str(), field],
                )?,
            };
            Ok(())
        })
        .await
    }

    async fn insert_registration_token(
        &self,
        hash: Vec<u8>,
        uses_allowed: Option<i64>,
        expiry_ts: Option<i64>,
    ) -> Result<()> {
        self.write(move |c| {
            c.exec(
                "INSERT OR IGNORE INTO registration_tokens (token_hash, uses_allowed, expiry_ts, created_ts)
                 VALUES (?1, ?2, ?3, ?4)",
                params![hash, uses_allowed, expiry_ts, now_ms()],
            )?;
            Ok(())
        })
        .await
    }

    async fn registration_token_valid(&self, hash: Vec<u8>) -> Result<bool> {
        self.read(move |c| registration_token_usable(c, &hash, now_ms())).await
    }

    // Tokens live an hour and are not looked up often, so the expired ones
    // go here rather than on a timer: the table holds about an hour's worth.
    async fn insert_openid_token(&self, hash: Vec<u8>, user_id: OwnedUserId, expires_ts: i64) -> Result<()> {
        self.write(move |c| {
            c.exec("DELETE FROM openid_tokens WHERE expires_ts <= ?1", [now_ms()])?;
            c.exec(
                "INSERT INTO openid_tokens (token_hash, user_id, expires_ts) VALUES (?1, ?2, ?3)",
                params![hash, user_id.as_str(), expires_ts],
            )?;
            Ok(())
        })
        .await
    }

    async fn find_openid_token(&self, hash: Vec<u8>, now_ts: i64) -> Result<Option<OwnedUserId>> {
        self.read(move |c| {
            let user: Option<String> = c
                .one(
                    "SELECT t.user_id FROM openid_tokens t JOIN users u ON u.user_id = t.user_id
                     WHERE t.token_hash = ?1 AND t.expires_ts > ?2 AND u.deactivated = 0",
                    params![hash, now_ts],
                    |r| r.get(0),
                )
                .optional()?;
            Ok(user.map(parse_user_id).transpose()?)
        })
        .await
    }
}

fn device_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<DeviceRecord> {
    Ok(DeviceRecord {
        device_id: parse_device_id(r.get(0)?),
        display_name: r.get(1)?,
        last_seen_ts: r.get(2)?,
        last_seen_ip: r.get(3)?,
    })
}
