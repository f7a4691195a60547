//! Device lists across servers (server-server API, "Device Management"):
//! a local user's device updates go to the servers sharing a room with
//! them as `m.device_list_update` EDUs, one per device, chained by
//! `stream_id` and `prev_id`, and new cross-signing keys as
//! `m.signing_key_update`; what is known of other servers' users' device
//! lists is kept up to date from theirs and answers `/keys/query`.

use std::{collections::BTreeMap, sync::Arc};

use ruma::{
    OwnedDeviceId, OwnedServerName, UInt, UserId,
    api::federation::{
        device::get_devices,
        transactions::edu::{DeviceListUpdateContent, Edu, SigningKeyUpdateContent},
    },
    serde::Raw,
};
use serde_json::{Map, Value, json, value::RawValue};

use super::{FedError, Federation, edus::edu_json};
use crate::{e2ee::KeysQueryResult, storage::e2ee::DeviceUpdate};

fn stream_id(id: i64) -> UInt {
    UInt::new_saturating(u64::try_from(id).unwrap_or_default())
}

fn stored_stream_id(id: UInt) -> i64 {
    i64::try_from(u64::from(id)).unwrap_or(i64::MAX)
}

/// Stored JSON as the raw JSON of a ruma type, if it is JSON.
fn raw<T>(json: String) -> Option<Raw<T>> {
    RawValue::from_string(json).ok().map(Raw::from_json)
}

/// What another server's user's device list holds, as stored.
struct KnownDeviceList {
    /// Device id -> the device as `/user/devices` lists it.
    devices: Map<String, Value>,
    master_key: Option<String>,
    self_signing_key: Option<String>,
}

impl Federation {
    /// Tells the servers sharing a room with a local user what the device
    /// list change at `position` changed: one `m.device_list_update` per
    /// device, or an `m.signing_key_update` when no device changed (new
    /// cross-signing keys).
    pub(super) async fn send_device_list_update(&self, user: &UserId, position: i64, servers: Vec<OwnedServerName>) {
        match self.device_list_edus(user, position).await {
            Ok(edus) => {
                // In stream order: a server applies each update on the one before.
                let items =
                    edus.iter().flat_map(|edu| servers.iter().map(|server| (server.clone(), edu.clone()))).collect();
                self.sender.send_edus(items).await;
            }
            Err(e) => tracing::warn!(%user, error = %e, "cannot build the device list updates of a user"),
        }
    }

    async fn device_list_edus(&self, user: &UserId, position: i64) -> Result<Vec<String>, FedError> {
        let updates = self.db.device_updates_of_change(user.to_string(), position).await?;
        if updates.is_empty() {
            // Cross-signing keys changed (or later changes of the same
            // devices replaced these updates, which then go out with those:
            // sending the current cross-signing keys again does no harm).
            return Ok(self.signing_key_update(user).await?.into_iter().collect());
        }
        let names: BTreeMap<String, Option<String>> = self
            .db
            .list_devices(user.to_owned())
            .await?
            .into_iter()
            .map(|d| (d.device_id.to_string(), d.display_name))
            .collect();
        let keys: BTreeMap<String, String> = self.db.device_keys_of(user.to_string()).await?.into_iter().collect();
        Ok(updates
            .into_iter()
            .map(|update| edu_json(&Edu::DeviceListUpdate(device_list_update(user, update, &names, &keys))))
            .collect())
    }

    /// The user's public cross-signing keys as an `m.signing_key_update`
    /// EDU; `None` when they have none.
    async fn signing_key_update(&self, user: &UserId) -> Result<Option<String>, FedError> {
        let mut content = SigningKeyUpdateContent::new(user.to_owned());
        for (kind, json) in self.db.cross_signing_keys_of(user.to_string()).await? {
            match kind.as_str() {
                "master" => content.master_key = raw(json),
                "self_signing" => content.self_signing_key = raw(json),
                // The user-signing key is for its owner alone.
                _ => {}
            }
        }
        if content.master_key.is_none() && content.self_signing_key.is_none() {
            return Ok(None);
        }
        Ok(Some(edu_json(&Edu::SigningKeyUpdate(content))))
    }

