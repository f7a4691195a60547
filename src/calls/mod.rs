//! Calls: what a client needs from its homeserver to place one. TURN
//! relays for voice and video calls (client-server API, "Voice over IP":
//! `GET /voip/turnServer`, `turn.rs`), and the MatrixRTC transports a
//! group call may use (MSC4143, `GET /rtc/transports`). Both come from the
//! configuration; nothing is stored.

pub mod turn;

use std::{sync::Arc, time::SystemTime};

use ruma::{UserId, api::client::rtc::RtcTransport};

pub use self::turn::TurnCredentials;
use crate::config::Config;

#[derive(Debug, thiserror::Error)]
pub enum CallsError {
    #[error("guests may not use this server's TURN relays")]
    GuestAccessForbidden,
}

pub struct Calls {
    config: Arc<Config>,
}

impl Calls {
    pub fn new(config: Arc<Config>) -> Self {
        Self { config }
    }

    /// TURN credentials for `user_id`, or `None` when no TURN server is
    /// configured. `is_guest` says whether the caller is a guest account.
    pub fn turn_credentials(&self, user_id: &UserId, is_guest: bool) -> Result<Option<TurnCredentials>, CallsError> {
        let voip = &self.config.voip;
        if is_guest && !voip.turn_allow_guests {
            return Err(CallsError::GuestAccessForbidden);
        }
        Ok(turn::credentials(voip, user_id, SystemTime::now()))
    }

    /// The configured MatrixRTC transports, most preferred first; `None`
    /// when there are none, and the server does not offer MSC4143.
    pub fn rtc_transports(&self) -> Option<&[RtcTransport]> {
        let transports = &self.config.rtc.transports;
        (!transports.is_empty()).then_some(transports.as_slice())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guests_are_refused_only_when_configured() {
        let mut config = Config::default();
        config.voip.turn_uris = vec!["turn:turn.test".into()];
        config.voip.turn_shared_secret = Some("s".into());
        let user = ruma::user_id!("@guest:test");
        assert!(Calls::new(Arc::new(config.clone())).turn_credentials(user, true).unwrap().is_some());
        config.voip.turn_allow_guests = false;
        let calls = Calls::new(Arc::new(config));
        assert!(matches!(calls.turn_credentials(user, true), Err(CallsError::GuestAccessForbidden)));
        assert!(calls.turn_credentials(user, false).unwrap().is_some());
    }

    #[test]
    fn no_transports_means_no_msc4143() {
        assert!(Calls::new(Arc::new(Config::default())).rtc_transports().is_none());
    }
}
