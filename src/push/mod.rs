//! Push notifications (client-server API, "Push notifications" and "Push
//! rules"; push gateway API): each user's push rules (the `m.push_rules`
//! account data; ruma's server-default ruleset until the user changes
//! it), their evaluation for every event committed to a room
//! (`evaluate.rs`, a listener of the commit pipeline), the notifications
//! that result, which sync counts and `GET /notifications` lists, and
//! their delivery to the push gateways of users' pushers (`pushers.rs`,
//! `delivery.rs`, `gateway.rs`).

mod active_syncs;
mod delivery;
mod evaluate;
mod gateway;
mod pushers;
pub mod rules;

use std::sync::Arc;

use ruma::{
    OwnedRoomId, OwnedUserId, UserId,
    events::push_rules::PushRulesEventContent,
    push::{Action, Ruleset},
};
use serde_json::Value;

use self::delivery::Delivery;
pub use self::{
    active_syncs::{ActiveSync, ActiveSyncs},
    evaluate::PushEvaluation,
};
use crate::{
    config::Config,
    rooms::{Rooms, RoomsError},
    storage::{Storage, StorageError, push::NotificationRow},
    streams::{Streams, StreamsError},
};

#[derive(Debug, thiserror::Error)]
pub enum PushError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    InvalidParam(String),
    #[error(transparent)]
    Streams(#[from] StreamsError),
    #[error(transparent)]
    Rooms(#[from] RoomsError),
    #[error(transparent)]
    Storage(#[from] StorageError),
}

pub type Result<T, E = PushError> = std::result::Result<T, E>;

/// Users whose parsed rules are kept in memory: evaluation reads the rules
/// of every local member of a room for each event.
const RULES_CACHE_ENTRIES: usize = 20_000;

/// The push service.
pub struct Push {
    db: Arc<dyn Storage>,
    config: Arc<Config>,
    streams: Arc<Streams>,
    rooms: Arc<Rooms>,
    rules: quick_cache::sync::Cache<OwnedUserId, Arc<Ruleset>>,
    /// Rule changes read, change and write the whole ruleset: one at a time.
    rule_writes: tokio::sync::Mutex<()>,
    /// The devices syncing now, which get no pushes.
    active_syncs: Arc<ActiveSyncs>,
    delivery: Arc<Delivery>,
}

/// One notification as `GET /notifications` lists it.
pub struct Notification {
    pub room_id: OwnedRoomId,
    pub actions: Vec<Action>,
    pub event: Value,
    pub read: bool,
    pub ts: i64,
    /// The stream position, the page token of the next page.
    pub position: i64,
}

/// The `m.push_rules` content a user starts with.
pub fn server_default_rules(user: &UserId) -> Value {
    serde_json::to_value(PushRulesEventContent::new(Ruleset::server_default(user)))
        .expect("a ruleset serialises to JSON")
}

impl Push {
    /// The push service; fails only when the gateway client cannot be built.
    pub fn new(
        db: Arc<dyn Storage>,
        config: Arc<Config>,
        streams: Arc<Streams>,
        rooms: Arc<Rooms>,
    ) -> std::result::Result<Self, String> {
        let delivery = Arc::new(Delivery::new(db.clone(), rooms.clone(), &config.push)?);
        Ok(Self {
            db,
            config,
            streams,
            rooms,
            rules: quick_cache::sync::Cache::new(RULES_CACHE_ENTRIES),
            rule_writes: tokio::sync::Mutex::new(()),
            active_syncs: Arc::new(ActiveSyncs::default()),
            delivery,
        })
    }

    /// The registry of devices syncing now, which sync marks.
    pub fn active_syncs(&self) -> &Arc<ActiveSyncs> {
        &self.active_syncs
    }

    /// The user's push rules.
    pub async fn rules(&self, user: &OwnedUserId) -> Result<Arc<Ruleset>> {
        if let Some(rules) = self.rules.get(user) {
            return Ok(rules);
        }
        let rules = match self.streams.get_account_data(user, None, "m.push_rules").await {
            Ok(content) => match serde_json::from_value::<PushRulesEventContent>(content) {
                Ok(content) => content.global,
                Err(e) => {
                    tracing::warn!(%user, error = %e, "stored push rules do not parse; using the defaults");
                    Ruleset::server_default(user)
                }
            },
            Err(StreamsError::NotFound(_)) => Ruleset::server_default(user),
            Err(e) => return Err(e.into()),
        };
        let rules = Arc::new(rules);
        self.rules.insert(user.clone(), rules.clone());
        Ok(rules)
    }

    /// Changes the user's rules with `change` and stores them (delivered to
    /// the user's clients as `m.push_rules` account data). Nothing is
    /// stored when `change` fails.
    pub async fn change_rules<T>(
        &self,
        user: &OwnedUserId,
        change: impl FnOnce(&mut Ruleset) -> Result<T>,
    ) -> Result<T> {
        let _one_at_a_time = self.rule_writes.lock().await;
        let mut rules = (*self.rules(user).await?).clone();
        let out = change(&mut rules)?;
        let content = serde_json::to_value(PushRulesEventContent::new(rules.clone()))
            .map_err(|e| PushError::InvalidParam(e.to_string()))?;
        self.streams.set_push_rules(user, &content).await?;
        self.rules.insert(user.clone(), Arc::new(rules));
        Ok(out)
    }

    /// Forgets the cached rules of a user (their account data changed).
    fn forget_rules(&self, user: &UserId) {
        self.rules.remove(user);
    }

    /// The user's notifications, newest first, before `from` (a position a
    /// previous page returned).
    pub async fn notifications(
        &self,
        user: &OwnedUserId,
        from: Option<&str>,
        limit: usize,
        only_highlight: bool,
    ) -> Result<Vec<Notification>> {
        let before = match from {
            Some(token) => Some(token.parse::<i64>().map_err(|_| PushError::InvalidParam("bad `from` token".into()))?),
            None => None,
        };
        let rows = self.db.notifications(user.to_string(), before, limit, only_highlight).await?;
        let mut out = Vec::with_capacity(rows.len());
        for NotificationRow { action, read } in rows {
            let Ok(event_id) = ruma::OwnedEventId::try_from(action.event_id.as_str()) else { continue };
            let Some(pdu) = self.rooms.get_pdu(&event_id).await? else { continue };
            let Ok(room_id) = OwnedRoomId::try_from(action.room_id.as_str()) else { continue };
            let actions = serde_json::from_str(&action.actions).unwrap_or_default();
            let event = self.rooms.client_event(&pdu, None).await?;
            out.push(Notification { room_id, actions, event, read, ts: action.ts, position: action.stream_ordering });
        }
        Ok(out)
    }

    fn server_name(&self) -> &ruma::ServerName {
        &self.config.server.server_name
    }
}
