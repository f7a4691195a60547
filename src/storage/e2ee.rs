//! Key material and message queues for end-to-end encryption: device keys,
//! one-time and fallback keys, cross-signing keys, device list changes,
//! to-device messages and server-side key backup.

use async_trait::async_trait;

use super::Result;

/// The outcome of a device key upload.
#[derive(Debug, PartialEq, Eq)]
pub enum DeviceKeysOutcome {
    /// Stored (new or changed); the device list changed at this position.
    Changed(i64),
    /// Identical to what was stored.
    Unchanged,
    /// The device already has different signed identity keys.
    Conflict,
}

/// One device's update in a local user's device list stream (server-server
/// API, "Device Management": an `m.device_list_update` EDU's `stream_id`
/// and `prev_id`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceUpdate {
    pub device_id: String,
    pub stream_id: i64,
    /// The stream id of the user's update before this one; `None` for the
    /// first.
    pub prev_id: Option<i64>,
}

/// A one-time key handed out by a claim.
#[derive(Debug, Clone)]
pub struct ClaimedKey {
    pub key_id: String,
    pub json: String,
}

/// One to-device message waiting for a device.
#[derive(Debug, Clone)]
pub struct ToDeviceRow {
    pub sender: String,
    pub kind: String,
    pub content: String,
}

/// A message to queue: `(user, device or "*", type, content JSON)`.
pub type OutgoingToDevice = (String, String, String, String);

/// A key backup version.
#[derive(Debug, Clone)]
pub struct BackupVersion {
    pub version: i64,
    pub algorithm: String,
    pub etag: i64,
    pub count: i64,
}

/// One backed-up session key.
#[derive(Debug, Clone)]
pub struct BackupKeyRow {
    pub room_id: String,
    pub session_id: String,
    pub json: String,
    pub first_message_index: i64,
    pub forwarded_count: i64,
    pub is_verified: bool,
}

/// Why a backup write was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum BackupError {
    /// No such version, or it is not the current one: the current version.
    WrongVersion(Option<i64>),
}

/// Whether stored device keys (their JSON given) carry the same identity
/// keys as an upload.
pub type SameIdentity = Box<dyn FnOnce(&str) -> bool + Send>;

/// Device keys, one-time and fallback keys, cross-signing keys, device list
/// changes and to-device messages.
///
/// What every backend must guarantee, beyond those of [`super::Storage`]:
/// - One-time key claims are atomic: a key is handed out at most once,
///   even to concurrent claimers, and is gone once handed out. When none
///   is left, the device's fallback key is handed out (to every claimer)
///   and marked used.
/// - An upload of one-time keys is stored whole or not at all.
/// - `queue_to_device` is idempotent per `(sender, sender device, txn id)`:
///   a transaction seen before queues nothing.
/// - A to-device message stays until its device acknowledges it
///   (`ack_to_device` through its position), and is then gone for good.
/// - Changes to keys others must learn about take a `misc` position (see
///   [`super::StreamStore`]) in the same commit.
#[async_trait]
pub trait E2eeStore: Send + Sync {
    /// Stores a device's identity keys, unless keys with other identity
    /// keys (`same_identity` says) are stored: a device's keys never
    /// change, a new device is needed. Compared and stored in one step.
    async fn upload_device_keys(
        &self,
        user_id: String,
        device_id: String,
        json: String,
        same_identity: SameIdentity,
    ) -> Result<DeviceKeysOutcome>;

    /// Replaces a device's stored key JSON (signatures added) and records a
    /// device list change; returns its position.
    async fn replace_device_keys(&self, user_id: String, device_id: String, json: String) -> Result<i64>;

    /// Adds one-time keys `(algorithm, key_id, json)`; one stored already
    /// with the same content is skipped. Returns the id of a key that
    /// exists with other content (nothing is stored then), or `None`.
    async fn add_one_time_keys(
        &self,
        user_id: String,
        device_id: String,
        keys: Vec<(String, String, String)>,
    ) -> Result<Option<String>>;

    /// Replaces the fallback key `(algorithm, key_id, json)` of each
    /// algorithm given, unused.
    async fn set_fallback_keys(
        &self,
        user_id: String,
        device_id: String,
        keys: Vec<(String, String, String)>,
    ) -> Result<()>;

    /// Unclaimed one-time keys per algorithm.
    async fn one_time_key_counts(&self, user_id: String, device_id: String) -> Result<Vec<(String, i64)>>;

    /// The algorithms of the device's unused fallback keys, sorted.
    async fn unused_fallback_key_types(&self, user_id: String, device_id: String) -> Result<Vec<String>>;

    /// Hands out one one-time key of `algorithm`, else the device's
    /// fallback key of it, else `None`.
    async fn claim_key(&self, user_id: String, device_id: String, algorithm: String) -> Result<Option<ClaimedKey>>;

    /// `(device_id, json)` of every device of the user that uploaded keys,
    /// by device id.
    async fn device_keys_of(&self, user_id: String) -> Result<Vec<(String, String)>>;

    /// `(key_type, json)` of the user's cross-signing keys.
    async fn cross_signing_keys_of(&self, user_id: String) -> Result<Vec<(String, String)>>;

    /// Stores cross-signing keys `(key_type, json)` and records the change;
    /// returns its position.
    async fn set_cross_signing_keys(&self, user_id: String, keys: Vec<(String, String)>) -> Result<i64>;

