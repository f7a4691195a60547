//! End-to-end encryption across servers: key queries and one-time key
//! claims for users of other servers, to-device messages and device list
//! updates as EDUs, and the federation endpoints other servers use for the
//! same about users here.

use std::{
    collections::{BTreeMap, HashSet},
    sync::Arc,
};

use ruma::{
    MilliSecondsSinceUnixEpoch, OwnedDeviceId, OwnedServerName, OwnedTransactionId, OwnedUserId, UserId,
    api::federation::{
        device::get_devices,
        keys::{claim_keys, get_keys},
        transactions::edu::{DeviceListUpdateContent, DirectDeviceContent, DirectDeviceMessages, Edu},
    },
    serde::Raw,
    to_device::DeviceIdOrAllDevices,
};
use serde_json::{Map, Value, json};

use super::{FedError, Federation, edus::edu_json};
use crate::e2ee::KeysQueryResult;

/// One-time keys claimed: user, device, key id, key.
pub type ClaimedKeys = BTreeMap<String, BTreeMap<String, Map<String, Value>>>;

fn failure(e: &super::FedError) -> Value {
    json!({"status": 503, "message": e.to_string()})
}

fn not_federating() -> Value {
    json!({"status": 503, "message": "this server does not federate"})
}

fn to_value<T: serde::Serialize>(v: &T) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}

impl Federation {
    /// `/keys/query` (client-server API): keys of local users from the
    /// store, those of other users from their servers; a server that
    /// cannot answer (or federation being off) goes into `failures`.
    pub async fn query_keys(
        &self,
        requester: &UserId,
        wanted: BTreeMap<OwnedUserId, Vec<OwnedDeviceId>>,
    ) -> Result<KeysQueryResult, FedError> {
        let (local, remote): (BTreeMap<_, _>, BTreeMap<_, _>) =
            wanted.into_iter().partition(|(u, _)| u.server_name() == self.server_name());
        let mut result = self.e2ee.query_keys(requester, local).await?;
        if self.enabled() {
            self.query_keys_remote(remote, &mut result).await;
        } else {
            for user in remote.keys() {
                result.failures.insert(user.server_name().to_string(), not_federating());
            }
        }
        Ok(result)
    }

    /// `/keys/claim` (client-server API): one-time keys of local devices
    /// claimed here, those of other users' devices from their servers.
    /// Returns the keys and the failures by server.
    pub async fn claim_keys(
        &self,
        wanted: BTreeMap<OwnedUserId, BTreeMap<OwnedDeviceId, String>>,
    ) -> Result<(ClaimedKeys, BTreeMap<String, Value>), FedError> {
        let (local, remote): (BTreeMap<_, _>, BTreeMap<_, _>) =
            wanted.into_iter().partition(|(u, _)| u.server_name() == self.server_name());
        let (mut claimed, mut failures) = self.e2ee.claim_keys(local).await?;
        if self.enabled() {
            self.claim_keys_remote(remote, &mut claimed, &mut failures).await;
        } else {
            for user in remote.keys() {
                failures.insert(user.server_name().to_string(), not_federating());
            }
        }
        Ok((claimed, failures))
    }

    /// Asks each server for the keys of its users and merges the answers
    /// into `result`; a server that cannot answer goes into `failures`.
    async fn query_keys_remote(&self, wanted: BTreeMap<OwnedUserId, Vec<OwnedDeviceId>>, result: &mut KeysQueryResult) {
        let mut by_server: BTreeMap<OwnedServerName, BTreeMap<OwnedUserId, Vec<OwnedDeviceId>>> = BTreeMap::new();
        for (user, devices) in wanted {
            by_server.entry(user.server_name().to_owned()).or_default().insert(user, devices);
        }
        for (server, users) in by_server {
            let asked: HashSet<OwnedUserId> = users.keys().cloned().collect();
            match self.request(&server, get_keys::v1::Request::new(users)).await {
                Ok(answer) => {
                    // Only what the server may speak for: its own users.
                    for (user, devices) in answer.device_keys.into_iter().filter(|(u, _)| asked.contains(u)) {
                        let devices = devices.into_iter().map(|(d, k)| (d.to_string(), to_value(&k))).collect();
                        result.device_keys.insert(user.to_string(), devices);
                    }
                    for (user, key) in answer.master_keys.into_iter().filter(|(u, _)| asked.contains(u)) {
                        result.master_keys.insert(user.to_string(), to_value(&key));
                    }
                    for (user, key) in answer.self_signing_keys.into_iter().filter(|(u, _)| asked.contains(u)) {
                        result.self_signing_keys.insert(user.to_string(), to_value(&key));
                    }
                }
                Err(e) => {
                    result.failures.insert(server.to_string(), failure(&e));
                }
            }
        }
    }

    /// Claims one-time keys of users of other servers.
    async fn claim_keys_remote(
        &self,
        wanted: BTreeMap<OwnedUserId, BTreeMap<OwnedDeviceId, String>>,
        claimed: &mut ClaimedKeys,
        failures: &mut BTreeMap<String, Value>,
    ) {
        let mut by_server: BTreeMap<OwnedServerName, BTreeMap<OwnedUserId, BTreeMap<OwnedDeviceId, _>>> =
            BTreeMap::new();
        for (user, devices) in wanted {
            let devices = devices.into_iter().map(|(d, alg)| (d, ruma::OneTimeKeyAlgorithm::from(alg))).collect();
            by_server.entry(user.server_name().to_owned()).or_default().insert(user, devices);
        }
        for (server, users) in by_server {
            let asked: HashSet<OwnedUserId> = users.keys().cloned().collect();
            match self.request(&server, claim_keys::v1::Request::new(users)).await {
                Ok(answer) => {
                    for (user, devices) in answer.one_time_keys.into_iter().filter(|(u, _)| asked.contains(u)) {
                        let mut by_device = BTreeMap::new();
                        for (device, keys) in devices {
                            let keys: Map<String, Value> =
                                keys.into_iter().map(|(id, k)| (id.to_string(), to_value(&k))).collect();
                            by_device.insert(device.to_string(), keys);
                        }
                        claimed.insert(user.to_string(), by_device);
                    }
                }
                Err(e) => {
                    failures.insert(server.to_string(), failure(&e));
                }
            }
        }
    }

