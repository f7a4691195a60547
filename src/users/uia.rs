//! User-interactive authentication sessions (client-server API,
//! "User-Interactive Authentication API"). Sessions live in memory: a
//! restart only makes a client start its UIA flow again.

use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant},
};

use super::RegisterRequest;
use ruma::{
    OwnedDeviceId, OwnedUserId,
    api::client::uiaa::{AuthFlow, AuthType, UiaaInfo},
    api::error::{ErrorKind, StandardErrorBody},
};

/// A session left unfinished this long is forgotten.
const SESSION_LIFETIME: Duration = Duration::from_secs(15 * 60);

#[derive(Debug, Default)]
struct Session {
    completed: Vec<AuthType>,
    /// The user the session is bound to, for flows that authenticate an
    /// existing user; a session cannot be reused for another account.
    user: Option<OwnedUserId>,
    /// What the session authorises (`delete devices [A]`, `register`): a
    /// session started for one operation cannot complete another.
    operation: String,
    /// A validated registration token (hashed), consumed at registration.
    registration_token: Option<Vec<u8>>,
    /// A registration's parameters and outcome: a session that has them
    /// outlives its completion, so a retry gets the same account.
    registration: Option<Registration>,
    /// Every stage of a flow passed: the session authorises nothing more.
    finished: bool,
    created: Option<Instant>,
}

/// What a registration session remembers (Synapse's "clientdict"): the
/// parameters of the request that last carried any, so a client may send
/// only `auth` in the next, and the account made once the flow completed.
#[derive(Debug)]
struct Registration {
    params: RegisterRequest,
    registered: Option<Registered>,
}

/// The account a completed registration session made, and the device it
/// logged in (none after `inhibit_login`).
#[derive(Debug, Clone)]
pub struct Registered {
    pub user_id: OwnedUserId,
    pub device_id: Option<OwnedDeviceId>,
}

/// What a completed flow proved.
#[derive(Debug, Default)]
pub struct UiaCompleted {
    pub registration_token: Option<Vec<u8>>,
}

#[derive(Default)]
pub struct UiaSessions {
    sessions: Mutex<HashMap<String, Session>>,
}

/// The result of validating one stage.
pub enum StageResult {
    /// The stage passed; `registration_token` is set for that stage.
    Passed { registration_token: Option<Vec<u8>> },
    /// The stage failed with this error (the client may retry).
    Failed(ErrorKind, String),
}

impl UiaSessions {
    /// Starts a session and returns the 401 body that tells the client the
    /// flows it can follow.
    pub fn start(&self, flows: Vec<AuthFlow>, user: Option<OwnedUserId>, operation: &str) -> UiaaInfo {
        let id = super::token::generate("uia");
        let mut sessions = self.sessions.lock().expect("uia mutex is never poisoned");
        sessions.retain(|_, s| is_live(s));
        let session =
            Session { user, operation: operation.to_owned(), created: Some(Instant::now()), ..Default::default() };
        sessions.insert(id.clone(), session);
        info(flows, Vec::new(), id, None)
    }

    /// Whether `session` exists and may be used by `user` for `operation`.
    pub fn is_usable(&self, session: &str, user: Option<&OwnedUserId>, operation: &str) -> bool {
        let sessions = self.sessions.lock().expect("uia mutex is never poisoned");
        sessions.get(session).is_some_and(|s| {
            is_live(s) && !s.finished && (s.user.is_none() || s.user.as_ref() == user) && s.operation == operation
        })
    }

    /// The parameters a registration goes on with (client-server API,
    /// "User-Interactive Authentication API": the server remembers the
    /// request's parameters for the session). A request with none of them
    /// (only `auth`) takes those the session remembers; one with some
    /// replaces them. Without a usable registration session, `req` as is.
    pub fn registration_params(&self, session: &str, req: RegisterRequest) -> RegisterRequest {
        let mut sessions = self.sessions.lock().expect("uia mutex is never poisoned");
        let Some(s) = sessions.get_mut(session).filter(|s| is_live(s) && s.operation == REGISTER) else {
            return req;
        };
        match &mut s.registration {
            Some(r) if req.has_no_parameters() => RegisterRequest { client_ip: req.client_ip, ..r.params.clone() },
            Some(r) => {
                r.params = req.clone();
                req
            }
            None => {
                s.registration = Some(Registration { params: req.clone(), registered: None });
                req
            }
        }
    }

    /// Remembers a registration's parameters for a session just started.
    pub fn remember_registration(&self, session: &str, req: &RegisterRequest) {
        let mut sessions = self.sessions.lock().expect("uia mutex is never poisoned");
        if let Some(s) = sessions.get_mut(session).filter(|s| s.operation == REGISTER) {
            s.registration = Some(Registration { params: req.clone(), registered: None });
        }
    }

    /// The account a completed registration session made, if any.
    pub fn registered(&self, session: &str) -> Option<Registered> {
        let sessions = self.sessions.lock().expect("uia mutex is never poisoned");
        let s = sessions.get(session).filter(|s| is_live(s) && s.operation == REGISTER)?;
        s.registration.as_ref()?.registered.clone()
    }

