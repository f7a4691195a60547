//! Registration (client-server API, "Account registration and management"):
//! user names and ids for new accounts, the registration flows and their
//! sessions (a repeat answered with the account made), guest accounts and
//! their upgrade, accounts an application service or the server itself
//! creates, and registration tokens.

use super::*;

/// What a registration asks for.
#[derive(Debug, Default, Clone)]
pub struct RegisterRequest {
    pub username: Option<String>,
    pub password: Option<String>,
    pub device_id: Option<OwnedDeviceId>,
    pub initial_device_display_name: Option<String>,
    pub inhibit_login: bool,
    pub refresh_token: bool,
    pub client_ip: Option<String>,
}

impl RegisterRequest {
    /// A request that carries only `auth`: it goes on with the parameters
    /// its session remembers.
    pub(super) fn has_no_parameters(&self) -> bool {
        self.username.is_none()
            && self.password.is_none()
            && self.device_id.is_none()
            && self.initial_device_display_name.is_none()
            && !self.inhibit_login
            && !self.refresh_token
    }
}

impl Users {
    /// Turns a requested localpart into a user id, per the spec's user id
    /// grammar (historical ids are not accepted for new accounts).
    pub fn user_id_for_new_account(&self, localpart: &str) -> Result<OwnedUserId> {
        let localpart = localpart.to_lowercase();
        let invalid = || UsersError::InvalidUsername(format!("`{localpart}` is not a valid user name"));
        if localpart.is_empty() {
            return Err(invalid());
        }
        let user_id = UserId::parse_with_server_name(localpart.as_str(), self.server_name()).map_err(|_| invalid())?;
        if user_id.validate_strict().is_err() {
            return Err(invalid());
        }
        Ok(user_id)
    }

    /// Whether a username could be registered now.
    pub async fn username_available(&self, localpart: &str) -> Result<bool> {
        let user_id = self.user_id_for_new_account(localpart)?;
        if self.db.get_user(user_id).await?.is_some() {
            return Err(UsersError::UserInUse);
        }
        Ok(true)
    }

    /// The UIA flows registration needs in the configured mode.
    fn registration_flows(&self) -> Result<Vec<AuthFlow>> {
        match self.config.registration.mode {
            RegistrationMode::Open => Ok(vec![AuthFlow::new(vec![AuthType::Dummy])]),
            RegistrationMode::Token => Ok(vec![AuthFlow::new(vec![AuthType::RegistrationToken])]),
            RegistrationMode::Closed => Err(UsersError::RegistrationClosed),
        }
    }

    /// Registers an account after the UIA flow completes, and answers the
    /// account's id with its first device's tokens (none after
    /// `inhibit_login`). A registration session remembers the parameters
    /// of the request that started it, so later requests may carry only
    /// `auth`; once it made an account, the same request again logs the
    /// same device in again rather than failing (as Synapse: a client whose
    /// answer was lost may retry).
    pub async fn register(
        &self,
        req: RegisterRequest,
        auth: Option<&AuthData>,
    ) -> Result<(OwnedUserId, Option<IssuedTokens>)> {
        let flows = self.registration_flows()?;
        let session = auth.and_then(AuthData::session);
        let req = match session {
            Some(session) => {
                if let Some(done) = self.uia.registered(session) {
                    return self.register_again(done, req, session).await;
                }
                self.uia.registration_params(session, req)
            }
            None => req,
        };
        let user_id = match &req.username {
            Some(name) => self.user_id_for_new_account(name)?,
            None => self.random_user_id().await?,
        };
        if user_id.localpart().bytes().all(|b| b.is_ascii_digit()) {
            // As Synapse: numbered ids are those of guests (`register_guest`).
            return Err(UsersError::InvalidUsername("numeric user ids are reserved for guest accounts".into()));
        }
        if req.username.is_some() && self.db.get_user(user_id.clone()).await?.is_some() {
            return Err(UsersError::UserInUse);
        }
        if let Some(p) = &req.password {
            self.check_password_strength(p)?;
        }
        let completed = match self.authenticate(auth, flows, None, uia::REGISTER).await {
            Ok(completed) => completed,
            Err(UsersError::Uia(info)) => {
                if let Some(started) = &info.session {
                    self.uia.remember_registration(started, &req);
                }
                return Err(UsersError::Uia(info));
            }
            Err(e) => return Err(e),
        };

        let password_hash = match req.password.clone() {
            Some(p) => Some(password::hash_password(p).await),
            None => None,
        };
        let outcome = self
            .db
            .create_user(NewUser {
                user_id: user_id.clone(),
                is_guest: false,
                password_hash,
                is_admin: false,
                displayname: Some(user_id.localpart().to_owned()),
                registration_token: completed.registration_token,
            })
            .await?;
        match outcome {
            CreateUserOutcome::Created => {}
            CreateUserOutcome::UserInUse => return Err(UsersError::UserInUse),
            CreateUserOutcome::TokenInvalid => {
                return Err(UsersError::Forbidden("the registration token is no longer valid".into()));
            }
        }
        tracing::info!(user_id = %user_id, "registered a new account");
        let tokens = self.tokens_unless_inhibited(user_id.clone(), req).await?;
        if let Some(session) = session {
            let device_id = tokens.as_ref().map(|t| t.device_id.clone());
            self.uia.set_registered(session, uia::Registered { user_id: user_id.clone(), device_id });
        }
        Ok((user_id, tokens))
    }

