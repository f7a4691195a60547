//! The legacy sync endpoints, deprecated in the spec and still served by
//! Synapse, which clients use to preview rooms (client-server API, "Room
//! Previews" and the earlier "Syncing" of r0): a room's `initialSync` (what
//! matrix-js-sdk's `peekInRoom`, and so Element Web's room preview, reads
//! first), the global `initialSync`, and the `/events` stream, which
//! long-polls on the notifier for new events of the user's rooms or of one
//! room peeked into (world-readable history, the user not in it).
//!
//! Tokens are sync tokens (`s<events>_<misc>_<typing>`): an `end` feeds
//! `/events?from=`, whose events part is also a `/messages` token.

use std::{collections::HashMap, sync::Arc, time::Duration};

use ruma::{
    OwnedRoomId, OwnedUserId, RoomId,
    api::client::filter::FilterDefinition,
    events::{AnyGlobalAccountDataEvent, presence::PresenceEvent, room::member::MembershipState},
    serde::Raw,
};
use serde_json::Value;
use tokio::time::Instant;

use super::{MAX_TIMEOUT, SyncError, SyncRequest, SyncToken, Syncer, v3};
use crate::{
    rooms::{EventFilter, PageRequest, PaginationToken, RoomsError, pdu::Pdu},
    storage::rooms::Direction,
    streams::PresenceInfo,
};

/// How many events a room's `initialSync` returns when the client names
/// no `limit`, and the most it returns.
pub const DEFAULT_LIMIT: usize = 10;
const MAX_LIMIT: usize = 100;
/// The most members whose presence a room's `initialSync` reports.
const MAX_PRESENCE: usize = 100;

/// A room as `initialSync` shows it to one user.
#[derive(Debug)]
pub struct RoomSnapshot {
    pub room_id: OwnedRoomId,
    /// The user's membership, if they have one (none when peeking).
    pub membership: Option<MembershipState>,
    /// The newest events the user may see, oldest first.
    pub messages: Vec<Arc<Pdu>>,
    /// Paginating backwards from here continues before `messages`.
    pub start: PaginationToken,
    /// `/events?from=` this for what comes next.
    pub end: SyncToken,
    /// The state the user may read (the current state, or the state when
    /// they left).
    pub state: Vec<Arc<Pdu>>,
    /// The presence of the room's members, for a member.
    pub presence: Vec<(OwnedUserId, PresenceInfo)>,
    /// The user's tags on the room (`m.tag` room account data), for a
    /// member who has any.
    pub tags: Option<serde_json::Map<String, Value>>,
    /// Whether the room is published in the room directory.
    pub public: bool,
}

/// The global `initialSync`.
#[derive(Debug)]
pub struct GlobalSnapshot {
    pub rooms: Vec<RoomSnapshot>,
    pub account_data: Vec<Raw<AnyGlobalAccountDataEvent>>,
    pub presence: Vec<Raw<PresenceEvent>>,
    pub end: SyncToken,
}

/// What `/events` asks for.
#[derive(Debug, Clone)]
pub struct EventsRequest {
    pub user_id: OwnedUserId,
    /// `None`: from now on.
    pub from: Option<String>,
    /// One room to peek into (or to limit the stream to), else the rooms
    /// the user is in.
    pub room_id: Option<OwnedRoomId>,
    pub timeout: Duration,
}

/// One page of `/events`.
#[derive(Debug)]
pub struct EventsPage {
    /// New events, oldest first.
    pub chunk: Vec<Arc<Pdu>>,
    /// What else changed for the user since `start`, as Synapse's stream
    /// carries it after the room events: account data (a room's with its
    /// `room_id`), receipts and typing of the user's rooms, presence.
    pub other: Vec<Value>,
    pub start: SyncToken,
    pub end: SyncToken,
}

/// An `m.presence` event, as `/sync` carries them.
pub fn presence_event(user: &ruma::UserId, info: &PresenceInfo) -> Value {
    let mut content = serde_json::json!({
        "user_id": user,
        "presence": info.state,
        "currently_active": info.currently_active,
    });
    if let Some(ago) = info.last_active_ago {
        content["last_active_ago"] = ago.into();
    }
    if let Some(msg) = &info.status_msg {
        content["status_msg"] = msg.as_str().into();
    }
    serde_json::json!({"type": "m.presence", "sender": user, "content": content})
}

/// The most events one `/events` answer carries.
const EVENTS_LIMIT: usize = 100;

