//! Push delivery (push gateway API; client-server API "Push
//! notifications"): what an event's evaluation notified is queued per
//! pusher in SQLite (one row per pusher per notification, one write), and
//! one worker per pusher with a queue sends its rows to the gateway in
//! order. Failures back off exponentially up to an hour; a push still not
//! delivered a day after it was queued is given up. The queue outlives
//! restarts: `start` wakes the pushers left with something queued.
//!
//! Nothing is pushed for an action that does not notify, nor to the
//! pusher of a device syncing right now (it gets the event from that
//! sync), and a pusher whose pushkey the gateway rejects is removed.

use std::{
    collections::HashSet,
    sync::{Arc, Mutex, Weak},
    time::Duration,
};

use ruma::{
    OwnedEventId, OwnedUserId, UserId,
    events::{StateEventType, TimelineEventType},
    push::{Action, HttpPusherData},
};
use tokio::sync::{OnceCell, watch};

use super::{
    Push, Result,
    gateway::{self, EventDetails, GatewayError, Gateways, PushDevice, PushedEvent, wants_event_id_only},
};
use crate::{
    config::PushConfig,
    pdu::Pdu,
    rooms::{Rooms, RoomsError},
    storage::{
        Storage, StorageError, now_ms,
        push::PushActionRow,
        pushers::{PushToQueue, PusherRow, QueuedPush, StoredPusher},
    },
};

const FIRST_RETRY: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(3600);
/// A push not delivered this long after it was queued is dropped: a day
/// late, it would only be noise.
const GIVE_UP_AFTER: Duration = Duration::from_secs(24 * 3600);

/// Why a push could not be delivered this time (it is tried again).
#[derive(Debug, thiserror::Error)]
enum DeliveryError {
    #[error(transparent)]
    Gateway(#[from] GatewayError),
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error(transparent)]
    Rooms(#[from] RoomsError),
}

/// The outbound push queue's workers.
pub(super) struct Delivery {
    db: Arc<dyn Storage>,
    rooms: Arc<Rooms>,
    gateways: Gateways,
    /// Users who have (or had, since start) a pusher: only their
    /// notifications cost a queue write. Read from storage on first use.
    users_with_pushers: OnceCell<Mutex<HashSet<OwnedUserId>>>,
    /// Pushers with a worker running.
    workers: Mutex<HashSet<i64>>,
    /// Set at shutdown: workers stop, and none starts.
    stopped: watch::Sender<bool>,
}

impl Delivery {
    pub fn new(db: Arc<dyn Storage>, rooms: Arc<Rooms>, config: &PushConfig) -> Result<Self, String> {
        Ok(Self {
            db,
            rooms,
            gateways: Gateways::new(config)?,
            users_with_pushers: OnceCell::new(),
            workers: Mutex::new(HashSet::new()),
            stopped: watch::channel(false).0,
        })
    }

    async fn users_with_pushers(&self) -> Result<&Mutex<HashSet<OwnedUserId>>, StorageError> {
        self.users_with_pushers
            .get_or_try_init(|| async {
                let users = self.db.users_with_pushers().await?;
                Ok(Mutex::new(users.into_iter().filter_map(|u| OwnedUserId::try_from(u).ok()).collect()))
            })
            .await
    }

    /// Starts a worker for each pusher in `pusher_ids` without one.
    fn wake(self: &Arc<Self>, pusher_ids: &[i64]) {
        if *self.stopped.borrow() {
            return;
        }
        let mut workers = self.workers.lock().expect("workers mutex");
        for &id in pusher_ids {
            if workers.insert(id) {
                tokio::spawn(run_worker(Arc::downgrade(self), id, self.stopped.subscribe()));
            }
        }
    }

    /// The pusher's queue is empty: its worker ends. A push queued after
    /// the worker looked found the worker still registered and did not
    /// start another, so look once more now that it is gone.
    async fn retire(self: &Arc<Self>, pusher_id: i64) {
        self.workers.lock().expect("workers mutex").remove(&pusher_id);
        if let Ok(Some(_)) = self.db.next_queued_push(pusher_id).await {
            self.wake(&[pusher_id]);
        }
    }