    /// An `m.device_list_update` EDU about a user of another server
    /// (server-server API, "Device Management"). An update that follows on
    /// from what this server knows of the user's devices (its `prev_id`
    /// names the stream id last applied) is applied; otherwise (the user's
    /// list never fetched, an update missed, or no device named) what is
    /// known is forgotten and the whole list asked of their server again
    /// (`GET /user/devices`), in the background, as the spec asks. Either
    /// way the users here who share a room with the user then see them in
    /// `device_lists.changed`. Users who share no room with anyone here are
    /// not tracked.
    pub async fn receive_device_list_update(self: &Arc<Self>, update: DeviceListUpdateContent) {
        if let Err(e) = self.apply_device_list_update(&update).await {
            tracing::info!(user = %update.user_id, error = %e, "dropped a device list update");
        }
    }

    async fn apply_device_list_update(self: &Arc<Self>, update: &DeviceListUpdateContent) -> Result<(), FedError> {
        let user = &update.user_id;
        if self.db.users_sharing_rooms(user.to_string()).await?.is_empty() {
            // No longer told of every change: what is known goes stale.
            return Ok(self.db.forget_remote_device_list(user.to_string()).await?);
        }
        let stream_id = stored_stream_id(update.stream_id);
        match self.db.remote_device_list(user.to_string()).await? {
            Some((last, _)) if stream_id <= last => Ok(()),
            Some((last, devices)) if follows_on(update, last) => {
                let devices = apply_device_update(&devices, update);
                let position = self.db.set_remote_device_list(user.to_string(), stream_id, devices).await?;
                Ok(self.e2ee.remote_device_list_stored(user, position).await?)
            }
            known => {
                if known.is_some() {
                    // Out of date until fetched again: `/keys/query` asks.
                    self.db.forget_remote_device_list(user.to_string()).await?;
                }
                let (federation, user) = (self.clone(), user.clone());
                tokio::spawn(async move { federation.resync_device_list(&user).await });
                Ok(())
            }
        }
    }

    /// An `m.signing_key_update` EDU about a user of another server: the
    /// keys it carries replace those stored with the user's device list
    /// (when it is), and the user's room-mates here see the change.
    pub async fn receive_signing_key_update(&self, update: SigningKeyUpdateContent) {
        let user = update.user_id.to_string();
        let stored = async {
            if self.db.remote_device_list(user.clone()).await?.is_some() {
                let (master, self_signing) = self.db.remote_cross_signing_keys(user.clone()).await?;
                let master = update.master_key.map(|k| k.json().get().to_owned()).or(master);
                let self_signing = update.self_signing_key.map(|k| k.json().get().to_owned()).or(self_signing);
                self.db.set_remote_cross_signing_keys(user.clone(), master, self_signing).await?;
            }
            Ok::<_, FedError>(self.e2ee.remote_device_change(&update.user_id).await?)
        };
        if let Err(e) = stored.await {
            tracing::info!(%user, error = %e, "dropped a signing key update");
        }
    }

    /// Asks the user's server for their whole device list and stores it.
    /// When it cannot answer, the change is still announced: clients ask
    /// for the keys again, and `/keys/query` asks that server itself.
    async fn resync_device_list(&self, user: &UserId) {
        let announced = match self.fetch_device_list(user).await {
            Ok(position) => self.e2ee.remote_device_list_stored(user, position).await,
            Err(e) => {
                tracing::info!(%user, error = %e, "cannot fetch the device list of a user of another server");
                self.e2ee.remote_device_change(user).await
            }
        };
        if let Err(e) = announced {
            tracing::info!(%user, error = %e, "cannot record a device list change");
        }
    }

    /// `GET /user/devices` of the user's server, stored with the user's
    /// cross-signing keys; returns the position of the change.
    async fn fetch_device_list(&self, user: &UserId) -> Result<i64, FedError> {
        let answer = self.request(user.server_name(), get_devices::v1::Request::new(user.to_owned())).await?;
        if answer.user_id != user {
            return Err(FedError::BadResponse("the device list is of another user".into()));
        }
        let devices: Map<String, Value> = answer
            .devices
            .iter()
            .map(|d| (d.device_id.to_string(), serde_json::to_value(d).unwrap_or(Value::Null)))
            .collect();
        let stream_id = stored_stream_id(answer.stream_id);
        let position =
            self.db.set_remote_device_list(user.to_string(), stream_id, Value::Object(devices).to_string()).await?;
        let master = answer.master_key.map(|k| k.json().get().to_owned());
        let self_signing = answer.self_signing_key.map(|k| k.json().get().to_owned());
        self.db.set_remote_cross_signing_keys(user.to_string(), master, self_signing).await?;
        Ok(position)
    }

