//! Accounts, devices, login sessions and profiles (client-server API,
//! "Client Authentication", "Device Management", "Profiles", "OpenID").
//! Owns password and token handling; storage sees only hashes.

pub mod openid;
pub mod password;
mod registration;
pub mod token;
pub mod uia;

pub use registration::RegisterRequest;

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use ruma::{
    OwnedDeviceId, OwnedServerName, OwnedUserId, UserId,
    api::client::uiaa::{AuthData, AuthFlow, AuthType, UiaaInfo, UserIdentifier},
    api::error::ErrorKind,
};

use self::uia::{StageResult, UiaCompleted, UiaSessions};
use crate::{
    commit::{Commit, CommitPipeline},
    config::{Config, RegistrationMode},
    storage::{
        Storage, StorageError, now_ms,
        users::{CreateUserOutcome, DeviceRecord, NewTokens, NewUser, TokenOwner},
    },
};

#[derive(Debug, thiserror::Error)]
pub enum UsersError {
    #[error("user-interactive authentication is needed")]
    Uia(Box<UiaaInfo>),
    #[error("{0}")]
    InvalidUsername(String),
    #[error("the user id is already taken")]
    UserInUse,
    #[error("registration is closed on this server")]
    RegistrationClosed,
    #[error("guest accounts may not use this")]
    GuestAccessForbidden,
    #[error("{0}")]
    WeakPassword(String),
    #[error("invalid username or password")]
    InvalidCredentials,
    #[error("this account has been deactivated")]
    UserDeactivated,
    #[error("unknown access token")]
    UnknownToken { soft_logout: bool },
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    InvalidParam(String),
    #[error("{0}")]
    Unrecognized(String),
    #[error(transparent)]
    Storage(#[from] StorageError),
}

pub type Result<T, E = UsersError> = std::result::Result<T, E>;

/// An authenticated request's identity.
#[derive(Debug, Clone)]
pub struct Session {
    pub user_id: OwnedUserId,
    pub device_id: OwnedDeviceId,
    pub is_admin: bool,
    /// A guest account (client-server API, "Guest Access"): the HTTP edge
    /// lets it use only the endpoints guests may.
    pub is_guest: bool,
    /// The application service acting, when the request carried its
    /// `as_token` (the user is its sender or one of its users).
    pub appservice_id: Option<String>,
}

/// Tokens issued to a device at login, registration or refresh.
#[derive(Debug, Clone)]
pub struct IssuedTokens {
    pub user_id: OwnedUserId,
    pub device_id: OwnedDeviceId,
    pub access_token: String,
    pub refresh_token: Option<String>,
    pub expires_in: Option<Duration>,
}

pub struct Users {
    db: Arc<dyn Storage>,
    config: Arc<Config>,
    uia: UiaSessions,
    /// Where device list changes (a login, a rename, a deletion) are
    /// announced: syncs of users sharing a room wake, other servers learn.
    commits: Arc<CommitPipeline>,
}

impl Users {
    pub fn new(db: Arc<dyn Storage>, config: Arc<Config>, commits: Arc<CommitPipeline>) -> Self {
        Self { db, config, uia: UiaSessions::default(), commits }
    }

    /// Announces a change of the user's devices, which the write that made
    /// it recorded (storage records it with every device write): users
    /// sharing a room see the user in `device_lists.changed`.
    async fn device_list_changed(&self, user_id: &UserId) -> Result<()> {
        let Some(position) = self.db.device_list_position(user_id.to_string()).await? else {
            return Ok(());
        };
        let audience = self.db.users_sharing_rooms(user_id.to_string()).await?;
        let audience: Vec<OwnedUserId> = audience.into_iter().filter_map(|u| OwnedUserId::try_from(u).ok()).collect();
        self.commits.committed(Commit::DeviceList { position, user: user_id, audience: &audience }).await;
        Ok(())
    }

    fn server_name(&self) -> &OwnedServerName {
        &self.config.server.server_name
    }