    /// Sends the oldest push of a pusher. `Ok` when it is done with (sent,
    /// or dropped for good); an error means try again later.
    async fn deliver(&self, stored: &StoredPusher, push: &QueuedPush) -> Result<(), DeliveryError> {
        let pusher = &stored.pusher;
        if now_ms() - push.queued_ts > GIVE_UP_AFTER.as_millis() as i64 {
            tracing::warn!(pusher_id = stored.id, event_id = %push.event_id, "giving up on a push queued a day ago");
            self.db.remove_queued_push(push.id).await?;
            return Ok(());
        }
        let Some((url, notification)) = self.notification(pusher, push).await? else {
            // The event (or what the pusher needs) is gone: nothing to say.
            self.db.remove_queued_push(push.id).await?;
            return Ok(());
        };
        match self.gateways.notify(&url, notification).await {
            Ok(rejected) if rejected.contains(&pusher.pushkey) => {
                // Spec: the homeserver should remove a pusher whose pushkey
                // the gateway rejects. Its queue goes with it.
                tracing::info!(pusher_id = stored.id, app_id = %pusher.app_id, "the gateway rejected a pushkey");
                self.db.delete_pusher_by_id(stored.id).await?;
                Ok(())
            }
            Ok(_) => Ok(self.db.remove_queued_push(push.id).await?),
            Err(GatewayError::Refused(reason)) => {
                tracing::warn!(pusher_id = stored.id, %reason, "push gateway refused by the address policy");
                Ok(self.db.remove_queued_push(push.id).await?)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// The gateway URL and the notification of a queued push (`None` when
    /// the event is gone).
    async fn notification(
        &self,
        pusher: &PusherRow,
        push: &QueuedPush,
    ) -> Result<Option<(String, ruma::api::push_gateway::send_event_notification::v1::Notification)>, DeliveryError>
    {
        let (Ok(data), Ok(event_id), Ok(user)) = (
            serde_json::from_str::<HttpPusherData>(&pusher.data),
            OwnedEventId::try_from(push.event_id.as_str()),
            OwnedUserId::try_from(pusher.user_id.as_str()),
        ) else {
            return Ok(None);
        };
        let Some(pdu) = self.rooms.get_pdu(&event_id).await? else { return Ok(None) };
        let details = if wants_event_id_only(&data) { None } else { Some(self.event_details(&pdu, &user).await?) };
        // Spec: `counts.unread` is the user's unread notifications in all rooms.
        let unread = self.db.unread_notification_total(pusher.user_id.clone()).await?;
        let actions: Vec<Action> = serde_json::from_str(&push.actions).unwrap_or_default();
        let event = PushedEvent { event_id, room_id: pdu.room.clone(), event_type: pdu.kind().clone(), details };
        let device = PushDevice {
            app_id: &pusher.app_id,
            pushkey: &pusher.pushkey,
            pushkey_ts_ms: pusher.pushkey_ts,
            data: &data,
        };
        Ok(Some((data.url.clone(), gateway::notification(event, device, &actions, unread))))
    }

    /// What the full format says of an event: its sender's display name
    /// and the room's name (or canonical alias) in the state after it.
    async fn event_details(&self, pdu: &Pdu, user: &UserId) -> Result<EventDetails, DeliveryError> {
        let state = match pdu.state_group {
            Some(group) => self.rooms.state_at_group(group).await?,
            None => self.rooms.current_state(&pdu.room).await?,
        };
        let keys = [
            (StateEventType::RoomName, String::new()),
            (StateEventType::RoomCanonicalAlias, String::new()),
            (StateEventType::RoomMember, pdu.sender().to_string()),
        ];
        let events = self.rooms.get_pdus(keys.iter().filter_map(|k| state.get(k))).await?;
        let field = |key: &(StateEventType, String), name: &str| {
            let event = events.get(state.get(key)?)?;
            let value = event.content_value().get(name)?.as_str()?.to_owned();
            (!value.is_empty()).then_some(value)
        };
        let [name, alias, sender] = &keys;
        Ok(EventDetails {
            sender: pdu.sender().to_owned(),
            sender_display_name: field(sender, "displayname"),
            room_name: field(name, "name").or_else(|| field(alias, "alias")),
            content: pdu.fields.content.clone(),
            user_is_target: *pdu.kind() == TimelineEventType::RoomMember && pdu.state_key() == Some(user.as_str()),
        })
    }
}

async fn run_worker(delivery: Weak<Delivery>, pusher_id: i64, mut stopped: watch::Receiver<bool>) {
    let mut backoff = FIRST_RETRY;
    loop {
        if *stopped.borrow() {
            return;
        }
        let Some(d) = delivery.upgrade() else { return };
        let outcome = match d.db.next_queued_push(pusher_id).await {
            Ok(Some((pusher, push))) => d.deliver(&pusher, &push).await,
            Ok(None) => {
                d.retire(pusher_id).await;
                return;
            }
            Err(e) => Err(e.into()),
        };
        match outcome {
            Ok(()) => backoff = FIRST_RETRY,
            Err(e) => {
                tracing::info!(pusher_id, error = %e, retry_in = ?backoff, "push not delivered");
                drop(d);
                // Wait out the back-off; a new push does not cut it short.
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = stopped.wait_for(|stopped| *stopped) => return,
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

impl Push {
    /// The pushes an event's notifying actions (`notified`: the evaluation
    /// keeps only actions that notify) make: one for each user with
    /// pushers, but none for the devices syncing now (the event reaches
    /// them through that sync).
    pub(super) async fn pushes_to_queue(&self, notified: &[PushActionRow]) -> Result<Vec<PushToQueue>> {
        let users = self.delivery.users_with_pushers().await?.lock().expect("users with pushers mutex");
        Ok(notified
            .iter()
            .filter_map(|row| {
                let user = <&UserId>::try_from(row.user_id.as_str()).ok().filter(|u| users.contains(*u))?;
                let skip_devices = self.active_syncs.syncing_devices(user).into_iter().map(|d| d.to_string()).collect();
                Some(PushToQueue { user_id: row.user_id.clone(), actions: row.actions.clone(), skip_devices })
            })
            .collect())
    }

    /// Queues an event's pushes and wakes their pushers' workers.
    pub(super) async fn queue_pushes(&self, event: &Pdu, pushes: Vec<PushToQueue>) -> Result<()> {
        if pushes.is_empty() {
            return Ok(());
        }
        let queued = self.db.queue_pushes(event.event_id.to_string(), event.room.to_string(), pushes, now_ms()).await?;
        self.delivery.wake(&queued);
        Ok(())
    }

    /// Notes that a user has a pusher now (before it is stored, so no
    /// event notifying them after it is stored is left unqueued).
    pub(super) async fn remember_user_with_pushers(&self, user: &OwnedUserId) -> Result<()> {
        self.delivery.users_with_pushers().await?.lock().expect("users with pushers mutex").insert(user.clone());
        Ok(())
    }

    /// Starts delivering what was queued before a restart.
    pub async fn start_delivery(&self) {
        match self.db.queued_pushers().await {
            Ok(pushers) => self.delivery.wake(&pushers),
            Err(e) => tracing::error!(error = %e, "cannot read the push queue"),
        }
    }

    /// Stops every delivery worker (at shutdown); queued pushes stay queued.
    pub fn stop_delivery(&self) {
        self.delivery.stopped.send_replace(true);
    }
}
