//! End-to-end encryption support (client-server API, "End-to-End
//! Encryption": key management, to-device messaging, device list tracking,
//! cross-signing, server-side key backups). The server never sees
//! plaintext; it stores what clients signed, checks the signatures it can,
//! hands each one-time key out once, and delivers to-device messages until
//! the device acknowledges them.

mod backup;
pub mod signatures;

use std::{collections::BTreeMap, sync::Arc};

use ruma::{OwnedDeviceId, OwnedUserId, UserId};
use serde_json::{Map, Value, json};

pub use self::backup::{BackupKey, BackupSummary};
use self::signatures::{SignatureError, ed25519_key, verify_signature};
use crate::{
    commit::{Commit, CommitPipeline, RemoteToDevice},
    config::Config,
    storage::{
        Storage, StorageError,
        e2ee::{DeviceKeysOutcome, OutgoingToDevice},
    },
    users::{Session, Users, UsersError},
};

#[derive(Debug, thiserror::Error)]
pub enum E2eeError {
    #[error("{0}")]
    InvalidKeys(String),
    #[error("{0}")]
    BadJson(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("the backup version is not the current one")]
    WrongBackupVersion(Option<String>),
    #[error(transparent)]
    Users(#[from] UsersError),
    #[error(transparent)]
    Storage(#[from] StorageError),
}

impl From<SignatureError> for E2eeError {
    fn from(e: SignatureError) -> Self {
        Self::InvalidKeys(e.to_string())
    }
}

pub type Result<T, E = E2eeError> = std::result::Result<T, E>;

#[derive(Clone)]
pub struct E2ee {
    db: Arc<dyn Storage>,
    config: Arc<Config>,
    commits: Arc<CommitPipeline>,
}

/// The answer to `/keys/query`.
#[derive(Debug, Default)]
pub struct KeysQueryResult {
    pub device_keys: BTreeMap<String, BTreeMap<String, Value>>,
    pub master_keys: BTreeMap<String, Value>,
    pub self_signing_keys: BTreeMap<String, Value>,
    pub user_signing_keys: BTreeMap<String, Value>,
    pub failures: BTreeMap<String, Value>,
}

fn parse_object(json: &str) -> Result<Map<String, Value>> {
    match serde_json::from_str(json) {
        Ok(Value::Object(o)) => Ok(o),
        _ => Err(E2eeError::Storage(StorageError::Corrupt("stored key is not an object".into()))),
    }
}

impl E2ee {
    pub fn new(db: Arc<dyn Storage>, config: Arc<Config>, commits: Arc<CommitPipeline>) -> Self {
        Self { db, config, commits }
    }

    /// A remote user's device list changed (told by their server): their
    /// room-mates here see it in `device_lists.changed`.
    pub async fn remote_device_change(&self, user: &UserId) -> Result<()> {
        let position = self.db.mark_remote_device_list_change(user.to_string()).await?;
        self.device_list_committed(user, position).await
    }

    /// What this server knows of a remote user's device list was stored
    /// (with its change, at `position`): their room-mates here see it.
    pub async fn remote_device_list_stored(&self, user: &UserId, position: i64) -> Result<()> {
        self.device_list_committed(user, position).await
    }

    /// The stream id of a local user's last device update, as other
    /// servers know it (server-server API, `GET /user/devices`).
    pub async fn device_stream_id(&self, user: &UserId) -> Result<i64> {
        Ok(self.db.device_stream_id(user.to_string()).await?)
    }

    /// Queues to-device messages from a user of another server (a
    /// `m.direct_to_device` EDU), once per message id.
    pub async fn receive_remote_to_device(
        &self,
        sender: &UserId,
        message_id: &str,
        messages: Vec<OutgoingToDevice>,
    ) -> Result<()> {
        let queued =
            self.db.queue_to_device(sender.to_string(), String::new(), message_id.to_owned(), messages).await?;
        self.to_device_committed(sender, queued, None).await;
        Ok(())
    }

    /// Announces a change of `user`'s device list to everyone sharing a
    /// room with them (and, for a local user, to their servers).
    async fn device_list_committed(&self, user: &UserId, position: i64) -> Result<()> {
        let audience = self.db.users_sharing_rooms(user.to_string()).await?;
        let audience: Vec<OwnedUserId> = audience.into_iter().filter_map(|u| OwnedUserId::try_from(u).ok()).collect();
        self.commits.committed(Commit::DeviceList { position, user, audience: &audience }).await;
        Ok(())
    }

    /// Announces to-device messages queued for local recipients (`queued`:
    /// the position and recipients, `None` for a retried transaction) and
    /// those addressed to devices of other servers.
    async fn to_device_committed(
        &self,
        sender: &UserId,
        queued: Option<(i64, Vec<String>)>,
        remote: Option<&RemoteToDevice>,
    ) {
        let (position, recipients) = match queued {
            Some((position, recipients)) => (Some(position), recipients),
            None => (None, Vec::new()),
        };
        let recipients: Vec<OwnedUserId> =
            recipients.into_iter().filter_map(|u| OwnedUserId::try_from(u).ok()).collect();
        let wake: Vec<&UserId> = recipients.iter().map(|u| u.as_ref()).collect();
        self.commits.committed(Commit::ToDevice { position, wake: &wake, sender, remote }).await;
    }

    /// `/keys/upload`: device identity keys, one-time keys, fallback keys.
    pub async fn upload_keys(
        &self,
        session: &Session,
        device_keys: Option<Value>,
        one_time_keys: BTreeMap<String, Value>,
        fallback_keys: BTreeMap<String, Value>,
    ) -> Result<BTreeMap<String, i64>> {
        let (user, device) = (session.user_id.to_string(), session.device_id.to_string());
        // Validate everything before storing anything.
        let device_json = match &device_keys {
            Some(keys) => Some(self.check_device_keys(session, keys)?),
            None => None,
        };
        let signing_key = match &device_keys {
            // Keys without one sign nothing this server can check.
            Some(keys) => ed25519_key(keys, &format!("ed25519:{device}")).ok(),
            None => self.stored_device_signing_key(&user, &device).await?,
        };
        let otks = check_one_time_keys(&user, &device, signing_key.as_deref(), &one_time_keys)?;
        let fallbacks = check_one_time_keys(&user, &device, signing_key.as_deref(), &fallback_keys)?;

        if let Some(json) = device_json {
            let new_keys = device_keys.as_ref().and_then(|k| k.get("keys")).cloned();
            let same_identity = move |old: &str| {
                serde_json::from_str::<Value>(old).ok().and_then(|o| o.get("keys").cloned()) == new_keys
            };
            match self.db.upload_device_keys(user.clone(), device.clone(), json, Box::new(same_identity)).await? {
                DeviceKeysOutcome::Changed(pos) => self.device_list_committed(&session.user_id, pos).await?,
                DeviceKeysOutcome::Unchanged => {}
                DeviceKeysOutcome::Conflict => {
                    return Err(E2eeError::InvalidKeys(
                        "this device already has different identity keys; log in as a new device".into(),
                    ));
                }
            }
        }
        let keys_changed = !otks.is_empty() || !fallbacks.is_empty();
        if !otks.is_empty()
            && let Some(key_id) = self.db.add_one_time_keys(user.clone(), device.clone(), otks).await?
        {
            return Err(E2eeError::InvalidKeys(format!("one-time key {key_id} already exists with other content")));
        }
        if !fallbacks.is_empty() {
            self.db.set_fallback_keys(user.clone(), device.clone(), fallbacks).await?;
        }
        if keys_changed {
            self.commits.committed(Commit::OneTimeKeys { user: &session.user_id, device: &device }).await;
        }
        Ok(self.db.one_time_key_counts(user, device).await?.into_iter().collect())
    }

    /// Checks a device key upload: right user and device, both identity
    /// keys present, and a valid self-signature. The algorithms a device
    /// lists, and keys of other algorithms beside its identity keys, are
    /// its own business: new ones are accepted as Synapse accepts them.
    fn check_device_keys(&self, session: &Session, keys: &Value) -> Result<String> {
        let parsed: ruma::encryption::DeviceKeys =
            serde_json::from_value(keys.clone()).map_err(|e| E2eeError::BadJson(format!("device_keys: {e}")))?;
        if parsed.user_id != session.user_id || parsed.device_id != session.device_id {
            return Err(E2eeError::InvalidKeys("device_keys must be for the uploading user and device".into()));
        }
        // The device's self-signature is not checked here, as Synapse does
        // not: the spec leaves it to the clients, which verify every
        // device key they use (and Sytest uploads placeholder keys).
        serde_json::to_string(keys).map_err(|e| E2eeError::BadJson(e.to_string()))
    }

    async fn stored_device_signing_key(&self, user: &str, device: &str) -> Result<Option<String>> {
        let stored = self.db.device_keys_of(user.to_owned()).await?;
        match stored.into_iter().find(|(d, _)| d == device) {
            Some((_, json)) => {
                let obj = Value::Object(parse_object(&json)?);
                Ok(Some(ed25519_key(&obj, &format!("ed25519:{device}"))?))
            }
            None => Ok(None),
        }
    }

    /// `/keys/query`: device keys and cross-signing keys of local users.
    /// Users of other servers are reported in `failures` until federation
    /// can ask their servers.
    pub async fn query_keys(
        &self,
        requester: &UserId,
        wanted: BTreeMap<OwnedUserId, Vec<OwnedDeviceId>>,
    ) -> Result<KeysQueryResult> {
        let mut result = KeysQueryResult::default();
        for (user, devices) in wanted {
            if user.server_name() != self.config.server.server_name {
                result.failures.insert(
                    user.server_name().to_string(),
                    json!({"status": 503, "message": "federation is not enabled"}),
                );
                continue;
            }
            let names: BTreeMap<String, Option<String>> = self
                .db
                .list_devices(user.clone())
                .await?
                .into_iter()
                .map(|d| (d.device_id.to_string(), d.display_name))
                .collect();
            let mut by_device = BTreeMap::new();
            for (device, json) in self.db.device_keys_of(user.to_string()).await? {
                if !devices.is_empty() && !devices.iter().any(|d| d.as_str() == device) {
                    continue;
                }
                let mut obj = parse_object(&json)?;
                obj.remove("unsigned");
                if let Some(Some(name)) = names.get(&device) {
                    obj.insert("unsigned".into(), json!({"device_display_name": name}));
                }
                by_device.insert(device, Value::Object(obj));
            }
            result.device_keys.insert(user.to_string(), by_device);
            for (kind, json) in self.db.cross_signing_keys_of(user.to_string()).await? {
                let value = Value::Object(parse_object(&json)?);
                match kind.as_str() {
                    "master" => {
                        result.master_keys.insert(user.to_string(), value);
                    }
                    "self_signing" => {
                        result.self_signing_keys.insert(user.to_string(), value);
                    }
                    // Only its owner may see a user-signing key.
                    "user_signing" if *user == *requester => {
                        result.user_signing_keys.insert(user.to_string(), value);
                    }
                    _ => {}
                }
            }
        }
        Ok(result)
    }

    /// `/keys/claim`: one key per requested device.
    pub async fn claim_keys(
        &self,
        wanted: BTreeMap<OwnedUserId, BTreeMap<OwnedDeviceId, String>>,
    ) -> Result<(BTreeMap<String, BTreeMap<String, Map<String, Value>>>, BTreeMap<String, Value>)> {
        let mut claimed = BTreeMap::new();
        let mut failures = BTreeMap::new();
        for (user, devices) in wanted {
            if user.server_name() != self.config.server.server_name {
                failures.insert(
                    user.server_name().to_string(),
                    json!({"status": 503, "message": "federation is not enabled"}),
                );
                continue;
            }
            let mut by_device = BTreeMap::new();
            for (device, algorithm) in devices {
                if let Some(key) = self.db.claim_key(user.to_string(), device.to_string(), algorithm).await? {
                    let value: Value =
                        serde_json::from_str(&key.json).map_err(|e| StorageError::Corrupt(e.to_string()))?;
                    let mut keys = Map::new();
                    keys.insert(key.key_id, value);
                    by_device.insert(device.to_string(), keys);
                    self.commits.committed(Commit::OneTimeKeys { user: &user, device: device.as_str() }).await;
                }
            }
            claimed.insert(user.to_string(), by_device);
        }
        Ok((claimed, failures))
    }

    /// `/keys/changes`: users whose keys changed between two sync tokens.
    pub async fn key_changes(&self, user: &UserId, from: i64, to: i64) -> Result<Vec<String>> {
        Ok(self.db.device_list_changes(user.to_string(), from, to).await?)
    }

    /// `/keys/device_signing/upload`. Needs the password once a master key
    /// exists (the first upload may skip it, as in MSC3967).
    pub async fn upload_signing_keys(
        &self,
        users: &Users,
        session: &Session,
        auth: Option<&ruma::api::client::uiaa::AuthData>,
        keys: Vec<(&'static str, Value)>,
    ) -> Result<()> {
        let user = session.user_id.as_str();
        let existing = self.db.cross_signing_keys_of(user.to_owned()).await?;
        let existing_master = existing.iter().find(|(k, _)| k == "master").map(|(_, j)| j.clone());
        let mut to_store = Vec::new();
        let mut master_public: Option<(String, String)> = None;
        for (kind, key) in &keys {
            let parsed: ruma::encryption::CrossSigningKey =
                serde_json::from_value(key.clone()).map_err(|e| E2eeError::BadJson(format!("{kind}_key: {e}")))?;
            if parsed.user_id != session.user_id {
                return Err(E2eeError::InvalidKeys(format!("{kind}_key is for another user")));
            }
            if !parsed.usage.iter().any(|u| u.as_str() == *kind) || parsed.keys.len() != 1 {
                return Err(E2eeError::InvalidKeys(format!("{kind}_key must have usage `{kind}` and exactly one key")));
            }
            if *kind == "master" {
                let (id, public) =
                    parsed.keys.iter().next().map(|(id, k)| (id.to_string(), k.clone())).expect("one key");
                master_public = Some((id, public));
            }
            to_store
                .push((kind.to_string(), serde_json::to_string(key).map_err(|e| E2eeError::BadJson(e.to_string()))?));
        }
        let master = match master_public {
            Some(m) => Some(m),
            None => match &existing_master {
                Some(json) => {
                    let obj = Value::Object(parse_object(json)?);
                    obj.get("keys")
                        .and_then(Value::as_object)
                        .and_then(|k| k.iter().next())
                        .and_then(|(id, v)| v.as_str().map(|s| (id.clone(), s.to_owned())))
                }
                None => None,
            },
        };
        for (kind, key) in &keys {
            if *kind == "master" {
                continue;
            }
            let Some((master_id, master_key)) = &master else {
                return Err(E2eeError::InvalidKeys(format!("{kind}_key needs a master key")));
            };
            verify_signature(key, user, master_id, master_key)?;
        }
        if existing_master.is_some() {
            let flows = vec![ruma::api::client::uiaa::AuthFlow::new(vec![ruma::api::client::uiaa::AuthType::Password])];
            users.authenticate(auth, flows, Some(&session.user_id), "replace cross-signing keys").await?;
        }
        let pos = self.db.set_cross_signing_keys(user.to_owned(), to_store).await?;
        self.device_list_committed(&session.user_id, pos).await
    }

    /// `/keys/signatures/upload`: merges verified signatures into stored
    /// keys. Returns failures per user and key id.
    pub async fn upload_signatures(
        &self,
        session: &Session,
        signed: BTreeMap<OwnedUserId, BTreeMap<String, Value>>,
    ) -> Result<BTreeMap<String, BTreeMap<String, Value>>> {
        let me = session.user_id.as_str();
        let my_cross = self.db.cross_signing_keys_of(me.to_owned()).await?;
        // The keys `me` may sign with: my cross-signing keys and this device's key.
        let mut signer_keys: Vec<(String, String)> = Vec::new();
        for (_, json) in &my_cross {
            let value: Value = serde_json::from_str(json).map_err(|e| StorageError::Corrupt(e.to_string()))?;
            if let Some(keys) = value.get("keys").and_then(Value::as_object) {
                for (id, key) in keys {
                    if let Some(key) = key.as_str() {
                        signer_keys.push((id.clone(), key.to_owned()));
                    }
                }
            }
        }
        for (device, json) in self.db.device_keys_of(me.to_owned()).await? {
            if device != session.device_id.as_str() {
                continue;
            }
            let value: Value = serde_json::from_str(&json).map_err(|e| StorageError::Corrupt(e.to_string()))?;
            let id = format!("ed25519:{device}");
            if let Some(key) = value.get("keys").and_then(|k| k.get(&id)).and_then(Value::as_str) {
                signer_keys.push((id, key.to_owned()));
            }
        }
        let mut failures: BTreeMap<String, BTreeMap<String, Value>> = BTreeMap::new();
        let mut fail = |user: &str, key: &str, code: &str, msg: &str| {
            failures.entry(user.to_owned()).or_default().insert(key.to_owned(), json!({"errcode": code, "error": msg}));
        };
        for (user, objects) in signed {
            for (key_id, object) in objects {
                // Every signature by `me` on the object must verify with one of my keys.
                let Some(sigs) = object.get("signatures").and_then(|s| s.get(me)).and_then(Value::as_object) else {
                    fail(user.as_str(), &key_id, "M_INVALID_SIGNATURE", "no signature by the uploader");
                    continue;
                };
                let mut ok = !sigs.is_empty();
                for sig_key in sigs.keys() {
                    let Some((_, public)) = signer_keys.iter().find(|(id, _)| id == sig_key) else {
                        ok = false;
                        break;
                    };
                    if verify_signature(&object, me, sig_key, public).is_err() {
                        ok = false;
                        break;
                    }
                }
                if !ok {
                    fail(user.as_str(), &key_id, "M_INVALID_SIGNATURE", "a signature does not verify");
                    continue;
                }
                match self.merge_signatures(&user, &key_id, &object, me).await? {
                    true => {}
                    false => fail(user.as_str(), &key_id, "M_NOT_FOUND", "no such key"),
                }
            }
        }
        Ok(failures)
    }

    /// Adds `signer`'s signatures from `object` to the stored key `key_id`
    /// of `user` (a device id, or a cross-signing public key).
    async fn merge_signatures(&self, user: &OwnedUserId, key_id: &str, object: &Value, signer: &str) -> Result<bool> {
        let new_sigs = object.get("signatures").and_then(|s| s.get(signer)).cloned().unwrap_or_default();
        let merge = |json: &str| -> Result<String> {
            let mut stored = parse_object(json)?;
            let sigs = stored.entry("signatures").or_insert_with(|| json!({}));
            let entry = sigs.as_object_mut().map(|m| m.entry(signer.to_owned()).or_insert_with(|| json!({})));
            if let (Some(Value::Object(entry)), Value::Object(new)) = (entry, new_sigs.clone()) {
                entry.extend(new);
            }
            serde_json::to_string(&stored).map_err(|e| E2eeError::BadJson(e.to_string()))
        };
        for (device, json) in self.db.device_keys_of(user.to_string()).await? {
            if device == key_id {
                let pos = self.db.replace_device_keys(user.to_string(), device, merge(&json)?).await?;
                self.device_list_committed(user, pos).await?;
                return Ok(true);
            }
        }
        for (kind, json) in self.db.cross_signing_keys_of(user.to_string()).await? {
            let value: Value = serde_json::from_str(&json).map_err(|e| StorageError::Corrupt(e.to_string()))?;
            let matches = value
                .get("keys")
                .and_then(Value::as_object)
                .is_some_and(|k| k.values().any(|v| v.as_str() == Some(key_id)));
            if matches {
                let pos = self.db.set_cross_signing_keys(user.to_string(), vec![(kind, merge(&json)?)]).await?;
                self.device_list_committed(user, pos).await?;
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// `/sendToDevice`: queues messages for local devices (idempotent per
    /// transaction id), hands those for other servers' devices to
    /// federation, and wakes the recipients. `messages` are `(user, device
    /// or "*", content)`; contents must be objects.
    pub async fn send_to_device(
        &self,
        session: &Session,
        txn_id: &str,
        kind: &str,
        messages: Vec<(OwnedUserId, String, Value)>,
    ) -> Result<()> {
        let own = &self.config.server.server_name;
        let mut local: Vec<OutgoingToDevice> = Vec::new();
        let mut remote = Vec::new();
        for (user, device, content) in messages {
            if !content.is_object() {
                return Err(E2eeError::BadJson("to-device content must be an object".into()));
            }
            if user.server_name() == own {
                local.push((user.to_string(), device, kind.to_owned(), content.to_string()));
            } else {
                remote.push((user, device, content));
            }
        }
        if !remote.is_empty() && !self.config.federation.enabled {
            return Err(E2eeError::Forbidden("this server does not federate".into()));
        }
        let queued = self
            .db
            .queue_to_device(session.user_id.to_string(), session.device_id.to_string(), txn_id.to_owned(), local)
            .await?;
        // The message id is unique per sender device and transaction.
        let remote = (!remote.is_empty()).then(|| RemoteToDevice {
            kind: kind.to_owned(),
            message_id: format!("{}-{txn_id}", session.device_id),
            messages: remote,
        });
        self.to_device_committed(&session.user_id, queued, remote.as_ref()).await;
        Ok(())
    }
}

/// Checks one-time or fallback keys: `<algorithm>:<id>` names, and signed
/// keys carrying a valid signature by the device; keys of other algorithms
/// are kept as they are.
fn check_one_time_keys(
    user: &str,
    device: &str,
    signing_key: Option<&str>,
    keys: &BTreeMap<String, Value>,
) -> Result<Vec<(String, String, String)>> {
    let mut out = Vec::new();
    for (key_id, key) in keys {
        let Some((algorithm, _)) = key_id.split_once(':') else {
            return Err(E2eeError::InvalidKeys(format!("one-time key id {key_id} has no algorithm")));
        };
        // Algorithms this server does not know are kept as given, as
        // Synapse does: only the clients that claim them read them.
        if algorithm == "signed_curve25519" {
            if !key.is_object() || key.get("key").and_then(Value::as_str).is_none() {
                return Err(E2eeError::BadJson(format!("signed key {key_id} must be an object with a key")));
            }
            if let Some(public) = signing_key {
                verify_signature(key, user, &format!("ed25519:{device}"), public)?;
            }
        } else if algorithm == "curve25519" && !key.is_string() {
            return Err(E2eeError::BadJson(format!("key {key_id} must be a string")));
        }
        out.push((
            algorithm.to_owned(),
            key_id.clone(),
            serde_json::to_string(key).map_err(|e| E2eeError::BadJson(e.to_string()))?,
        ));
    }
    Ok(out)
}