    /// Runs one step of a UIA flow. `user` binds the session to an existing
    /// account (device deletion, password change, deactivation), and
    /// `operation` to what it authorises: a session started to delete one
    /// device cannot delete another (as Synapse checks).
    pub async fn authenticate(
        &self,
        auth: Option<&AuthData>,
        flows: Vec<AuthFlow>,
        user: Option<&OwnedUserId>,
        operation: &str,
    ) -> Result<UiaCompleted> {
        let Some(auth) = auth else {
            return Err(UsersError::Uia(Box::new(self.uia.start(flows, user.cloned(), operation))));
        };
        // A client may answer the first stage without having asked for a
        // session; start one for it.
        let session = match auth.session() {
            Some(s) if self.uia.is_usable(s, user, operation) => s.to_owned(),
            Some(_) => {
                return Err(UsersError::Forbidden("unknown or expired user-interactive auth session".into()));
            }
            None => self.uia.start(flows.clone(), user.cloned(), operation).session.expect("start sets a session"),
        };
        let allowed = |t: &AuthType| flows.iter().any(|f| f.stages.contains(t));
        let (stage, result) = match auth {
            AuthData::Dummy(_) if allowed(&AuthType::Dummy) => {
                (AuthType::Dummy, StageResult::Passed { registration_token: None })
            }
            AuthData::RegistrationToken(t) if allowed(&AuthType::RegistrationToken) => {
                let hash = token::hash(&t.token);
                let result = if self.db.registration_token_valid(hash.clone()).await? {
                    StageResult::Passed { registration_token: Some(hash) }
                } else {
                    StageResult::Failed(ErrorKind::Forbidden, "invalid registration token".into())
                };
                (AuthType::RegistrationToken, result)
            }
            AuthData::Password(p) if allowed(&AuthType::Password) => {
                let result = match self.check_password_identity(&p.identifier, &p.password, user).await? {
                    true => StageResult::Passed { registration_token: None },
                    false => StageResult::Failed(ErrorKind::Forbidden, "invalid password".into()),
                };
                (AuthType::Password, result)
            }
            other => {
                let stage = other.auth_type().unwrap_or_else(|| AuthType::from("unknown"));
                (stage, StageResult::Failed(ErrorKind::Unrecognized, "this stage is not offered here".into()))
            }
        };
        self.uia.record(&session, &flows, stage, result).map_err(UsersError::Uia)
    }

    async fn check_password_identity(
        &self,
        identifier: &UserIdentifier,
        password: &str,
        expected: Option<&OwnedUserId>,
    ) -> Result<bool> {
        let UserIdentifier::Matrix(id) = identifier else {
            return Ok(false);
        };
        let Some(user_id) = self.resolve_user(&id.user) else {
            return Ok(false);
        };
        if expected.is_some_and(|e| *e != user_id) {
            // Someone else's password proves nothing about this account.
            return Err(UsersError::Forbidden("the user to authenticate is not the user making the request".into()));
        }
        self.verify_user_password(&user_id, password).await
    }

    /// Reads a login identifier: a full user id or a bare localpart.
    fn resolve_user(&self, user: &str) -> Option<OwnedUserId> {
        if user.starts_with('@') {
            UserId::parse(user.to_lowercase()).ok().or_else(|| UserId::parse(user).ok())
        } else {
            UserId::parse_with_server_name(user.to_lowercase(), self.server_name()).ok()
        }
    }

    async fn verify_user_password(&self, user_id: &OwnedUserId, password: &str) -> Result<bool> {
        let Some(record) = self.db.get_user(user_id.clone()).await? else {
            // Spend the same time as a real check so response timing does
            // not reveal which user names exist.
            let _ = password::verify_password(password.to_owned(), DUMMY_HASH.to_owned()).await;
            return Ok(false);
        };
        if record.deactivated {
            return Err(UsersError::UserDeactivated);
        }
        let Some(hash) = record.password_hash else {
            return Ok(false);
        };
        Ok(password::verify_password(password.to_owned(), hash).await)
    }

    /// `m.login.password` login.
    pub async fn login_with_password(
        &self,
        user: &str,
        password: &str,
        device_id: Option<OwnedDeviceId>,
        display_name: Option<String>,
        client_ip: Option<String>,
        refresh: bool,
    ) -> Result<IssuedTokens> {
        let user_id = self.resolve_user(user).ok_or(UsersError::InvalidCredentials)?;
        if user_id.server_name() != self.server_name() {
            return Err(UsersError::InvalidCredentials);
        }
        if !self.verify_user_password(&user_id, password).await? {
            return Err(UsersError::InvalidCredentials);
        }
        self.issue_tokens(user_id, device_id, display_name, client_ip, refresh).await
    }

    async fn issue_tokens(
        &self,
        user_id: OwnedUserId,
        device_id: Option<OwnedDeviceId>,
        display_name: Option<String>,
        client_ip: Option<String>,
        refresh: bool,
    ) -> Result<IssuedTokens> {
        let device_id = device_id.unwrap_or_else(|| token::generate_device_id().into());
        let (tokens, issued) = self.new_tokens(user_id.clone(), device_id.clone(), refresh);
        self.db.login_device(user_id.clone(), device_id, display_name, client_ip, tokens).await?;
        self.device_list_changed(&user_id).await?;
        Ok(issued)
    }