    /// Records that a remote user's device list changed; returns the position.
    async fn mark_remote_device_list_change(&self, user_id: String) -> Result<i64>;

    /// The position of the last change of the user's device list, if any.
    /// Every write that changes a local user's devices (a login, a rename,
    /// a deletion, keys) records one in the same write.
    async fn device_list_position(&self, user_id: String) -> Result<Option<i64>>;

    /// What this server knows of a remote user's device list: the stream
    /// id of the last update applied and the devices (a JSON object by
    /// device id), or `None` when it was never fetched.
    async fn remote_device_list(&self, user_id: String) -> Result<Option<(i64, String)>>;

    /// Replaces what is known of a remote user's device list and records
    /// the change, in one write; returns its position.
    async fn set_remote_device_list(&self, user_id: String, stream_id: i64, devices: String) -> Result<i64>;

    /// The device updates a device list change of a local user (at
    /// `position`) made, by stream id. Empty for a change of cross-signing
    /// keys only, or when later changes of the same devices replaced them.
    async fn device_updates_of_change(&self, user_id: String, position: i64) -> Result<Vec<DeviceUpdate>>;

    /// The stream id of a local user's last device update (0 before the
    /// first): what `GET /user/devices` answers as `stream_id`.
    async fn device_stream_id(&self, user_id: String) -> Result<i64>;

    /// Forgets what is known of a remote user's device list (it may be out
    /// of date); `remote_device_list` is `None` until it is stored again.
    async fn forget_remote_device_list(&self, user_id: String) -> Result<()>;

    /// The master and self-signing keys (JSON) stored with a remote user's
    /// device list.
    async fn remote_cross_signing_keys(&self, user_id: String) -> Result<(Option<String>, Option<String>)>;

    /// Replaces the cross-signing keys stored with a remote user's device
    /// list (nothing when the list is not stored).
    async fn set_remote_cross_signing_keys(
        &self,
        user_id: String,
        master_key: Option<String>,
        self_signing_key: Option<String>,
    ) -> Result<()>;

    /// Users, among `(users sharing a room with viewer) + viewer`, whose
    /// device lists changed in `(since, until]`.
    async fn device_list_changes(&self, viewer: String, since: i64, until: i64) -> Result<Vec<String>>;

    /// Queues to-device messages under one client transaction (device `*`:
    /// every device of the user). Returns their stream position and the
    /// recipients, or `None` when the transaction was seen before.
    async fn queue_to_device(
        &self,
        sender: String,
        sender_device: String,
        txn_id: String,
        messages: Vec<OutgoingToDevice>,
    ) -> Result<Option<(i64, Vec<String>)>>;

    /// Deletes messages the device acknowledged by syncing past `through`.
    async fn ack_to_device(&self, user_id: String, device_id: String, through: i64) -> Result<()>;

    /// `(user, device, message)` of the messages queued at `position` for
    /// `users`, in the order they were queued.
    async fn to_device_at(&self, position: i64, users: Vec<String>) -> Result<Vec<(String, String, ToDeviceRow)>>;

    /// Deletes the messages queued at `position` for `users` (handed to
    /// their appservice instead of their devices).
    async fn delete_to_device_at(&self, position: i64, users: Vec<String>) -> Result<()>;
}

/// Server-side key backup (client-server API, "Server-side key backups").
///
/// What every backend must guarantee, beyond those of [`super::Storage`]:
/// - A user's backup versions are numbered 1, 2, ... and a number is never
///   reused, even after its version is deleted.
/// - Writes to a version that is not the current one are refused
///   (`WrongVersion`, naming the current one) and change nothing.
/// - A stored session key is replaced only by a better one (spec:
///   verified beats unverified, then the lower `first_message_index`, then
///   the lower `forwarded_count`); each write that changes keys moves the
///   version's etag on.
#[async_trait]
pub trait KeyBackupStore: Send + Sync {
    /// Creates the next version and returns its number.
    async fn create_backup_version(&self, user_id: String, algorithm: String) -> Result<i64>;

    /// A backup version (the current one when `version` is `None`).
    async fn backup_version(&self, user_id: String, version: Option<i64>) -> Result<Option<BackupVersion>>;

    /// Replaces a version's auth data; false when there is no such version.
    async fn update_backup_version(&self, user_id: String, version: i64, algorithm: String) -> Result<bool>;

    /// Deletes a version and its keys; false when there is no such version.
    async fn delete_backup_version(&self, user_id: String, version: i64) -> Result<bool>;

    /// Stores session keys in the current version, each unless a better
    /// one is stored. Returns `(etag, count)`.
    async fn put_backup_keys(
        &self,
        user_id: String,
        version: i64,
        keys: Vec<BackupKeyRow>,
    ) -> Result<Result<(i64, i64), BackupError>>;

    /// Backed-up keys of a version, optionally of one room or session, by
    /// room and session.
    async fn backup_keys(
        &self,
        user_id: String,
        version: i64,
        room_id: Option<String>,
        session_id: Option<String>,
    ) -> Result<Vec<BackupKeyRow>>;

    /// Deletes backed-up keys of the current version; returns `(etag, count)`.
    async fn delete_backup_keys(
        &self,
        user_id: String,
        version: i64,
        room_id: Option<String>,
        session_id: Option<String>,
    ) -> Result<Result<(i64, i64), BackupError>>;
}
