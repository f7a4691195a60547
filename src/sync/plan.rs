//! The read plan of one sync (client-server API, "Syncing"): the stream
//! positions it covers, the rooms in view, and the few batched reads every
//! section is served from. No section reads per room or per event: each
//! names in a room's query what it needs read, and takes its part of the
//! rows.
//!
//! The reads: everything about the user and device in one (`read_user`);
//! then, over the rooms in view (`read_rooms`), their timelines and
//! receipts in one, and the state groups, summaries and unread counts of
//! the rooms kept in one more, and the bundled aggregations of all their
//! timeline events in one more. Between them the `Rooms` caches sections
//! read from (resolved state groups, parsed events) are warmed in batches.
//!
//! An assembler chooses the rooms (`RoomView`s), runs the plan and places
//! what the sections made: `v3` builds the `/sync` response. Sliding sync
//! (MSC4186, `v5`) is the other assembler over the same plan and sections:
//! its lists and room subscriptions give the `RoomView`s (a room entering
//! a window is `initial`, and each carries its own `timeline_limit`), its
//! `required_state` is one more filter on the state a room keeps, beside
//! lazy loading (`StateWanted::Required`, `sections::state`), and its
//! extensions are the sections of the same name (`to_device`,
//! `device_keys` for e2ee, `account_data`, `ephemeral` for receipts and
//! typing), fed from the same rows. An extension left off leaves its part
//! of the queries empty (a room's receipt range through the scope's
//! `EphemeralOptions`, or `to_device_after` in `SyncUserQuery`).

use ruma::{OwnedDeviceId, OwnedEventId, OwnedUserId};
use serde_json::Value;

use super::scope::{Membership, RoomView, Scope, Window};
use super::{
    SyncError, Syncer,
    sections::{
        ephemeral::{self, RoomEphemeral},
        rooms::{self, RoomTimeline},
    },
};
use crate::storage::sync::{SyncRoomQuery, SyncUserQuery, SyncUserRows};

/// One room through the passes: its view, and what each section has of
/// it so far.
pub struct RoomPlan {
    pub view: RoomView,
    pub timeline: RoomTimeline,
    pub ephemeral: RoomEphemeral,
    pub account_data: Vec<Value>,
}

impl RoomPlan {
    pub fn new(view: RoomView, account_data: Vec<Value>) -> Self {
        Self { timeline: RoomTimeline::new(&view), ephemeral: RoomEphemeral::default(), account_data, view }
    }

    /// Whether an incremental sync has nothing for this joined room (once
    /// its timeline, state and ephemeral events are known).
    fn nothing_new(&self) -> bool {
        self.view.membership == Membership::Join
            && self.timeline.nothing_new(&self.view)
            && self.ephemeral.events.is_empty()
            && self.account_data.is_empty()
    }
}

/// Everything about the user and device, in one read; to-device messages
/// after `to_device_after` (see `SyncUserQuery`). Raises
/// `window.until.events` to the newest membership change found.
pub async fn read_user(
    syncer: &Syncer,
    user_id: &OwnedUserId,
    device_id: &OwnedDeviceId,
    window: &mut Window,
    to_device_after: Option<Option<i64>>,
) -> Result<SyncUserRows, SyncError> {
    let rows = syncer
        .db
        .sync_user_rows(SyncUserQuery {
            user_id: user_id.to_string(),
            device_id: device_id.to_string(),
            since: window.since.map(|s| (s.events, s.misc)),
            until_events: window.until.events,
            until_misc: window.until.misc,
            presence: syncer.streams.presence_enabled(),
            to_device_after,
        })
        .await?;
    // A membership committed before the notifier heard of it: every event
    // up to it is committed too, so the response may safely cover it.
    window.until.events = rows.until_events;
    Ok(rows)
}

/// Reads the timelines, receipts, state and summaries of every room in
/// view with a few batched reads, not a few per room.
pub async fn read_rooms(scope: &Scope<'_>, plans: &mut [RoomPlan]) -> Result<(), SyncError> {
    read_timelines(scope, plans).await?;
    // What an incremental sync has for a room it may leave out is known
    // without further reads: details are read only for rooms it keeps.
    for plan in plans.iter_mut() {
        ephemeral::collect(scope, &plan.view, &mut plan.ephemeral);
    }
    read_details(scope, plans).await?;
    // After the details: lazy-loaded members include the member summary's
    // heroes. (A complete timeline's state is empty but for the members
    // of its senders, so a room without events stays left out.)
    for plan in plans.iter_mut().filter(|p| !p.timeline.needs_state_groups(&p.view)) {
        rooms::state_without_groups(scope, &plan.view, &mut plan.timeline).await?;
    }
    resolve_state(scope, plans).await?;
    preload_referenced(scope, plans).await?;
    read_aggregations(scope, plans).await
}