impl Syncer {
    /// `GET /rooms/{roomId}/initialSync`: for a member (or a user who
    /// left), or anyone when the room's history is world-readable; else
    /// 403 `M_FORBIDDEN`.
    pub async fn room_initial_sync(
        &self,
        user: &OwnedUserId,
        room_id: &RoomId,
        limit: Option<usize>,
    ) -> Result<RoomSnapshot, SyncError> {
        let end = self.notifier.current();
        // `readable_state` is the check: joined, departed, or world-readable.
        let state = self.rooms.readable_state(user, room_id).await?;
        let membership = self.rooms.membership(room_id, user).await?;
        let filter = EventFilter { ignored: self.streams.ignored_users(user).await?, ..EventFilter::default() };
        let limit = limit.unwrap_or(DEFAULT_LIMIT).min(MAX_LIMIT);
        // `limit=0` asks for no messages, only where paging back starts.
        let page = self
            .rooms
            .messages(
                user,
                room_id,
                PageRequest {
                    from: Some(PaginationToken(end.events)),
                    to: None,
                    direction: Direction::Backward,
                    limit: limit.max(1),
                },
                &filter,
            )
            .await?;
        let mut messages = page.chunk;
        if limit == 0 {
            messages.clear();
        }
        messages.reverse();
        let start = match messages.first().and_then(|p| p.stream_ordering) {
            Some(first) => PaginationToken(first - 1),
            None => page.start,
        };
        let joined = membership == Some(MembershipState::Join);
        let presence = if joined { self.members_presence(user, room_id).await? } else { Vec::new() };
        let tags = match joined {
            true => Some(self.streams.tags(user, room_id).await?).filter(|t| !t.is_empty()),
            false => None,
        };
        Ok(RoomSnapshot {
            room_id: room_id.to_owned(),
            membership,
            messages,
            start,
            end,
            state: self.rooms.state_events(&state).await?,
            presence,
            tags,
            public: self.rooms.directory_visibility(room_id).await?,
        })
    }

    async fn members_presence(
        &self,
        user: &OwnedUserId,
        room_id: &RoomId,
    ) -> Result<Vec<(OwnedUserId, PresenceInfo)>, SyncError> {
        if !self.streams.presence_enabled() {
            return Ok(Vec::new());
        }
        let mut out = Vec::new();
        for member in self.rooms.joined_members(room_id).await?.into_iter().take(MAX_PRESENCE) {
            // A member this server knows nothing of has no presence to show.
            if let Ok(info) = self.streams.get_presence(user, &member).await {
                out.push((member, info));
            }
        }
        Ok(out)
    }

    /// `GET /initialSync`: every room the user is in, as a room's
    /// `initialSync` shows it, with the global account data and presence
    /// an initial `/sync` would carry.
    pub async fn initial_sync(
        &self,
        user: &OwnedUserId,
        device: &ruma::DeviceId,
        limit: Option<usize>,
    ) -> Result<GlobalSnapshot, SyncError> {
        // No rooms: they are read below, each as a room's `initialSync`.
        let mut filter = FilterDefinition::default();
        filter.room.rooms = Some(Vec::new());
        let request = SyncRequest {
            user_id: user.clone(),
            device_id: device.to_owned(),
            since: None,
            filter: Arc::new(filter),
            full_state: false,
            set_presence: None,
            timeout: Duration::ZERO,
        };
        let response = Box::pin(v3::compute(self, &request, None)).await?;
        let end = SyncToken::parse(&response.next_batch).ok_or(SyncError::InvalidToken)?;
        let mut rooms = Vec::new();
        for room_id in self.rooms.joined_rooms(user).await? {
            rooms.push(self.room_initial_sync(user, &room_id, limit).await?);
        }
        // The push rules are `/sync`'s to synthesize; Synapse's
        // `initialSync` carries only the account data a client stored.
        let account_data = response
            .account_data
            .events
            .into_iter()
            .filter(|e| e.get_field::<String>("type").ok().flatten().as_deref() != Some("m.push_rules"))
            .collect();
        // The user's own presence first, as Synapse lists it.
        let mut presence = Vec::new();
        if self.streams.presence_enabled()
            && let Ok(info) = self.streams.get_presence(user, user).await
            && let Ok(own) = serde_json::value::to_raw_value(&presence_event(user, &info))
        {
            presence.push(Raw::from_json(own));
        }
        presence.extend(
            response
                .presence
                .events
                .into_iter()
                .filter(|e| e.get_field::<String>("sender").ok().flatten().as_deref() != Some(user.as_str())),
        );
        Ok(GlobalSnapshot { rooms, account_data, presence, end })
    }

    /// `GET /events`: the events after `from` (now, without one) in the
    /// user's rooms, or in `room_id` alone, which a user not in it may
    /// peek into when its history is world-readable. Waits up to the
    /// timeout when there is none yet.
    pub async fn events(&self, req: &EventsRequest) -> Result<EventsPage, SyncError> {
        let start = match &req.from {
            Some(from) => SyncToken::parse(from).ok_or(SyncError::InvalidToken)?,
            None => self.notifier.current(),
        };
        let peeking = match &req.room_id {
            Some(room) => {
                let joined = self.rooms.membership(room, &req.user_id).await? == Some(MembershipState::Join);
                if !joined {
                    self.rooms.require_readable(&req.user_id, room).await?;
                }
                !joined
            }
            None => false,
        };
        // A peeker is named by no commit: the room's own handle wakes it.
        let listener = match (&req.room_id, peeking) {
            (Some(room), true) => self.notifier.room_listener(room),
            _ => self.notifier.listener(&req.user_id),
        };
        let filter = EventFilter { ignored: self.streams.ignored_users(&req.user_id).await?, ..EventFilter::default() };
        let deadline = Instant::now() + req.timeout.min(MAX_TIMEOUT);
        loop {
            // Register before looking, as `sync` does: nothing committed
            // meanwhile is missed.
            let notified = listener.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let until = self.notifier.current();
            let rooms = match &req.room_id {
                Some(room) => vec![room.clone()],
                None => self.rooms.joined_rooms(&req.user_id).await?,
            };
            let (chunk, covered) = self.new_events(&req.user_id, &rooms, start.events, until.events, &filter).await?;
            let (other, other_until) = match peeking {
                true => (Vec::new(), until),
                false => self.other_events(&req.user_id, start, until).await?,
            };
            if !chunk.is_empty() || !other.is_empty() || Instant::now() >= deadline || self.is_closing() {
                let end = SyncToken { events: covered, ..other_until };
                return Ok(EventsPage { chunk, other, start, end });
            }
            tokio::select! {
                _ = &mut notified => {}
                _ = tokio::time::sleep_until(deadline) => {}
            }
        }
    }