    /// What this server knows of another server's user's device list: it
    /// tracks the list when they share a room with a user here (their
    /// server then tells this one of every change) and the list is stored.
    async fn tracked_device_list(&self, user: &UserId) -> Result<Tracking, FedError> {
        if self.db.users_sharing_rooms(user.to_string()).await?.is_empty() {
            return Ok(Tracking::NotShared);
        }
        let Some((_, devices)) = self.db.remote_device_list(user.to_string()).await? else {
            return Ok(Tracking::NotStored);
        };
        let (master_key, self_signing_key) = self.db.remote_cross_signing_keys(user.to_string()).await?;
        let devices = match serde_json::from_str(&devices) {
            Ok(Value::Object(devices)) => devices,
            _ => return Ok(Tracking::NotStored),
        };
        Ok(Tracking::Known(KnownDeviceList { devices, master_key, self_signing_key }))
    }

    /// Answers `/keys/query` for the users of other servers whose device
    /// lists this server tracks, from what it stores; returns the others,
    /// whose servers must be asked. The lists of those sharing a room here
    /// but not stored yet are fetched and stored in the background, for the
    /// next query (not in the way of this one: their server may be slow).
    pub(super) async fn query_tracked_keys(
        self: &Arc<Self>,
        wanted: BTreeMap<ruma::OwnedUserId, Vec<OwnedDeviceId>>,
        result: &mut KeysQueryResult,
    ) -> BTreeMap<ruma::OwnedUserId, Vec<OwnedDeviceId>> {
        let mut untracked = BTreeMap::new();
        let mut to_fetch = Vec::new();
        for (user, devices) in wanted {
            match self.tracked_device_list(&user).await {
                Ok(Tracking::Known(known)) => answer_from_list(&user, &devices, known, result),
                Ok(Tracking::NotStored) => {
                    to_fetch.push(user.clone());
                    untracked.insert(user, devices);
                }
                Ok(Tracking::NotShared) => {
                    untracked.insert(user, devices);
                }
                Err(e) => {
                    tracing::info!(%user, error = %e, "cannot read what is known of a remote device list");
                    untracked.insert(user, devices);
                }
            }
        }
        if !to_fetch.is_empty() {
            let federation = self.clone();
            tokio::spawn(async move {
                for user in to_fetch {
                    if let Err(e) = federation.fetch_device_list(&user).await {
                        tracing::info!(%user, error = %e, "cannot fetch the device list of a user of another server");
                    }
                }
            });
        }
        untracked
    }
}

/// Whether this server tracks a remote user's device list.
enum Tracking {
    /// Tracked: what is stored.
    Known(KnownDeviceList),
    /// They share a room with a user here, but the list is not stored (never
    /// fetched, or forgotten as out of date).
    NotStored,
    /// They share no room with a user here: their server tells this one
    /// nothing.
    NotShared,
}

/// Puts a tracked device list in a `/keys/query` answer: each device's
/// keys with its display name in `unsigned`, as its server would answer.
fn answer_from_list(user: &UserId, wanted: &[OwnedDeviceId], known: KnownDeviceList, result: &mut KeysQueryResult) {
    let mut by_device = BTreeMap::new();
    for (device_id, device) in known.devices {
        if !wanted.is_empty() && !wanted.iter().any(|d| d.as_str() == device_id) {
            continue;
        }
        let Some(Value::Object(mut keys)) = device.get("keys").cloned() else { continue };
        keys.remove("unsigned");
        if let Some(name) = device.get("device_display_name").and_then(Value::as_str) {
            keys.insert("unsigned".into(), json!({"device_display_name": name}));
        }
        by_device.insert(device_id, Value::Object(keys));
    }
    result.device_keys.insert(user.to_string(), by_device);
    let parse = |json: Option<String>| json.and_then(|j| serde_json::from_str::<Value>(&j).ok());
    if let Some(key) = parse(known.master_key) {
        result.master_keys.insert(user.to_string(), key);
    }
    if let Some(key) = parse(known.self_signing_key) {
        result.self_signing_keys.insert(user.to_string(), key);
    }
}