/// The bundled aggregations (`unsigned.m.relations`) of every timeline
/// event of the response, in one read for all rooms (and one more for the
/// edits and latest thread replies they name, only when there are any).
async fn read_aggregations(scope: &Scope<'_>, plans: &mut [RoomPlan]) -> Result<(), SyncError> {
    let events: Vec<std::sync::Arc<crate::rooms::pdu::Pdu>> =
        plans.iter().flat_map(|p| p.timeline.slice.events.iter().cloned()).collect();
    let aggregations = scope.syncer.rooms.bundled_aggregations(&events, scope.user_id).await?;
    if aggregations.is_empty() {
        return Ok(());
    }
    let aggregations = std::sync::Arc::new(aggregations);
    for plan in plans.iter_mut() {
        plan.timeline.aggregations = aggregations.clone();
    }
    Ok(())
}

/// The first pass over the rooms: timelines and receipts. A joined room
/// with new events is almost surely returned, so its unread count (and
/// for a room new to the client, its member summary) is read here too.
async fn read_timelines(scope: &Scope<'_>, plans: &mut [RoomPlan]) -> Result<(), SyncError> {
    let syncer = scope.syncer;
    let queries = plans
        .iter()
        .map(|p| SyncRoomQuery {
            room_id: p.view.room_id.to_string(),
            timeline: rooms::timeline_query(&p.view),
            receipts: ephemeral::receipts_range(scope, &p.view),
            unread: rooms::unread_query(scope, &p.view),
            members: rooms::summary_query(&p.view),
        })
        .collect();
    let room_rows = syncer.db.sync_room_rows(scope.user_id.to_string(), queries).await?;
    let mut stored = Vec::with_capacity(plans.len());
    for (plan, rows) in plans.iter_mut().zip(room_rows) {
        plan.ephemeral.receipts = rows.receipts;
        stored.push(rooms::take_rows(scope, &plan.view, &mut plan.timeline, rows.details, rows.events)?);
    }
    // The state groups the visibility rules look at, in one read.
    syncer.rooms.preload_state_groups(stored.iter().flatten().filter_map(|p| p.state_group)).await?;
    for (plan, events) in plans.iter_mut().zip(stored) {
        rooms::cut_timeline(scope, &plan.view, &mut plan.timeline, events).await?;
    }
    Ok(())
}

/// The second pass, over the rooms the response keeps: the state groups,
/// member summaries and unread counts the first pass did not tell.
async fn read_details(scope: &Scope<'_>, plans: &mut [RoomPlan]) -> Result<(), SyncError> {
    let kept: Vec<usize> = (0..plans.len())
        .filter(|i| {
            let p = &plans[*i];
            !p.nothing_new() && p.timeline.lacks_details(&p.view)
        })
        .collect();
    let queries = kept.iter().map(|i| rooms::details_query(scope, &plans[*i].view, &plans[*i].timeline)).collect();
    let details = scope.syncer.db.sync_room_details(scope.user_id.to_string(), queries).await?;
    for (i, details) in kept.into_iter().zip(details) {
        let plan = &mut plans[i];
        rooms::take_details(scope, &plan.view, &mut plan.timeline, details);
    }
    Ok(())
}

/// The state sent with new and gappy timelines, from state groups
/// resolved in one read.
async fn resolve_state(scope: &Scope<'_>, plans: &mut [RoomPlan]) -> Result<(), SyncError> {
    let mut groups = Vec::new();
    for plan in plans.iter_mut().filter(|p| p.timeline.needs_state_groups(&p.view)) {
        plan.timeline.state_groups_needed(&plan.view, &mut groups);
    }
    scope.syncer.rooms.preload_state_groups(groups).await?;
    for plan in plans.iter_mut().filter(|p| p.timeline.needs_state_groups(&p.view)) {
        rooms::state_from_groups(scope, &plan.view, &mut plan.timeline).await?;
    }
    Ok(())
}

/// The events the client formats refer to (state replaced, redactions):
/// those not cached are fetched with one read.
async fn preload_referenced(scope: &Scope<'_>, plans: &[RoomPlan]) -> Result<(), SyncError> {
    let rooms = &scope.syncer.rooms;
    let state_events = rooms.get_pdus(plans.iter().flat_map(|p| p.timeline.state.values())).await?;
    let referenced: Vec<OwnedEventId> = plans
        .iter()
        .flat_map(|p| p.timeline.slice.events.iter())
        .chain(state_events.values())
        .flat_map(|p| p.replaces_state.iter().chain(p.redacted_by.iter()))
        .cloned()
        .collect();
    rooms.get_pdus(referenced.iter()).await?;
    Ok(())
}