    /// A registration request repeated on a session that already made an
    /// account: the same account, with new tokens for the device the first
    /// request logged in (a new one if it was inhibited then and is not
    /// now).
    async fn register_again(
        &self,
        done: uia::Registered,
        req: RegisterRequest,
        session: &str,
    ) -> Result<(OwnedUserId, Option<IssuedTokens>)> {
        let req = self.uia.registration_params(session, req);
        let device_id = done.device_id.or(req.device_id.clone());
        let req = RegisterRequest { device_id, ..req };
        let tokens = self.tokens_unless_inhibited(done.user_id.clone(), req).await?;
        if let Some(t) = &tokens {
            let registered = uia::Registered { user_id: done.user_id.clone(), device_id: Some(t.device_id.clone()) };
            self.uia.set_registered(session, registered);
        }
        Ok((done.user_id, tokens))
    }

    /// `POST /register?kind=guest` (client-server API, "Guest Access"): a
    /// guest account, numbered after the last one, with a device and an
    /// access token. Only when `registration.allow_guest_access` is on,
    /// whatever the registration mode.
    pub async fn register_guest(&self, req: RegisterRequest) -> Result<IssuedTokens> {
        if !self.config.registration.allow_guest_access {
            return Err(UsersError::GuestAccessForbidden);
        }
        let mut number = self.db.last_guest_number().await?;
        // Two guests registering at once may pick the same number; the
        // second takes the next one.
        for _ in 0..16 {
            number += 1;
            let user_id = self.user_id_for_new_account(&number.to_string())?;
            let outcome = self
                .db
                .create_user(NewUser {
                    user_id: user_id.clone(),
                    is_guest: true,
                    password_hash: None,
                    is_admin: false,
                    displayname: None,
                    registration_token: None,
                })
                .await?;
            if outcome == CreateUserOutcome::Created {
                tracing::info!(user_id = %user_id, "registered a guest account");
                // Spec: the server picks the guest's device id, whatever
                // the request says.
                return self.issue_tokens(user_id, None, req.initial_device_display_name, req.client_ip, false).await;
            }
        }
        Err(UsersError::UserInUse)
    }

    /// Upgrades a guest account to a full one (client-server API, "Guest
    /// Access": `/register` with the guest's access token as
    /// `guest_access_token` and its localpart as `username`), after the
    /// registration's user-interactive auth. The user id stays; the guest's
    /// devices and tokens stay and now open full sessions; the response
    /// logs in a new device unless `inhibit_login`.
    pub async fn upgrade_guest(
        &self,
        guest_access_token: &str,
        req: RegisterRequest,
        auth: Option<&AuthData>,
    ) -> Result<(OwnedUserId, Option<IssuedTokens>)> {
        let flows = self.registration_flows()?;
        let guest = self.authenticate_token(guest_access_token).await?;
        if !guest.is_guest {
            return Err(UsersError::Forbidden("`guest_access_token` is not a guest's access token".into()));
        }
        let Some(name) = req.username.as_deref() else {
            return Err(UsersError::InvalidParam("upgrading a guest needs its localpart as `username`".into()));
        };
        if self.user_id_for_new_account(name)? != guest.user_id {
            return Err(UsersError::InvalidUsername("`username` must be the guest's localpart".into()));
        }
        if let Some(p) = &req.password {
            self.check_password_strength(p)?;
        }
        self.authenticate(auth, flows, None, uia::REGISTER).await?;
        let password_hash = match req.password.clone() {
            Some(p) => Some(password::hash_password(p).await),
            None => None,
        };
        if !self.db.upgrade_guest(guest.user_id.clone(), password_hash).await? {
            return Err(UsersError::UserInUse);
        }
        tracing::info!(user_id = %guest.user_id, "upgraded a guest account");
        let tokens = self.tokens_unless_inhibited(guest.user_id.clone(), req).await?;
        Ok((guest.user_id, tokens))
    }