/// The `m.device_list_update` EDU of one device update: the device's
/// display name and keys (as uploaded) as they are now, or `deleted` when
/// the device is gone.
fn device_list_update(
    user: &UserId,
    update: DeviceUpdate,
    names: &BTreeMap<String, Option<String>>,
    keys: &BTreeMap<String, String>,
) -> DeviceListUpdateContent {
    let device_id = OwnedDeviceId::from(update.device_id.as_str());
    let mut content = DeviceListUpdateContent::new(user.to_owned(), device_id, stream_id(update.stream_id));
    content.prev_id = update.prev_id.map(stream_id).into_iter().collect();
    match names.get(&update.device_id) {
        Some(name) => {
            content.device_display_name = name.clone();
            content.keys = keys.get(&update.device_id).and_then(|json| {
                let mut keys: Map<String, Value> = serde_json::from_str(json).ok()?;
                keys.remove("unsigned");
                raw(Value::Object(keys).to_string())
            });
        }
        None => content.deleted = Some(true),
    }
    content
}

/// Whether an update can be applied to a device list last updated at
/// stream id `last`: it names a device, and its `prev_id` (none for a
/// device's first update) includes `last`.
fn follows_on(update: &DeviceListUpdateContent, last: i64) -> bool {
    !update.device_id.as_str().is_empty()
        && (update.prev_id.is_empty() || update.prev_id.iter().any(|p| stored_stream_id(*p) == last))
}

/// Applies one device's update to a stored device list (a JSON object by
/// device id, each device as `/user/devices` lists it).
fn apply_device_update(devices: &str, update: &DeviceListUpdateContent) -> String {
    let mut devices: Map<String, Value> = serde_json::from_str(devices).unwrap_or_default();
    let device_id = update.device_id.to_string();
    if update.deleted == Some(true) {
        devices.remove(&device_id);
    } else {
        let mut device = Map::new();
        device.insert("device_id".into(), Value::String(device_id.clone()));
        if let Some(keys) = &update.keys {
            device.insert("keys".into(), serde_json::to_value(keys).unwrap_or(Value::Null));
        }
        if let Some(name) = &update.device_display_name {
            device.insert("device_display_name".into(), Value::String(name.clone()));
        }
        devices.insert(device_id, Value::Object(device));
    }
    Value::Object(devices).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn update(device: &str, stream_id: i64, prev_id: Option<i64>) -> DeviceUpdate {
        DeviceUpdate { device_id: device.into(), stream_id, prev_id }
    }

    #[test]
    fn a_device_update_names_the_device_its_keys_and_the_update_before() {
        let user = ruma::user_id!("@alice:example.org");
        let names = BTreeMap::from([("PHONE".to_owned(), Some("Phone".to_owned()))]);
        let keys = BTreeMap::from([(
            "PHONE".to_owned(),
            r#"{"user_id":"@alice:example.org","device_id":"PHONE","algorithms":[],"keys":{},"unsigned":{"x":1}}"#
                .to_owned(),
        )]);
        let content = device_list_update(user, update("PHONE", 12, Some(9)), &names, &keys);
        let json = serde_json::to_value(&content).unwrap();
        assert_eq!(json["device_id"], "PHONE");
        assert_eq!(json["stream_id"], 12);
        assert_eq!(json["prev_id"], json!([9]));
        assert_eq!(json["device_display_name"], "Phone");
        assert_eq!(json["keys"]["device_id"], "PHONE");
        assert!(json["keys"].get("unsigned").is_none(), "{json}");
        assert!(json.get("deleted").is_none(), "{json}");

        let gone = serde_json::to_value(device_list_update(user, update("OLD", 13, Some(12)), &names, &keys)).unwrap();
        assert_eq!(gone["deleted"], true);
        assert_eq!(gone["prev_id"], json!([12]));

        let first = serde_json::to_value(device_list_update(user, update("PHONE", 3, None), &names, &keys)).unwrap();
        assert!(first.get("prev_id").is_none_or(|p| p == &json!([])), "{first}");
    }
}
