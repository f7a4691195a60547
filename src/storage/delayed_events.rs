//! Delayed events (MSC4140): events a user scheduled to be sent later, kept
//! until they are sent or cancelled and then, finalised, for a while so the
//! user can read what became of them and a retried schedule finds its first
//! answer.

use async_trait::async_trait;

use super::Result;

/// Where a delayed event is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DelayedStatus {
    /// Waiting for its send time.
    Scheduled,
    /// Taken by a sender (the timer or a `send` action); back to
    /// `Scheduled` if that send is given up, or after a restart.
    Sending,
    /// Sent: `event_id` names the event.
    Sent,
    /// Cancelled by its owner (`reason` action), or by a later state event
    /// of another user (`reason` error).
    Cancelled,
    /// Its send failed at its send time; `error` says why.
    Failed,
}

impl DelayedStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Scheduled => "scheduled",
            Self::Sending => "sending",
            Self::Sent => "sent",
            Self::Cancelled => "cancelled",
            Self::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "scheduled" => Self::Scheduled,
            "sending" => Self::Sending,
            "sent" => Self::Sent,
            "cancelled" => Self::Cancelled,
            "failed" => Self::Failed,
            _ => return None,
        })
    }

    /// Whether it still waits to be sent (a `sending` one may go back).
    pub fn is_pending(self) -> bool {
        matches!(self, Self::Scheduled | Self::Sending)
    }
}

/// A delayed event to schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewDelayedEvent {
    pub delay_id: String,
    pub user_id: String,
    /// The device that scheduled it: its events are sent as from it.
    pub device_id: String,
    /// The client's transaction id (message events): a retry with the same
    /// id gets the first delay id.
    pub txn_id: Option<String>,
    pub room_id: String,
    pub kind: String,
    pub state_key: Option<String>,
    /// The event content, as JSON.
    pub content: String,
    pub delay_ms: i64,
    /// When it was scheduled, in milliseconds.
    pub now: i64,
}

/// A stored delayed event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DelayedEventRow {
    pub delay_id: String,
    pub user_id: String,
    pub device_id: String,
    pub room_id: String,
    pub kind: String,
    pub state_key: Option<String>,
    pub content: String,
    pub delay_ms: i64,
    /// When it was scheduled or last restarted, in milliseconds.
    pub running_since: i64,
    /// `running_since + delay_ms`.
    pub send_ts: i64,
    pub status: DelayedStatus,
    /// Why it was finalised: `action`, `delay` or `error`.
    pub reason: Option<String>,
    pub event_id: Option<String>,
    /// The Matrix error (JSON) that cancelled or failed it.
    pub error: Option<String>,
    pub finalised_ts: Option<i64>,
}

/// How a delayed event ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finalised {
    /// `Sent`, `Cancelled` or `Failed`.
    pub status: DelayedStatus,
    /// `action`, `delay` or `error`.
    pub reason: &'static str,
    pub event_id: Option<String>,
    pub error: Option<String>,
    pub now: i64,
}

/// What scheduling did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScheduleOutcome {
    Scheduled,
    /// The transaction was seen before: its delay id.
    AlreadyScheduled(String),
    /// The user has `limit` pending delayed events; the next of them is due
    /// at `next_send_ts`.
    LimitReached {
        next_send_ts: i64,
    },
}

/// Which delayed events of a user to read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DelayedQuery {
    /// `Some(true)`: only pending ones; `Some(false)`: only finalised ones.
    pub pending: Option<bool>,
    /// Only these delay ids (all when empty).
    pub delay_ids: Vec<String>,
    /// At most this many finalised ones, the latest first.
    pub finalised_limit: usize,
}

/// Delayed events.
///
/// Beyond `Storage`'s guarantees: the transaction check, the per-user
/// limit and the insert of `schedule_delayed_event` happen as one step;
/// a claim (`claim_delayed_event`, `claim_due_delayed_events`) moves rows
/// from `Scheduled` to `Sending` as one step, so a row is claimed at most
/// once, and `restart`/`cancel` touch only `Scheduled` rows.
#[async_trait]
pub trait DelayedEventStore: Send + Sync {
    /// Schedules `event`, unless its transaction was seen or `limit`
    /// pending delayed events of its user exist.
    async fn schedule_delayed_event(&self, event: NewDelayedEvent, limit: usize) -> Result<ScheduleOutcome>;

    /// Restarts a scheduled event's delay from `now`; its new send time, or
    /// `None` when no scheduled event has that id.
    async fn restart_delayed_event(&self, delay_id: String, now: i64) -> Result<Option<i64>>;

    /// Finalises a scheduled event as cancelled by its owner; `false` when
    /// no scheduled event has that id.
    async fn cancel_delayed_event(&self, delay_id: String, now: i64) -> Result<bool>;

    /// Claims one scheduled event for sending now.
    async fn claim_delayed_event(&self, delay_id: String) -> Result<Option<DelayedEventRow>>;

    /// Claims every scheduled event due at `now`, earliest first.
    async fn claim_due_delayed_events(&self, now: i64) -> Result<Vec<DelayedEventRow>>;

    /// Puts a claimed event back to `Scheduled` (a `send` action that
    /// failed keeps it scheduled, as MSC4140 asks).
    async fn release_delayed_event(&self, delay_id: String) -> Result<()>;

    /// Records how a claimed event ended.
    async fn finalise_delayed_event(&self, delay_id: String, outcome: Finalised) -> Result<()>;

    /// After a restart: every event claimed by the previous run is
    /// `Scheduled` again (its send time unchanged, so a due one goes at once).
    async fn reschedule_claimed_delayed_events(&self) -> Result<usize>;

    /// The earliest send time of a scheduled event.
    async fn next_delayed_send_ts(&self) -> Result<Option<i64>>;

    /// Whether users other than `sender` have scheduled a state event for
    /// this room, type and state key.
    async fn others_delayed_state_pending(
        &self,
        room_id: String,
        kind: String,
        state_key: String,
        sender: String,
    ) -> Result<bool>;

    /// Cancels (reason `error`, with `error`) the scheduled state events of
    /// users other than `sender` for this room, type and state key.
    async fn cancel_others_delayed_state(
        &self,
        room_id: String,
        kind: String,
        state_key: String,
        sender: String,
        error: String,
        now: i64,
    ) -> Result<usize>;

    /// A user's delayed events: pending ones by send time, then finalised
    /// ones, the latest first.
    async fn delayed_events_of(&self, user_id: String, query: DelayedQuery) -> Result<Vec<DelayedEventRow>>;

    /// Forgets finalised events finalised before `before`.
    async fn prune_finalised_delayed_events(&self, before: i64) -> Result<usize>;
}