    /// Sends to-device messages for users of other servers as
    /// `m.direct_to_device` EDUs, one per destination. A message whose
    /// device id is neither a device id nor `*` is dropped.
    pub(super) async fn send_to_device_remote(
        &self,
        sender: &UserId,
        kind: &str,
        message_id: &str,
        messages: Vec<(OwnedUserId, String, Value)>,
    ) {
        let mut by_server: BTreeMap<OwnedServerName, DirectDeviceMessages> = BTreeMap::new();
        for (user, device, content) in messages {
            let Ok(device) = DeviceIdOrAllDevices::try_from(device.as_str()) else { continue };
            let Ok(content) = serde_json::value::to_raw_value(&content) else { continue };
            let entry = by_server.entry(user.server_name().to_owned()).or_default();
            entry.entry(user).or_default().insert(device, Raw::from_json(content));
        }
        let edus = by_server
            .into_iter()
            .map(|(server, messages)| {
                let mut content =
                    DirectDeviceContent::new(sender.to_owned(), kind.into(), OwnedTransactionId::from(message_id));
                content.messages = messages;
                (server, edu_json(&Edu::DirectToDevice(content)))
            })
            .collect();
        self.sender.send_edus(edus).await;
    }

    /// Tells the servers sharing a room with a local user that their device
    /// list changed (`m.device_list_update`).
    pub(super) async fn send_device_list_update(&self, user: &UserId, servers: Vec<OwnedServerName>) {
        // No device is named: the receiving server asks for the whole list
        // again (`user/devices`).
        let stream_id = MilliSecondsSinceUnixEpoch::now().0;
        let content = DeviceListUpdateContent::new(user.to_owned(), OwnedDeviceId::from(""), stream_id);
        let edu = edu_json(&Edu::DeviceListUpdate(content));
        self.sender.send_edus(servers.into_iter().map(|s| (s, edu.clone())).collect()).await;
    }

    /// An `m.device_list_update` EDU about a user of another server
    /// (server-server API, "Device Management"). An update that follows on
    /// from what this server knows of the user's devices (its `prev_id`
    /// names the stream id last applied) is applied; otherwise (the user's
    /// list never fetched, an update missed, or no device named) the whole
    /// list is asked of their server again (`GET /user/devices`), in the
    /// background, as the spec asks. Either way the users here who share a
    /// room with the user then see them in `device_lists.changed`. Users
    /// who share no room with anyone here are not tracked.
    pub async fn receive_device_list_update(self: &Arc<Self>, update: DeviceListUpdateContent) {
        if let Err(e) = self.apply_device_list_update(&update).await {
            tracing::info!(user = %update.user_id, error = %e, "dropped a device list update");
        }
    }

    async fn apply_device_list_update(self: &Arc<Self>, update: &DeviceListUpdateContent) -> Result<(), FedError> {
        let user = &update.user_id;
        if self.db.users_sharing_rooms(user.to_string()).await?.is_empty() {
            return Ok(());
        }
        let stream_id = i64::try_from(u64::from(update.stream_id)).unwrap_or(i64::MAX);
        match self.db.remote_device_list(user.to_string()).await? {
            Some((last, _)) if stream_id <= last => Ok(()),
            Some((last, devices)) if follows_on(update, last) => {
                let devices = apply_device_update(&devices, update);
                let position = self.db.set_remote_device_list(user.to_string(), stream_id, devices).await?;
                Ok(self.e2ee.remote_device_list_stored(user, position).await?)
            }
            _ => {
                let (federation, user) = (self.clone(), user.clone());
                tokio::spawn(async move { federation.resync_device_list(&user).await });
                Ok(())
            }
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

    /// `GET /user/devices` of the user's server, stored; returns the
    /// position of the change.
    async fn fetch_device_list(&self, user: &UserId) -> Result<i64, FedError> {
        let answer = self.request(user.server_name(), get_devices::v1::Request::new(user.to_owned())).await?;
        if answer.user_id != user {
            return Err(FedError::BadResponse("the device list is of another user".into()));
        }
        let devices: Map<String, Value> =
            answer.devices.iter().map(|d| (d.device_id.to_string(), to_value(d))).collect();
        let stream_id = i64::try_from(u64::from(answer.stream_id)).unwrap_or(i64::MAX);
        Ok(self.db.set_remote_device_list(user.to_string(), stream_id, Value::Object(devices).to_string()).await?)
    }
}

/// Whether an update can be applied to a device list last updated at
/// stream id `last`: it names a device, and its `prev_id` (none for a
/// device's first update) includes `last`.
fn follows_on(update: &DeviceListUpdateContent, last: i64) -> bool {
    !update.device_id.as_str().is_empty()
        && (update.prev_id.is_empty() || update.prev_id.iter().any(|p| i64::try_from(u64::from(*p)) == Ok(last)))
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
            device.insert("keys".into(), to_value(keys));
        }
        if let Some(name) = &update.device_display_name {
            device.insert("device_display_name".into(), Value::String(name.clone()));
        }
        devices.insert(device_id, Value::Object(device));
    }
    Value::Object(devices).to_string()
}
