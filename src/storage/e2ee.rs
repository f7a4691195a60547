//! Key material and message queues for end-to-end encryption: device keys,
//! one-time and fallback keys, cross-signing keys, device list changes,
//! to-device messages and server-side key backup.

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