    fn new_tokens(&self, user_id: OwnedUserId, device_id: OwnedDeviceId, refresh: bool) -> (NewTokens, IssuedTokens) {
        let access_token = token::generate("px");
        let refresh_token = refresh.then(|| token::generate("pxr"));
        let expires_in = refresh.then_some(self.config.auth.refreshable_access_token_lifetime);
        let tokens = NewTokens {
            access_hash: token::hash(&access_token),
            access_expires_ts: expires_in.map(|d| now_ms() + d.as_millis() as i64),
            refresh_hash: refresh_token.as_deref().map(token::hash),
        };
        (tokens, IssuedTokens { user_id, device_id, access_token, refresh_token, expires_in })
    }

    /// `POST /refresh`: a new access token (and refresh token) for the device.
    pub async fn refresh(&self, refresh_token: &str) -> Result<IssuedTokens> {
        let placeholder_user: OwnedUserId =
            UserId::parse_with_server_name("refresh", self.server_name()).expect("a valid localpart");
        let (tokens, issued) = self.new_tokens(placeholder_user, "PLACEHOLDER".into(), true);
        match self.db.rotate_refresh_token(token::hash(refresh_token), tokens).await? {
            Some((user_id, device_id)) => Ok(IssuedTokens { user_id, device_id, ..issued }),
            None => Err(UsersError::UnknownToken { soft_logout: false }),
        }
    }

    /// Finds who holds an access token.
    pub async fn authenticate_token(&self, access_token: &str) -> Result<Session> {
        let owner: Option<TokenOwner> = self.db.find_access_token(token::hash(access_token)).await?;
        let Some(owner) = owner else {
            return Err(UsersError::UnknownToken { soft_logout: false });
        };
        if owner.expires_ts.is_some_and(|e| e <= now_ms()) {
            return Err(UsersError::UnknownToken { soft_logout: true });
        }
        Ok(Session {
            user_id: owner.user_id,
            device_id: owner.device_id,
            is_admin: owner.is_admin,
            is_guest: owner.is_guest,
            appservice_id: None,
        })
    }

    /// `/logout`: the device and its tokens go.
    pub async fn logout(&self, session: &Session) -> Result<()> {
        self.db.delete_devices(session.user_id.clone(), vec![session.device_id.clone()]).await?;
        self.device_list_changed(&session.user_id).await
    }

    /// `/logout/all`.
    pub async fn logout_all(&self, user_id: &OwnedUserId) -> Result<()> {
        self.db.delete_other_devices(user_id.clone(), None).await?;
        self.device_list_changed(user_id).await
    }

    fn password_flows() -> Vec<AuthFlow> {
        vec![AuthFlow::new(vec![AuthType::Password])]
    }

    pub async fn list_devices(&self, user_id: &OwnedUserId) -> Result<Vec<DeviceRecord>> {
        Ok(self.db.list_devices(user_id.clone()).await?)
    }

    /// `GET /admin/whois/{userId}` (client-server API, "Server
    /// administration"): the user's devices with what is recorded of their
    /// last use, for a server admin or the user themself. Only users of
    /// this server are known here.
    pub async fn whois(&self, session: &Session, user_id: &OwnedUserId) -> Result<Vec<DeviceRecord>> {
        if !session.is_admin && session.user_id != *user_id {
            return Err(UsersError::Forbidden("only server admins may look up other users".into()));
        }
        if user_id.server_name() != self.server_name() {
            return Err(UsersError::InvalidParam("only users of this server can be looked up".into()));
        }
        if !self.exists(user_id).await? {
            return Err(UsersError::NotFound("no such user".into()));
        }
        self.list_devices(user_id).await
    }

    pub async fn get_device(&self, user_id: &OwnedUserId, device_id: &OwnedDeviceId) -> Result<DeviceRecord> {
        self.db
            .get_device(user_id.clone(), device_id.clone())
            .await?
            .ok_or_else(|| UsersError::NotFound("no such device".into()))
    }

    pub async fn rename_device(
        &self,
        user_id: &OwnedUserId,
        device_id: &OwnedDeviceId,
        display_name: Option<String>,
    ) -> Result<()> {
        if display_name.as_ref().is_some_and(|n| n.len() > 512) {
            return Err(UsersError::InvalidParam("the display name is too long".into()));
        }
        match self.db.rename_device(user_id.clone(), device_id.clone(), display_name).await? {
            true => self.device_list_changed(user_id).await,
            false => Err(UsersError::NotFound("no such device".into())),
        }
    }

    /// Deletes devices after the user re-enters their password.
    pub async fn delete_devices(
        &self,
        session: &Session,
        devices: Vec<OwnedDeviceId>,
        auth: Option<&AuthData>,
    ) -> Result<()> {
        let operation = format!("delete devices {devices:?}");
        self.authenticate(auth, Self::password_flows(), Some(&session.user_id), &operation).await?;
        self.db.delete_devices(session.user_id.clone(), devices).await?;
        self.device_list_changed(&session.user_id).await
    }