    /// Records the account a completed registration session made.
    pub fn set_registered(&self, session: &str, registered: Registered) {
        let mut sessions = self.sessions.lock().expect("uia mutex is never poisoned");
        if let Some(r) = sessions.get_mut(session).and_then(|s| s.registration.as_mut()) {
            r.registered = Some(registered);
        }
    }

    /// Records a stage result and tells whether a whole flow is complete.
    pub fn record(
        &self,
        session: &str,
        flows: &[AuthFlow],
        stage: AuthType,
        result: StageResult,
    ) -> Result<UiaCompleted, Box<UiaaInfo>> {
        let mut sessions = self.sessions.lock().expect("uia mutex is never poisoned");
        let Some(s) = sessions.get_mut(session) else {
            return Err(Box::new(info(flows.to_vec(), Vec::new(), session.to_owned(), None)));
        };
        match result {
            StageResult::Failed(kind, message) => Err(Box::new(info(
                flows.to_vec(),
                s.completed.clone(),
                session.to_owned(),
                Some(StandardErrorBody::new(kind, message)),
            ))),
            StageResult::Passed { registration_token } => {
                if !s.completed.contains(&stage) {
                    s.completed.push(stage);
                }
                if registration_token.is_some() {
                    s.registration_token = registration_token;
                }
                let done = flows.iter().any(|f| f.stages.iter().all(|st| s.completed.contains(st)));
                if done && s.registration.is_some() {
                    // Kept (until it expires) to answer a retry of the
                    // registration with the account it made.
                    s.finished = true;
                    Ok(UiaCompleted { registration_token: s.registration_token.take() })
                } else if done {
                    let s = sessions.remove(session).expect("session was just found");
                    Ok(UiaCompleted { registration_token: s.registration_token })
                } else {
                    Err(Box::new(info(flows.to_vec(), s.completed.clone(), session.to_owned(), None)))
                }
            }
        }
    }
}

/// The operation of registration sessions, whose parameters and outcome
/// are remembered.
pub const REGISTER: &str = "register";

fn is_live(s: &Session) -> bool {
    s.created.is_some_and(|c| c.elapsed() < SESSION_LIFETIME)
}

fn info(flows: Vec<AuthFlow>, completed: Vec<AuthType>, session: String, error: Option<StandardErrorBody>) -> UiaaInfo {
    let mut info = UiaaInfo::new(flows);
    info.completed = completed;
    info.session = Some(session);
    info.params = serde_json::value::to_raw_value(&serde_json::json!({})).ok();
    info.auth_error = error;
    info
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flow_completes_only_when_all_its_stages_pass() {
        let uia = UiaSessions::default();
        let flows = vec![AuthFlow::new(vec![AuthType::Dummy, AuthType::RegistrationToken])];
        let start = uia.start(flows.clone(), None, "register");
        let session = start.session.unwrap();
        let step = uia.record(&session, &flows, AuthType::Dummy, StageResult::Passed { registration_token: None });
        assert_eq!(step.unwrap_err().completed, vec![AuthType::Dummy]);
        let failed = uia.record(
            &session,
            &flows,
            AuthType::RegistrationToken,
            StageResult::Failed(ErrorKind::Forbidden, "bad".into()),
        );
        assert!(failed.unwrap_err().auth_error.is_some());
        let done = uia
            .record(
                &session,
                &flows,
                AuthType::RegistrationToken,
                StageResult::Passed { registration_token: Some(vec![1]) },
            )
            .unwrap();
        assert_eq!(done.registration_token, Some(vec![1]));
        assert!(!uia.is_usable(&session, None, "register"), "a completed session is gone");
    }

    #[test]
    fn a_registration_session_remembers_its_parameters_and_outlives_completion() {
        let uia = UiaSessions::default();
        let flows = vec![AuthFlow::new(vec![AuthType::Dummy])];
        let session = uia.start(flows.clone(), None, REGISTER).session.unwrap();
        let first = RegisterRequest { username: Some("alice".into()), ..Default::default() };
        uia.remember_registration(&session, &first);
        let only_auth = RegisterRequest { client_ip: Some("::1".into()), ..Default::default() };
        let params = uia.registration_params(&session, only_auth);
        assert_eq!(params.username.as_deref(), Some("alice"));
        assert_eq!(params.client_ip.as_deref(), Some("::1"), "the request's own address is kept");
        uia.record(&session, &flows, AuthType::Dummy, StageResult::Passed { registration_token: None }).unwrap();
        assert!(!uia.is_usable(&session, None, REGISTER), "a completed session authorises nothing more");
        assert!(uia.registered(&session).is_none());
        let user_id: OwnedUserId = "@alice:example.org".try_into().unwrap();
        uia.set_registered(&session, Registered { user_id: user_id.clone(), device_id: None });
        assert_eq!(uia.registered(&session).map(|r| r.user_id), Some(user_id));
    }

    #[test]
    fn a_session_serves_only_the_operation_it_was_started_for() {
        let uia = UiaSessions::default();
        let flows = vec![AuthFlow::new(vec![AuthType::Password])];
        let session = uia.start(flows, None, "delete devices [\"A\"]").session.unwrap();
        assert!(uia.is_usable(&session, None, "delete devices [\"A\"]"));
        assert!(!uia.is_usable(&session, None, "delete devices [\"B\"]"));
    }
}
