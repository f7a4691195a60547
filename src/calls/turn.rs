//! TURN credentials (client-server API, "Voice over IP", `GET
//! /voip/turnServer`). With a shared secret they follow the TURN REST API
//! scheme coturn checks with `use-auth-secret`: the username is
//! `<expiry in Unix seconds>:<user id>`, the password the base64 of
//! HMAC-SHA1(secret, username), so the TURN server needs no call to us.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::{Engine, engine::general_purpose::STANDARD};
use hmac::{Hmac, Mac};
use ruma::UserId;
use sha1::Sha1;

use crate::config::VoipConfig;

/// What `/voip/turnServer` hands a client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TurnCredentials {
    pub username: String,
    pub password: String,
    pub uris: Vec<String>,
    pub ttl: Duration,
}

/// Credentials for `user_id` at `now`; `None` when no TURN server is
/// configured (config validation guarantees URIs come with a secret or a
/// username and password).
pub fn credentials(voip: &VoipConfig, user_id: &UserId, now: SystemTime) -> Option<TurnCredentials> {
    if voip.turn_uris.is_empty() {
        return None;
    }
    let (username, password) = match (&voip.turn_shared_secret, &voip.turn_username, &voip.turn_password) {
        (Some(secret), _, _) => {
            let since_epoch = now.duration_since(UNIX_EPOCH).unwrap_or_default();
            let expiry = since_epoch.saturating_add(voip.turn_ttl).as_secs();
            let username = format!("{expiry}:{user_id}");
            let password = rest_api_password(secret, &username);
            (username, password)
        }
        (None, Some(username), Some(password)) => (username.clone(), password.clone()),
        _ => return None,
    };
    Some(TurnCredentials { username, password, uris: voip.turn_uris.clone(), ttl: voip.turn_ttl })
}

/// base64(HMAC-SHA1(secret, username)), the password a TURN server with
/// the same secret expects for `username`.
pub fn rest_api_password(secret: &str, username: &str) -> String {
    let mut mac = Hmac::<Sha1>::new_from_slice(secret.as_bytes()).expect("HMAC takes a key of any length");
    mac.update(username.as_bytes());
    STANDARD.encode(mac.finalize().into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn voip() -> VoipConfig {
        VoipConfig {
            turn_uris: vec!["turn:turn.test:3478?transport=udp".into()],
            turn_shared_secret: Some("s3cret".into()),
            turn_ttl: Duration::from_secs(600),
            ..VoipConfig::default()
        }
    }

    #[test]
    fn shared_secret_credentials_follow_the_rest_scheme() {
        let now = UNIX_EPOCH + Duration::from_secs(1_796_095_472);
        let creds = credentials(&voip(), ruma::user_id!("@alice:plexus.test"), now).unwrap();
        assert_eq!(creds.username, "1796096072:@alice:plexus.test");
        // `printf %s "$username" | openssl dgst -sha1 -hmac s3cret -binary | base64`
        assert_eq!(creds.password, "mXLXL2fuC8bDa1un+6KyyX4146o=");
        assert_eq!(creds.ttl, Duration::from_secs(600));
        assert_eq!(creds.uris, vec!["turn:turn.test:3478?transport=udp".to_owned()]);
    }

    #[test]
    fn fixed_credentials_and_none() {
        let fixed = VoipConfig {
            turn_shared_secret: None,
            turn_username: Some("u".into()),
            turn_password: Some("p".into()),
            ..voip()
        };
        let creds = credentials(&fixed, ruma::user_id!("@a:test"), SystemTime::now()).unwrap();
        assert_eq!((creds.username.as_str(), creds.password.as_str()), ("u", "p"));
        assert!(credentials(&VoipConfig::default(), ruma::user_id!("@a:test"), SystemTime::now()).is_none());
    }
}
