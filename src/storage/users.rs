//! Accounts, devices, access and refresh tokens, registration tokens and
//! profile fields. Tokens arrive here already hashed.

use ruma::{OwnedDeviceId, OwnedUserId};

/// A stored account.
#[derive(Debug, Clone)]
pub struct UserRecord {
    pub user_id: OwnedUserId,
    pub password_hash: Option<String>,
    pub is_admin: bool,
    pub deactivated: bool,
}

/// A stored device.
#[derive(Debug, Clone)]
pub struct DeviceRecord {
    pub device_id: OwnedDeviceId,
    pub display_name: Option<String>,
    pub last_seen_ts: Option<i64>,
    pub last_seen_ip: Option<String>,
}

/// Who an access token belongs to.
#[derive(Debug, Clone)]
pub struct TokenOwner {
    pub user_id: OwnedUserId,
    pub device_id: OwnedDeviceId,
    pub expires_ts: Option<i64>,
    pub is_admin: bool,
}

/// The tokens handed out when a device logs in.
#[derive(Debug, Clone)]
pub struct NewTokens {
    pub access_hash: Vec<u8>,
    pub access_expires_ts: Option<i64>,
    pub refresh_hash: Option<Vec<u8>>,
}

/// What a new account starts with.
#[derive(Debug, Clone)]
pub struct NewUser {
    pub user_id: OwnedUserId,
    pub password_hash: Option<String>,
    pub is_admin: bool,
    pub displayname: Option<String>,
    /// A registration token (hashed) to consume in the same transaction.
    pub registration_token: Option<Vec<u8>>,
}

#[derive(Debug, PartialEq, Eq)]
pub enum CreateUserOutcome {
    Created,
    UserInUse,
    TokenInvalid,
}
