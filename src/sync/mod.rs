//! Sync (client-server API, "Syncing"): one function computes the response
//! for (user, device, since, filter); the long-poll `/sync`, the WebSocket
//! extension and Server-Sent Events all call it and differ only in how
//! they wait and deliver. `plan` reads what a response needs in a few
//! batched passes, `sections` turn those reads into the parts of a
//! response, and `v3` assembles the `/sync` response from them; `v5`
//! assembles sliding sync's (MSC4186) from the same plan and sections, per
//! connection. The notifier (`commit::notifier`) wakes waiting syncs;
//! `commit::token` encodes stream positions.

pub mod legacy;
mod members_sent;
mod plan;
mod scope;
mod sections;
mod shape;
mod v3;
mod v5;

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use ruma::{
    OwnedDeviceId, OwnedUserId,
    api::client::{
        filter::FilterDefinition,
        sync::sync_events::{v3 as sync_v3, v5 as sync_v5},
    },
};
use tokio::time::Instant;

pub use self::{shape::response_json, v3::is_empty, v5::SlidingSyncRequest};
pub use crate::commit::SyncToken;
use crate::{
    commit::Notifier,
    push::ActiveSyncs,
    rooms::{Rooms, RoomsError},
    storage::{Storage, StorageError},
    streams::{Streams, StreamsError},
};

#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error("the `since` token is not valid")]
    InvalidToken,
    /// A sliding sync `pos` this server does not know (any more).
    #[error("unknown position")]
    UnknownPos,
    #[error(transparent)]
    Rooms(#[from] RoomsError),
    #[error(transparent)]
    Streams(#[from] StreamsError),
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// What sync reads from, and nothing more: the batched sync reads (and the
/// to-device acknowledgement) in storage, the room caches, the typing and
/// presence streams, and the notifier's positions and wake-ups; and the
/// registry of devices syncing now, which push delivery reads.
pub struct Syncer {
    db: Arc<dyn Storage>,
    rooms: Arc<Rooms>,
    streams: Arc<Streams>,
    notifier: Arc<dyn Notifier>,
    active_syncs: Arc<ActiveSyncs>,
    /// Sliding sync's connections and what each has sent.
    connections: v5::connection::Connections,
    /// The membership events lazy-loading `/sync`s sent each device.
    members_sent: members_sent::MembersSent,
    /// Set at shutdown: held syncs answer with what they have.
    closing: AtomicBool,
}

impl Syncer {
    pub fn new(
        db: Arc<dyn Storage>,
        rooms: Arc<Rooms>,
        streams: Arc<Streams>,
        notifier: Arc<dyn Notifier>,
        active_syncs: Arc<ActiveSyncs>,
    ) -> Self {
        Self {
            db,
            rooms,
            streams,
            notifier,
            active_syncs,
            connections: Default::default(),
            members_sent: Default::default(),
            closing: AtomicBool::new(false),
        }
    }

    /// Makes every held sync answer now and none wait from now on, so the
    /// server stops without waiting out the long-polls' timeouts.
    pub fn close(&self) {
        self.closing.store(true, Ordering::SeqCst);
        self.notifier.wake_all();
    }

    fn is_closing(&self) -> bool {
        self.closing.load(Ordering::SeqCst)
    }
}

/// One sync, whatever the transport.
#[derive(Debug, Clone)]
pub struct SyncRequest {
    pub user_id: OwnedUserId,
    pub device_id: OwnedDeviceId,
    pub since: Option<String>,
    pub filter: Arc<FilterDefinition>,
    pub full_state: bool,
    /// `online`, `unavailable` or `offline`; `None` leaves presence alone.
    pub set_presence: Option<String>,
    pub timeout: Duration,
}

/// The longest a sync waits, whatever the client asks.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(300);

/// Computes a sync response, waiting up to the timeout for something new
/// when the sync is incremental and nothing is pending.
pub async fn sync(syncer: &Syncer, req: &SyncRequest) -> Result<sync_v3::Response, SyncError> {
    // The device gets what is committed meanwhile from this sync, so its
    // pusher is not pushed to while it runs or waits.
    let _active = syncer.active_syncs.enter(&req.user_id, &req.device_id);
    if let Some(state) = &req.set_presence {
        Box::pin(syncer.streams.touch_presence(&req.user_id, state)).await?;
    }
    let since = match &req.since {
        Some(s) => Some(SyncToken::parse(s).ok_or(SyncError::InvalidToken)?),
        None => None,
    };
    let deadline = Instant::now() + req.timeout.min(MAX_TIMEOUT);
    let listener = syncer.notifier.listener(&req.user_id);
    loop {
        // Register for wake-ups before looking, so nothing committed while
        // the response is computed can be missed.
        let notified = listener.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        // Boxed: computing takes a large future, which a sync that then
        // waits (for minutes, by the thousand) should not keep.
        let response = Box::pin(v3::compute(syncer, req, since)).await?;
        let nothing_new = since.is_some() && !req.full_state && is_empty(&response);
        if !nothing_new || Instant::now() >= deadline || syncer.is_closing() {
            return Ok(response);
        }
        // Not kept while waiting: even empty, it holds a few allocations.
        drop(response);
        tokio::select! {
            _ = &mut notified => {}
            _ = tokio::time::sleep_until(deadline) => {}
        }
    }
}

/// Computes a sliding sync response on a connection, waiting up to the
/// timeout for something new when the request continues from a `pos` and
/// nothing is pending, or until a newer request on the connection
/// supersedes it (whose client will not use this response: it gets its
/// own `pos` back and nothing else).
pub async fn sliding_sync(syncer: &Syncer, req: &SlidingSyncRequest) -> Result<sync_v5::Response, SyncError> {
    // As with `sync`: the device is not pushed to while it syncs.
    let _active = syncer.active_syncs.enter(&req.user_id, &req.device_id);
    if let Some(state) = &req.set_presence {
        Box::pin(syncer.streams.touch_presence(&req.user_id, state)).await?;
    }
    let connections = &syncer.connections;
    let ticket = connections
        .begin(&req.user_id, &req.device_id, &req.conn_id, req.pos.as_deref())
        .map_err(|_| SyncError::UnknownPos)?;
    // A new connection answers at once (MSC4186: `timeout` is ignored
    // without a `pos`).
    let timeout = if req.pos.is_some() { req.timeout.min(MAX_TIMEOUT) } else { Duration::ZERO };
    let deadline = Instant::now() + timeout;
    let listener = syncer.notifier.listener(&req.user_id);
    loop {
        // Register for wake-ups before looking, as `sync` does.
        let notified = listener.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let (mut response, state, counts_changed) = Box::pin(v5::compute(syncer, req, &ticket.state)).await?;
        let current = connections.is_current(&ticket);
        if !v5::is_empty(&response, counts_changed) || Instant::now() >= deadline || !current || syncer.is_closing() {
            return Ok(match connections.commit(&ticket, state) {
                Some(pos) => {
                    response.pos = pos;
                    response
                }
                None => sync_v5::Response::new(ticket.base_pos(connections).unwrap_or_default()),
            });
        }
        drop((response, state));
        tokio::select! {
            _ = &mut notified => {}
            _ = ticket.superseded() => {}
            _ = tokio::time::sleep_until(deadline) => {}
        }
    }
}
