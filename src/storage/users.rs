//! Accounts, devices, access and refresh tokens, registration tokens and
//! profile fields. Tokens arrive here already hashed.

use std::collections::BTreeMap;

use async_trait::async_trait;
use ruma::{OwnedDeviceId, OwnedUserId};

use super::Result;

/// Accounts, devices, tokens, registration tokens and profiles.
///
/// What every backend must guarantee, beyond those of [`super::Storage`]:
/// - `create_user` checks that the user id is free, consumes the
///   registration token and creates the account in one step: of two
///   concurrent registrations of one id exactly one is `Created`, and a
///   token allowing `n` uses admits at most `n` accounts.
/// - Token retirement: once a write that removes access tokens has
///   returned (`login_device` on a known device, `rotate_refresh_token`,
///   `delete_devices`, `delete_other_devices`, `deactivate_user`),
///   `find_access_token` never finds a token it removed, nor any token of
///   a deactivated account. A backend that caches lookups retires its
///   cache in the same step.
/// - Tokens are kept and looked up only as the hashes given.
/// - A write that removes devices removes their pushers (and what those
///   had queued) in the same step (`PusherStore`).
/// - `find_openid_token` never finds a token past its expiry, nor one of a
///   deactivated account; expired OpenID tokens are deleted eventually
///   (the SQLite backend does it in `insert_openid_token`'s write).
#[async_trait]
pub trait AccountStore: Send + Sync {
    /// Creates an account (with its display name, if any), consuming a
    /// registration token if one is given; both happen or neither.
    async fn create_user(&self, new: NewUser) -> Result<CreateUserOutcome>;

    async fn get_user(&self, user_id: OwnedUserId) -> Result<Option<UserRecord>>;

    async fn set_password_hash(&self, user_id: OwnedUserId, hash: String) -> Result<()>;

    /// The largest numeric localpart among guest accounts (0 when there is
    /// none): guests are numbered, as Synapse numbers them.
    async fn last_guest_number(&self) -> Result<u64>;

    /// Turns a guest account into a full one with this password hash;
    /// false (and nothing changed) when the account is not a guest's. The
    /// account's access tokens then open full sessions: a backend that
    /// caches token lookups retires its cache in the same step.
    async fn upgrade_guest(&self, user_id: OwnedUserId, password_hash: Option<String>) -> Result<bool>;

    /// Marks the account deactivated (its password gone) and removes its
    /// cross-signing keys and every device, with the device's tokens and
    /// end-to-end keys.
    async fn deactivate_user(&self, user_id: OwnedUserId) -> Result<()>;

    /// Creates the device if it is new (else records when and from where it
    /// was seen; its name stays), replaces any access and refresh token it
    /// had, stores the new tokens, and records a device list change of the
    /// user (`E2eeStore::device_list_position`).
    async fn login_device(
        &self,
        user_id: OwnedUserId,
        device_id: OwnedDeviceId,
        display_name: Option<String>,
        ip: Option<String>,
        tokens: NewTokens,
    ) -> Result<()>;

    /// Finds the owner of a hashed access token, if the token exists and the
    /// account is active.
    async fn find_access_token(&self, hash: Vec<u8>) -> Result<Option<TokenOwner>>;

    /// Swaps a refresh token for new tokens on the same device (the
    /// device's old access token goes too). Returns the device's owner, or
    /// `None` when the refresh token is unknown; a refresh token works once.
    async fn rotate_refresh_token(
        &self,
        refresh_hash: Vec<u8>,
        tokens: NewTokens,
    ) -> Result<Option<(OwnedUserId, OwnedDeviceId)>>;

    /// The user's devices, oldest first.
    async fn list_devices(&self, user_id: OwnedUserId) -> Result<Vec<DeviceRecord>>;

    async fn get_device(&self, user_id: OwnedUserId, device_id: OwnedDeviceId) -> Result<Option<DeviceRecord>>;

    /// Returns whether the device exists; when it does, records a device
    /// list change of the user in the same write.
    async fn rename_device(
        &self,
        user_id: OwnedUserId,
        device_id: OwnedDeviceId,
        display_name: Option<String>,
    ) -> Result<bool>;

    /// Deletes devices with their tokens, end-to-end keys and pushers, and
    /// records a device list change of the user. Returns how many existed.
    async fn delete_devices(&self, user_id: OwnedUserId, device_ids: Vec<OwnedDeviceId>) -> Result<usize>;

    /// Deletes every device of the user except `keep`, like `delete_devices`.
    async fn delete_other_devices(&self, user_id: OwnedUserId, keep: Option<OwnedDeviceId>) -> Result<usize>;

    /// Every profile field of the user, by name.
    async fn get_profile(&self, user_id: OwnedUserId) -> Result<BTreeMap<String, serde_json::Value>>;

    /// Sets (`Some`) or removes (`None`) one profile field.
    async fn set_profile_field(
        &self,
        user_id: OwnedUserId,
        field: String,
        value: Option<serde_json::Value>,
    ) -> Result<()>;

    /// Stores a registration token (hashed); an existing one is left as it is.
    async fn insert_registration_token(
        &self,
        hash: Vec<u8>,
        uses_allowed: Option<i64>,
        expiry_ts: Option<i64>,
    ) -> Result<()>;

    /// Whether the token exists, has uses left and has not expired.
    async fn registration_token_valid(&self, hash: Vec<u8>) -> Result<bool>;

    /// Stores an OpenID token (hashed) of `user_id`, valid until
    /// `expires_ts` (Unix ms).
    async fn insert_openid_token(&self, hash: Vec<u8>, user_id: OwnedUserId, expires_ts: i64) -> Result<()>;

    /// The owner of a hashed OpenID token still valid at `now_ts` (Unix
    /// ms), if the account is active.
    async fn find_openid_token(&self, hash: Vec<u8>, now_ts: i64) -> Result<Option<OwnedUserId>>;
}

/// A stored account.
#[derive(Debug, Clone)]
pub struct UserRecord {
    pub user_id: OwnedUserId,
    pub password_hash: Option<String>,
    pub is_admin: bool,
    pub deactivated: bool,
    /// A guest account (client-server API, "Guest Access").
    pub is_guest: bool,
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
    pub is_guest: bool,
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
    /// A guest account, limited to the endpoints guests may use.
    pub is_guest: bool,
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