    /// A new account's first device and tokens, unless the registration
    /// asked for none (`inhibit_login`).
    async fn tokens_unless_inhibited(
        &self,
        user_id: OwnedUserId,
        req: RegisterRequest,
    ) -> Result<Option<IssuedTokens>> {
        if req.inhibit_login {
            return Ok(None);
        }
        let tokens = self
            .issue_tokens(user_id, req.device_id, req.initial_device_display_name, req.client_ip, req.refresh_token)
            .await?;
        Ok(Some(tokens))
    }

    async fn random_user_id(&self) -> Result<OwnedUserId> {
        loop {
            let localpart = token::generate_device_id().to_lowercase();
            let user_id = self.user_id_for_new_account(&localpart)?;
            if self.db.get_user(user_id.clone()).await?.is_none() {
                return Ok(user_id);
            }
        }
    }

    pub(super) fn check_password_strength(&self, password: &str) -> Result<()> {
        let min = self.config.auth.min_password_length;
        if password.chars().count() < min {
            return Err(UsersError::WeakPassword(format!("the password must be at least {min} characters")));
        }
        if password.len() > 512 {
            return Err(UsersError::WeakPassword("the password is too long".into()));
        }
        Ok(())
    }

    /// Creates a user directly (the `plexus user add` command).
    pub async fn create_user_directly(
        &self,
        localpart: &str,
        password: Option<String>,
        is_admin: bool,
    ) -> Result<OwnedUserId> {
        let user_id = self.user_id_for_new_account(localpart)?;
        let password_hash = match password {
            Some(p) => Some(password::hash_password(p).await),
            None => None,
        };
        let outcome = self
            .db
            .create_user(NewUser {
                user_id: user_id.clone(),
                is_guest: false,
                password_hash,
                is_admin,
                displayname: Some(user_id.localpart().to_owned()),
                registration_token: None,
            })
            .await?;
        match outcome {
            CreateUserOutcome::Created => Ok(user_id),
            _ => Err(UsersError::UserInUse),
        }
    }

    /// `m.login.application_service` registration: the appservice vouches
    /// for the user (its namespace was checked by the caller), so there is
    /// no user-interactive auth and no password.
    pub async fn register_appservice_user(
        &self,
        user_id: OwnedUserId,
        req: RegisterRequest,
    ) -> Result<Option<IssuedTokens>> {
        if self.exists(&user_id).await? {
            return Err(UsersError::UserInUse);
        }
        self.create_account(user_id.clone(), None).await?;
        tracing::info!(user_id = %user_id, "an application service registered an account");
        self.tokens_unless_inhibited(user_id, req).await
    }

    /// `m.login.application_service` login of an existing user of the
    /// appservice's namespaces.
    pub async fn login_appservice_user(
        &self,
        user_id: OwnedUserId,
        device_id: Option<OwnedDeviceId>,
        display_name: Option<String>,
        client_ip: Option<String>,
        refresh: bool,
    ) -> Result<IssuedTokens> {
        match self.db.get_user(user_id.clone()).await? {
            None => return Err(UsersError::InvalidCredentials),
            Some(record) if record.deactivated => return Err(UsersError::UserDeactivated),
            Some(_) => {}
        }
        self.issue_tokens(user_id, device_id, display_name, client_ip, refresh).await
    }

    pub(super) async fn create_account(&self, user_id: OwnedUserId, password_hash: Option<String>) -> Result<()> {
        let outcome = self
            .db
            .create_user(NewUser {
                user_id: user_id.clone(),
                is_guest: false,
                password_hash,
                is_admin: false,
                displayname: Some(user_id.localpart().to_owned()),
                registration_token: None,
            })
            .await?;
        match outcome {
            CreateUserOutcome::Created => Ok(()),
            _ => Err(UsersError::UserInUse),
        }
    }

    /// Makes sure registration tokens exist: the configured one, or in token
    /// mode a generated one on first start. Returns a token to announce.
    pub async fn ensure_registration_token(&self) -> Result<Option<String>> {
        if let Some(token) = &self.config.registration.token {
            self.db.insert_registration_token(token::hash(token), None, None).await?;
            return Ok(None);
        }
        if self.config.registration.mode != RegistrationMode::Token {
            return Ok(None);
        }
        if self.db.get_meta("initial_registration_token").await?.is_some() {
            return Ok(None);
        }
        let token = token::generate("reg");
        self.db.insert_registration_token(token::hash(&token), None, None).await?;
        self.db.set_meta("initial_registration_token", "created".into()).await?;
        Ok(Some(token))
    }
}