    /// MSC4190: an appservice creates a device of one of its users without
    /// a login (or renames it if it exists). The device's access token is
    /// random and never shown: the appservice acts with its own token.
    pub async fn put_device_without_login(
        &self,
        user_id: &OwnedUserId,
        device_id: &OwnedDeviceId,
        display_name: Option<String>,
    ) -> Result<()> {
        if self.db.get_device(user_id.clone(), device_id.clone()).await?.is_some() {
            return self.rename_device(user_id, device_id, display_name).await;
        }
        self.issue_tokens(user_id.clone(), Some(device_id.clone()), display_name, None, false).await?;
        Ok(())
    }

    /// MSC4190: an appservice deletes devices of its users without
    /// user-interactive auth.
    pub async fn delete_devices_without_uia(&self, user_id: &OwnedUserId, devices: Vec<OwnedDeviceId>) -> Result<()> {
        self.db.delete_devices(user_id.clone(), devices).await?;
        self.device_list_changed(user_id).await
    }

    /// Changes the password; other devices are logged out unless
    /// `logout_devices` is false.
    pub async fn change_password(
        &self,
        session: &Session,
        new_password: String,
        logout_devices: bool,
        auth: Option<&AuthData>,
    ) -> Result<()> {
        self.check_password_strength(&new_password)?;
        self.authenticate(auth, Self::password_flows(), Some(&session.user_id), "change password").await?;
        let hash = password::hash_password(new_password).await;
        self.db.set_password_hash(session.user_id.clone(), hash).await?;
        if logout_devices {
            self.db.delete_other_devices(session.user_id.clone(), Some(session.device_id.clone())).await?;
            self.device_list_changed(&session.user_id).await?;
        }
        Ok(())
    }

    /// Deactivates the account after the user re-enters their password.
    pub async fn deactivate(&self, session: &Session, auth: Option<&AuthData>) -> Result<()> {
        self.authenticate(auth, Self::password_flows(), Some(&session.user_id), "deactivate").await?;
        self.db.deactivate_user(session.user_id.clone()).await?;
        self.device_list_changed(&session.user_id).await?;
        tracing::info!(user_id = %session.user_id, "deactivated an account");
        Ok(())
    }

    /// Whether a registration token may still be used (client-server API,
    /// "Token-authenticated registration").
    pub async fn registration_token_valid(&self, token: &str) -> Result<bool> {
        Ok(self.db.registration_token_valid(token::hash(token)).await?)
    }

    /// The whole profile of a local user.
    pub async fn get_profile(&self, user_id: &OwnedUserId) -> Result<BTreeMap<String, serde_json::Value>> {
        match self.db.get_user(user_id.clone()).await? {
            Some(_) => Ok(self.db.get_profile(user_id.clone()).await?),
            None => Err(UsersError::NotFound("profile not found".into())),
        }
    }

    /// Sets or removes one field of the caller's own profile.
    pub async fn set_profile_field(
        &self,
        session: &Session,
        user_id: &OwnedUserId,
        field: String,
        value: Option<serde_json::Value>,
    ) -> Result<()> {
        if *user_id != session.user_id && !session.is_admin {
            return Err(UsersError::Forbidden("you cannot change another user's profile".into()));
        }
        if field.len() > 255 {
            return Err(UsersError::InvalidParam("profile field names are at most 255 bytes".into()));
        }
        if let Some(v) = &value {
            let size = v.to_string().len();
            if size > 64 * 1024 {
                return Err(UsersError::InvalidParam("the profile value is too large".into()));
            }
        }
        self.db.set_profile_field(user_id.clone(), field, value).await?;
        Ok(())
    }

    /// Whether an account of this id exists.
    pub async fn exists(&self, user_id: &UserId) -> Result<bool> {
        Ok(self.db.get_user(user_id.to_owned()).await?.is_some())
    }

    /// Creates an account without a password unless it exists (an
    /// appservice's sender user, at start).
    pub async fn ensure_user(&self, user_id: &UserId) -> Result<()> {
        if self.exists(user_id).await? {
            return Ok(());
        }
        match self.create_account(user_id.to_owned(), None).await {
            Ok(()) | Err(UsersError::UserInUse) => Ok(()),
            Err(e) => Err(e),
        }
    }
}

/// An argon2 hash of a random string, used to spend the time of a password
/// check when the user does not exist.
const DUMMY_HASH: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$0KMoMIxbaYo9ZmxVVRlCRpXtSwcm/RS7CmKWCe+MpSg";
