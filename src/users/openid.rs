//! OpenID tokens (client-server API, "OpenID"; server-server API,
//! "OpenID"): a user asks for a token and gives it to a third party (a
//! widget, a LiveKit JWT service), which asks this server's federation API
//! whose it is. The token proves nothing else: it is no access token.

use std::time::Duration;

use ruma::{OwnedUserId, UserId};

use super::{Result, Session, Users, UsersError, token};
use crate::storage::now_ms;

/// How long an OpenID token is valid, as Synapse gives it.
pub const OPENID_TOKEN_LIFETIME: Duration = Duration::from_secs(3600);

/// A token handed to the user for a third party.
#[derive(Debug, Clone)]
pub struct OpenIdToken {
    pub access_token: String,
    pub expires_in: Duration,
}

impl Users {
    /// `POST /user/{userId}/openid/request_token`: only for oneself.
    pub async fn request_openid_token(&self, session: &Session, user_id: &UserId) -> Result<OpenIdToken> {
        if session.user_id != user_id {
            return Err(UsersError::Forbidden("you may only request OpenID tokens for yourself".into()));
        }
        let access_token = token::generate("pxo");
        let expires_ts = now_ms() + OPENID_TOKEN_LIFETIME.as_millis() as i64;
        self.db.insert_openid_token(token::hash(&access_token), user_id.to_owned(), expires_ts).await?;
        Ok(OpenIdToken { access_token, expires_in: OPENID_TOKEN_LIFETIME })
    }

    /// Federation `GET /openid/userinfo`: whose token this is, while it is
    /// valid.
    pub async fn openid_userinfo(&self, access_token: &str) -> Result<OwnedUserId> {
        self.db
            .find_openid_token(token::hash(access_token), now_ms())
            .await?
            .ok_or(UsersError::UnknownToken { soft_logout: false })
    }
}
