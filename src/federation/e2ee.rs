//! End-to-end encryption across servers: key queries and one-time key
//! claims for users of other servers and to-device messages as EDUs
//! (device lists are `device_lists.rs`).

use std::{
    collections::{BTreeMap, HashSet},
    sync::Arc,
};

use ruma::{
    OwnedDeviceId, OwnedServerName, OwnedTransactionId, OwnedUserId, UserId,
    api::federation::{
        keys::{claim_keys, get_keys},
        transactions::edu::{DirectDeviceContent, DirectDeviceMessages, Edu},
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
        self: &Arc<Self>,
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

    /// Answers for the users whose device lists this server tracks from
    /// what it stores, asks each server for the keys of its other users and
    /// merges the answers into `result`; a server that cannot answer goes
    /// into `failures`.
    async fn query_keys_remote(
        self: &Arc<Self>,
        wanted: BTreeMap<OwnedUserId, Vec<OwnedDeviceId>>,
        result: &mut KeysQueryResult,
    ) {
        let wanted = self.query_tracked_keys(wanted, result).await;
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
}
