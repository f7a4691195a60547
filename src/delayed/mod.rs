//! Delayed events (MSC4140, "Cancellable delayed events"): a user schedules
//! an event to be sent later; when its delay runs out the server sends it as
//! that user through the room server's ordinary send path, unless it was
//! restarted, sent at once or cancelled first. Element Call schedules its
//! "leave" this way and restarts it while the call is up. Scheduled events
//! are stored (`storage::delayed_events`) and one scheduler task sends them.

mod scheduler;
mod state_updates;

use std::sync::{Arc, Mutex};

use rand::{Rng, distributions::Alphanumeric};
use ruma::{DeviceId, OwnedRoomId, UserId, events::TimelineEventType};
use serde_json::{Value, json};
use tokio::sync::{Notify, watch};

pub use self::state_updates::DelayedStateCanceller;
use crate::{
    config::Config,
    pdu::Pdu,
    rate_limit::RateLimiters,
    rooms::{EventDraft, Rooms, RoomsError, TxnRef},
    storage::{
        Storage, StorageError,
        delayed_events::{DelayedEventRow, DelayedQuery, DelayedStatus, Finalised, NewDelayedEvent, ScheduleOutcome},
        now_ms,
    },
};

/// The largest event content accepted for later (the spec's limit on a
/// whole event, so a content past it could never be sent).
const MAX_CONTENT_BYTES: usize = 65_536;

/// How many finalised delayed events a listing returns at most.
const FINALISED_LISTED: usize = 100;

#[derive(Debug, thiserror::Error)]
pub enum DelayedError {
    #[error("delayed events are disabled on this server")]
    Disabled,
    #[error("{0}")]
    InvalidParam(String),
    #[error("the requested delay exceeds the allowed maximum of {max_ms} ms")]
    MaxDelayExceeded { max_ms: u64 },
    #[error("the maximum number of delayed events has been reached")]
    LimitExceeded { retry_after_ms: u64 },
    #[error("no scheduled delayed event has this id")]
    NotFound,
    /// Sending now would exceed the user's rate of sending events.
    #[error("too many events sent; retry after {retry_after_ms} ms")]
    RateLimited { retry_after_ms: u64 },
    #[error(transparent)]
    Rooms(#[from] RoomsError),
    #[error(transparent)]
    Storage(#[from] StorageError),
}

pub type Result<T, E = DelayedError> = std::result::Result<T, E>;

/// An event to send later, as a client asked for it.
#[derive(Debug, Clone)]
pub struct DelayedEventRequest {
    pub room_id: OwnedRoomId,
    pub kind: String,
    /// `Some` for a state event.
    pub state_key: Option<String>,
    pub content: Value,
    pub delay_ms: u64,
    /// The client's transaction id (message events).
    pub txn_id: Option<String>,
}

/// What a management action does to a scheduled delayed event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DelayedAction {
    Restart,
    Cancel,
    Send,
}

impl DelayedAction {
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "restart" => Self::Restart,
            "cancel" => Self::Cancel,
            "send" => Self::Send,
            _ => return None,
        })
    }
}