    /// The account data, receipts, typing and presence of `user` after
    /// `start`, read as an incremental `/sync` without timelines reads them
    /// (on no device: no to-device message is read or acknowledged), and
    /// the position they cover.
    async fn other_events(
        &self,
        user: &OwnedUserId,
        start: SyncToken,
        until: SyncToken,
    ) -> Result<(Vec<Value>, SyncToken), SyncError> {
        if start.misc >= until.misc && start.typing >= until.typing {
            return Ok((Vec::new(), SyncToken { events: until.events, ..start }));
        }
        let mut filter = FilterDefinition::default();
        filter.room.timeline.limit = Some(0u32.into());
        filter.room.state.types = Some(Vec::new());
        let request = SyncRequest {
            user_id: user.clone(),
            device_id: ruma::OwnedDeviceId::from(""),
            since: None,
            filter: Arc::new(filter),
            full_state: false,
            set_presence: None,
            timeout: Duration::ZERO,
        };
        // The room events are `/events`' own: this reads from `until`'s.
        let since = SyncToken { events: until.events, ..start };
        let response = Box::pin(v3::compute(self, &request, Some(since))).await?;
        let next = SyncToken::parse(&response.next_batch).ok_or(SyncError::InvalidToken)?;
        let mut other: Vec<Value> = Vec::new();
        let json = |raw: &str| serde_json::from_str::<Value>(raw).ok();
        other.extend(response.account_data.events.iter().filter_map(|e| json(e.json().get())));
        for (room_id, room) in &response.rooms.join {
            let with_room = |mut event: Value| {
                if let Some(fields) = event.as_object_mut() {
                    fields.insert("room_id".into(), Value::String(room_id.to_string()));
                }
                event
            };
            other.extend(room.account_data.events.iter().filter_map(|e| json(e.json().get())).map(with_room));
            other.extend(room.ephemeral.events.iter().filter_map(|e| json(e.json().get())).map(with_room));
        }
        other.extend(response.presence.events.iter().filter_map(|e| json(e.json().get())));
        Ok((other, SyncToken { events: until.events, ..next }))
    }

    /// The visible events of `rooms` in `(after, until]`, oldest first, at
    /// most `EVENTS_LIMIT`, and the position they cover up to.
    async fn new_events(
        &self,
        user: &OwnedUserId,
        rooms: &[OwnedRoomId],
        after: i64,
        until: i64,
        filter: &EventFilter,
    ) -> Result<(Vec<Arc<Pdu>>, i64), SyncError> {
        if after >= until {
            return Ok((Vec::new(), until.max(after)));
        }
        let mut events: HashMap<i64, Arc<Pdu>> = HashMap::new();
        // A room with a full page may have more after it: the answer
        // covers no further than its last event.
        let mut covered = until;
        for room in rooms {
            let page = PageRequest {
                from: Some(PaginationToken(after)),
                to: Some(PaginationToken(until)),
                direction: Direction::Forward,
                limit: EVENTS_LIMIT,
            };
            match self.rooms.messages(user, room, page, filter).await {
                Ok(page) => {
                    if page.chunk.len() >= EVENTS_LIMIT
                        && let Some(last) = page.chunk.last().and_then(|p| p.stream_ordering)
                    {
                        covered = covered.min(last);
                    }
                    events.extend(page.chunk.into_iter().filter_map(|p| Some((p.stream_ordering?, p))));
                }
                // A room left or never readable meanwhile has nothing more.
                Err(RoomsError::Forbidden(_) | RoomsError::NotFound(_)) => {}
                Err(e) => return Err(e.into()),
            }
        }
        let mut chunk: Vec<(i64, Arc<Pdu>)> = events.into_iter().filter(|(p, _)| *p <= covered).collect();
        chunk.sort_by_key(|(position, _)| *position);
        if chunk.len() > EVENTS_LIMIT {
            chunk.truncate(EVENTS_LIMIT);
            covered = chunk.last().map_or(covered, |(position, _)| *position);
        }
        Ok((chunk.into_iter().map(|(_, p)| p).collect(), covered))
    }
}