/// The delayed events service: scheduling, management, and the scheduler
/// task that sends what is due.
pub struct DelayedEvents {
    db: Arc<dyn Storage>,
    rooms: Arc<Rooms>,
    config: Arc<Config>,
    /// The rate at which a user may send events applies to their delayed
    /// ones when they are sent too (MSC4140, "Rate-limiting at the point of
    /// sending"), so scheduling many for one moment does not get round it.
    rate_limits: Arc<RateLimiters>,
    /// Wakes the scheduler when the earliest send time may have changed.
    wake: Notify,
    stop: watch::Sender<bool>,
    task: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl DelayedEvents {
    pub fn new(db: Arc<dyn Storage>, rooms: Arc<Rooms>, config: Arc<Config>, rate_limits: Arc<RateLimiters>) -> Self {
        Self {
            db,
            rooms,
            config,
            rate_limits,
            wake: Notify::new(),
            stop: watch::channel(false).0,
            task: Mutex::new(None),
        }
    }

    /// Whether this server takes delayed events (a maximum delay and a
    /// per-user allowance are configured).
    pub fn enabled(&self) -> bool {
        self.config.rooms.max_event_delay_ms > 0 && self.config.rooms.max_delayed_events_per_user > 0
    }

    /// Schedules an event of `user`'s, sent as from `device`; its delay id.
    /// What can be checked now is (the delay, the content, the room); who
    /// may send it is checked when it is sent, as MSC4140 asks.
    pub async fn schedule(&self, user: &UserId, device: &DeviceId, request: DelayedEventRequest) -> Result<String> {
        if !self.enabled() {
            return Err(DelayedError::Disabled);
        }
        let max_ms = self.config.rooms.max_event_delay_ms;
        if request.delay_ms == 0 {
            return Err(DelayedError::InvalidParam("the delay must be at least 1 ms".into()));
        }
        if request.delay_ms > max_ms {
            return Err(DelayedError::MaxDelayExceeded { max_ms });
        }
        if !request.content.is_object() {
            return Err(RoomsError::BadJson("event content must be a JSON object".into()).into());
        }
        if request.state_key.is_none() && request.kind == TimelineEventType::RoomRedaction.to_string() {
            return Err(RoomsError::BadJson("use the /redact endpoint to redact events".into()).into());
        }
        let content = request.content.to_string();
        if content.len() > MAX_CONTENT_BYTES {
            return Err(RoomsError::TooLarge.into());
        }
        // An unknown room is refused now rather than failing later.
        self.rooms.room_version(&request.room_id).await?;
        let now = now_ms();
        let delay_id = new_delay_id();
        let event = NewDelayedEvent {
            delay_id: delay_id.clone(),
            user_id: user.to_string(),
            device_id: device.to_string(),
            txn_id: request.txn_id,
            room_id: request.room_id.to_string(),
            kind: request.kind,
            state_key: request.state_key,
            content,
            delay_ms: i64::try_from(request.delay_ms).unwrap_or(i64::MAX),
            now,
        };
        match self.db.schedule_delayed_event(event, self.config.rooms.max_delayed_events_per_user).await? {
            ScheduleOutcome::Scheduled => {
                self.wake.notify_one();
                Ok(delay_id)
            }
            ScheduleOutcome::AlreadyScheduled(first) => Ok(first),
            ScheduleOutcome::LimitReached { next_send_ts } => {
                Err(DelayedError::LimitExceeded { retry_after_ms: u64::try_from(next_send_ts - now).unwrap_or(0) })
            }
        }
    }

    /// Restarts, cancels or sends a scheduled delayed event. Knowing its
    /// delay id is what allows it (MSC4140 lets a service the user shares
    /// it with act on it).
    pub async fn act(&self, delay_id: &str, action: DelayedAction) -> Result<()> {
        match action {
            DelayedAction::Restart => {
                self.db.restart_delayed_event(delay_id.to_owned(), now_ms()).await?.ok_or(DelayedError::NotFound)?;
                self.wake.notify_one();
            }
            DelayedAction::Cancel => {
                if !self.db.cancel_delayed_event(delay_id.to_owned(), now_ms()).await? {
                    return Err(DelayedError::NotFound);
                }
                self.wake.notify_one();
            }
            DelayedAction::Send => {
                let row = self.db.claim_delayed_event(delay_id.to_owned()).await?.ok_or(DelayedError::NotFound)?;
                if let Err(limited) = self.check_send_rate(&row) {
                    self.db.release_delayed_event(row.delay_id.clone()).await?;
                    self.wake.notify_one();
                    return Err(limited);
                }
                self.wake.notify_one();
                match self.send_event(&row).await {
                    Ok(pdu) => self.finalise_sent(&row, &pdu, "action").await?,
                    // MSC4140: the event stays scheduled, so a retry (or its
                    // send time) may yet succeed.
                    Err(e) => {
                        self.db.release_delayed_event(row.delay_id.clone()).await?;
                        self.wake.notify_one();
                        return Err(e.into());
                    }
                }
            }
        }
        Ok(())
    }

    /// A user's delayed events: `pending` selects scheduled (`Some(true)`)
    /// or finalised (`Some(false)`) ones, `delay_ids` narrows to those ids.
    pub async fn list(
        &self,
        user: &UserId,
        pending: Option<bool>,
        delay_ids: Vec<String>,
    ) -> Result<Vec<DelayedEventRow>> {
        let query = DelayedQuery { pending, delay_ids, finalised_limit: FINALISED_LISTED };
        Ok(self.db.delayed_events_of(user.to_string(), query).await?)
    }

    /// Sends a claimed delayed event as its user, from the device that
    /// scheduled it. The transaction id is the delay id's, so a send
    /// repeated after a crash finds the event already sent.
    async fn send_event(&self, row: &DelayedEventRow) -> std::result::Result<Arc<Pdu>, RoomsError> {
        let corrupt = |what: &str| RoomsError::Internal(format!("stored delayed event {}: bad {what}", row.delay_id));
        let room_id = OwnedRoomId::try_from(row.room_id.as_str()).map_err(|_| corrupt("room id"))?;
        let user = UserId::parse(row.user_id.as_str()).map_err(|_| corrupt("user id"))?;
        let content: Value = serde_json::from_str(&row.content).map_err(|_| corrupt("content"))?;
        let draft = match &row.state_key {
            Some(key) => EventDraft::state(row.kind.as_str().into(), key.clone(), content),
            None => EventDraft::message(row.kind.as_str().into(), content),
        };
        let txn = TxnRef { device_id: row.device_id.clone(), txn_id: format!("org.matrix.msc4140.{}", row.delay_id) };
        self.rooms.append_local(&room_id, &user, draft, Some(txn)).await
    }

    /// Takes a token of the event sender's message rate limit.
    fn check_send_rate(&self, row: &DelayedEventRow) -> Result<()> {
        let Ok(user) = ruma::OwnedUserId::try_from(row.user_id.as_str()) else { return Ok(()) };
        self.rate_limits.message.check(&user).map_err(|limited| DelayedError::RateLimited {
            retry_after_ms: u64::try_from(limited.retry_after.as_millis()).unwrap_or(u64::MAX),
        })
    }

    async fn finalise_sent(&self, row: &DelayedEventRow, pdu: &Pdu, reason: &'static str) -> Result<()> {
        let outcome = Finalised {
            status: DelayedStatus::Sent,
            reason,
            event_id: Some(pdu.event_id.to_string()),
            error: None,
            now: now_ms(),
        };
        Ok(self.db.finalise_delayed_event(row.delay_id.clone(), outcome).await?)
    }

    /// Sends a claimed event whose time has come. A failure (the user left
    /// the room, lost the power to send it) is logged and kept as the
    /// event's outcome; it is not retried.
    async fn send_due(&self, row: DelayedEventRow) {
        // Rate-limited at its send time: not retried, as MSC4140 asks; the
        // user finds the error in the listing.
        let sent = match self.check_send_rate(&row) {
            Ok(()) => self.send_event(&row).await.map_err(|e| (e.to_string(), error_body(&e))),
            Err(limited) => {
                Err((limited.to_string(), json!({"errcode": "M_LIMIT_EXCEEDED", "error": limited.to_string()})))
            }
        };
        let outcome = match sent {
            Ok(pdu) => {
                tracing::debug!(delay_id = %row.delay_id, event_id = %pdu.event_id, "sent a delayed event");
                self.finalise_sent(&row, &pdu, "delay").await
            }
            Err((reason, error)) => {
                tracing::info!(delay_id = %row.delay_id, user = %row.user_id, room = %row.room_id, error = %reason,
                    "dropped a delayed event that could not be sent");
                let outcome = Finalised {
                    status: DelayedStatus::Failed,
                    reason: "error",
                    event_id: None,
                    error: Some(error.to_string()),
                    now: now_ms(),
                };
                self.db.finalise_delayed_event(row.delay_id.clone(), outcome).await.map_err(Into::into)
            }
        };
        if let Err(e) = outcome {
            tracing::warn!(delay_id = %row.delay_id, error = %e, "cannot record what became of a delayed event");
        }
    }
}

/// A delay id: random and long enough that it cannot be guessed, since
/// knowing it is what allows acting on the event.
fn new_delay_id() -> String {
    let random: String = rand::thread_rng().sample_iter(&Alphanumeric).take(24).map(char::from).collect();
    format!("syd_{random}")
}

/// The Matrix error (`errcode`, `error`) a send that failed would have
/// answered, kept as the delayed event's outcome.
fn error_body(e: &RoomsError) -> Value {
    let errcode = match e {
        RoomsError::Forbidden(_) => "M_FORBIDDEN",
        RoomsError::NotFound(_) => "M_NOT_FOUND",
        RoomsError::TooLarge => "M_TOO_LARGE",
        RoomsError::BadJson(_) => "M_BAD_JSON",
        RoomsError::InvalidParam(_) => "M_INVALID_PARAM",
        _ => "M_UNKNOWN",
    };
    let message = match e {
        RoomsError::Internal(_) | RoomsError::Storage(_) => "internal server error".to_owned(),
        other => other.to_string(),
    };
    json!({"errcode": errcode, "error": message})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actions_parse_and_ids_differ() {
        assert_eq!(DelayedAction::parse("restart"), Some(DelayedAction::Restart));
        assert_eq!(DelayedAction::parse("send"), Some(DelayedAction::Send));
        assert_eq!(DelayedAction::parse("cancel"), Some(DelayedAction::Cancel));
        assert_eq!(DelayedAction::parse("Cancel"), None);
        assert_ne!(new_delay_id(), new_delay_id());
    }

    #[test]
    fn failures_keep_their_errcode_not_internals() {
        let forbidden = error_body(&RoomsError::Forbidden("you are not joined to this room".into()));
        assert_eq!(forbidden["errcode"], "M_FORBIDDEN");
        let internal = error_body(&RoomsError::Internal("disk on fire".into()));
        assert_eq!(internal, json!({"errcode": "M_UNKNOWN", "error": "internal server error"}));
    }
}
