//! Reading a room: `/messages` pagination, `/context`, `/event`, state
//! reads and `timestamp_to_event`, always through the visibility rules.
//!
//! A pagination token `s<N>` names the boundary just after stream position
//! N: paginating backwards from it returns events at or before N, forwards
//! returns events after N.

use std::{collections::HashSet, sync::Arc};

use ruma::{
    OwnedEventId, OwnedUserId, RoomId,
    events::{StateEventType, TimelineEventType, room::member::MembershipState},
};

use super::{Rooms, RoomsError, StateMap, parse_stored, pdu::Pdu, visibility::VisibilityCheck};
use crate::storage::rooms::Direction;

/// A position in a room's timeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PaginationToken(pub i64);

impl PaginationToken {
    pub fn parse(s: &str) -> Option<Self> {
        // Accept our own `s<N>` and, for sync tokens that carry the
        // timeline position first, `s<N>_...`.
        let digits = s.strip_prefix('s')?;
        let digits = digits.split('_').next()?;
        digits.parse::<i64>().ok().map(Self)
    }
}

impl std::fmt::Display for PaginationToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "s{}", self.0)
    }
}

/// Which page of a room's timeline to read.
#[derive(Debug, Clone, Copy)]
pub struct PageRequest {
    pub from: Option<PaginationToken>,
    pub to: Option<PaginationToken>,
    pub direction: Direction,
    pub limit: usize,
}

/// One page of `/messages`.
#[derive(Debug)]
pub struct MessagesPage {
    pub chunk: Vec<Arc<Pdu>>,
    pub start: PaginationToken,
    pub end: Option<PaginationToken>,
}

/// Which events a page keeps: the part of a room event filter that
/// pagination applies (types, senders; `*` wildcards at the end), and the
/// users the reader ignores.
#[derive(Debug, Default, Clone)]
pub struct EventFilter {
    pub types: Option<Vec<String>>,
    pub not_types: Vec<String>,
    pub senders: Option<Vec<String>>,
    pub not_senders: Vec<String>,
    /// The reader's ignored users (`m.ignored_user_list`), whose events
    /// are left out but for state events.
    pub ignored: Arc<HashSet<OwnedUserId>>,
}

fn glob_match(pattern: &str, value: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => value.starts_with(prefix),
        None => pattern == value,
    }
}

impl EventFilter {
    /// Whether the event is from a user the reader ignores. Spec: "Ignoring
    /// Users": state events of ignored users are still sent, so that the
    /// room looks the same to everyone.
    pub fn ignores(&self, pdu: &Pdu) -> bool {
        !self.ignored.is_empty() && pdu.state_key().is_none() && self.ignored.contains(pdu.sender())
    }

    /// Whether the filter's `types` and `not_types` let events of type
    /// `kind` through.
    pub fn allows_type(&self, kind: &str) -> bool {
        !self.not_types.iter().any(|p| glob_match(p, kind))
            && self.types.as_ref().is_none_or(|types| types.iter().any(|p| glob_match(p, kind)))
    }

    pub fn allows(&self, pdu: &Pdu) -> bool {
        if self.ignores(pdu) {
            return false;
        }
        let sender = pdu.sender().as_str();
        if !self.allows_type(&pdu.kind().to_string()) || self.not_senders.iter().any(|s| s == sender) {
            return false;
        }
        if let Some(senders) = &self.senders
            && !senders.iter().any(|s| s == sender)
        {
            return false;
        }
        true
    }
}

impl Rooms {
    /// The client format of an event, with `unsigned` filled in:
    /// `prev_content` of state events, `redacted_because`, and the
    /// `transaction_id` when `viewer` is the device that sent it.
    pub async fn client_event(
        &self,
        pdu: &Pdu,
        viewer: Option<(&ruma::UserId, &ruma::DeviceId)>,
    ) -> Result<serde_json::Value, RoomsError> {
        use serde_json::Value;
        let mut event = pdu.to_client_event();
        let unsigned = event.get_mut("unsigned").and_then(Value::as_object_mut).expect("to_client_event sets unsigned");
        if let Some(replaced) = &pdu.replaces_state
            && let Some(prev) = self.get_pdu(replaced).await?
        {
            unsigned.insert("prev_content".into(), prev.content_value());
            unsigned.insert("replaces_state".into(), Value::String(replaced.to_string()));
            unsigned.insert("prev_sender".into(), Value::String(prev.sender().to_string()));
        }
        if let Some(redaction) = &pdu.redacted_by
            && let Some(because) = self.get_pdu(redaction).await?
        {
            unsigned.insert("redacted_because".into(), Value::Object(because.to_client_event()));
        }
        if let Some((user, device)) = viewer
            && pdu.sender() == user
            && let Some((sent_by, txn)) = &pdu.txn
            && sent_by == device
        {
            unsigned.insert("transaction_id".into(), Value::String(txn.clone()));
        }
        Ok(Value::Object(event))
    }

    /// A visibility check for one user in one room (used by sync).
    pub async fn visibility_for<'a>(
        &'a self,
        room_id: &'a RoomId,
        user: &'a OwnedUserId,
    ) -> Result<VisibilityCheck<'a>, RoomsError> {
        VisibilityCheck::new(self, room_id, user).await
    }

    pub(super) async fn visibility<'a>(
        &'a self,
        room_id: &'a RoomId,
        user: &'a OwnedUserId,
    ) -> Result<VisibilityCheck<'a>, RoomsError> {
        self.current_state(room_id).await?;
        let mut check = VisibilityCheck::new(self, room_id, user).await?;
        if !check.may_read_room().await? {
            return Err(RoomsError::Forbidden("you are not allowed to read this room".into()));
        }
        Ok(check)
    }

    /// Refuses a user with no standing to read the room at all: neither a
    /// membership of any kind nor a world-readable history.
    pub async fn require_readable(&self, user: &OwnedUserId, room_id: &RoomId) -> Result<(), RoomsError> {
        self.visibility(room_id, user).await.map(drop)
    }

    /// `/messages`: up to `limit` visible events from `from` in `direction`.
    pub async fn messages(
        &self,
        user: &OwnedUserId,
        room_id: &RoomId,
        page: PageRequest,
        filter: &EventFilter,
    ) -> Result<MessagesPage, RoomsError> {
        let PageRequest { from, to, direction, limit } = page;
        let mut check = self.visibility(room_id, user).await?;
        let start = match (from, direction) {
            (Some(t), _) => t,
            (None, Direction::Backward) => PaginationToken(self.db.room_max_stream(room_id.to_string()).await?),
            (None, Direction::Forward) => PaginationToken(0),
        };
        let limit = limit.clamp(1, 1000);
        let mut chunk = Vec::new();
        let mut cursor = start.0;
        let mut exhausted = false;
        // Whether the earliest event looked at going back is the room's
        // create event: the start of its history, here and everywhere.
        let mut reached_create = false;
        while chunk.len() < limit {
            let batch = self
                .db
                .room_events(room_id.to_string(), cursor, to.map(|t| t.0), direction, (limit - chunk.len()).max(16))
                .await?;
            if batch.is_empty() {
                exhausted = true;
                break;
            }
            for stored in batch {
                let position = stored.stream_ordering;
                let pdu = Arc::new(parse_stored(stored)?);
                reached_create = pdu.kind() == &TimelineEventType::RoomCreate;
                cursor = match direction {
                    Direction::Backward => position - 1,
                    Direction::Forward => position,
                };
                if filter.allows(&pdu) && check.can_see(&pdu).await? {
                    chunk.push(pdu);
                    if chunk.len() == limit {
                        break;
                    }
                }
            }
        }
        // Spec: `end` is omitted when there are no more events. Going
        // back, that is when the start of the room's history here is
        // reached. Going forward, events may still come: a page that
        // returned some gives `end` to go on from, as Synapse does, so a
        // client never takes the present for the end of the room.
        if !exhausted && direction == Direction::Backward {
            exhausted =
                self.db.room_events(room_id.to_string(), cursor, to.map(|t| t.0), direction, 1).await?.is_empty();
        }
        // Going back, a full page that ends where this server's history
        // of the room ends (not at its create event: a room joined over
        // federation) may go on with history other servers have, which
        // the next page backfills.
        let more_may_come = match direction {
            Direction::Forward => !chunk.is_empty(),
            Direction::Backward => chunk.len() == limit && !reached_create,
        };
        let end = if exhausted && !more_may_come { None } else { Some(PaginationToken(cursor)) };
        Ok(MessagesPage { chunk, start, end })
    }

    /// `/event/{eventId}`.
    pub async fn event_for_user(
        &self,
        user: &OwnedUserId,
        room_id: &RoomId,
        event_id: &OwnedEventId,
    ) -> Result<Arc<Pdu>, RoomsError> {
        let not_found = || RoomsError::NotFound("event not found".into());
        let pdu = self.get_pdu(event_id).await?.ok_or_else(not_found)?;
        if pdu.room != room_id {
            return Err(not_found());
        }
        let mut check = self.visibility(room_id, user).await.map_err(|_| not_found())?;
        if !check.can_see(&pdu).await? {
            return Err(not_found());
        }
        Ok(pdu)
    }

    /// `/context/{eventId}`: the event, `limit` events around it, and the
    /// state at it.
    pub async fn context(
        &self,
        user: &OwnedUserId,
        room_id: &RoomId,
        event_id: &OwnedEventId,
        limit: usize,
        filter: &EventFilter,
    ) -> Result<(Arc<Pdu>, MessagesPage, MessagesPage, Vec<Arc<Pdu>>), RoomsError> {
        // A user who may not read the room at all is refused as such (403,
        // as Synapse and Sytest's "/context/ on non world readable room
        // does not work"); one who may, but not this event, finds no event.
        self.require_readable(user, room_id).await?;
        let event = self.event_for_user(user, room_id, event_id).await?;
        if filter.ignores(&event) {
            return Err(RoomsError::NotFound("event not found".into()));
        }
        let position = event.stream_ordering.unwrap_or(0);
        let before_n = limit / 2;
        let after_n = limit - before_n;
        let before = if before_n > 0 {
            let page = PageRequest {
                from: Some(PaginationToken(position - 1)),
                to: None,
                direction: Direction::Backward,
                limit: before_n,
            };
            self.messages(user, room_id, page, filter).await?
        } else {
            MessagesPage {
                chunk: vec![],
                start: PaginationToken(position - 1),
                end: Some(PaginationToken(position - 1)),
            }
        };
        let after = if after_n > 0 {
            let page = PageRequest {
                from: Some(PaginationToken(position)),
                to: None,
                direction: Direction::Forward,
                limit: after_n,
            };
            self.messages(user, room_id, page, filter).await?
        } else {
            MessagesPage { chunk: vec![], start: PaginationToken(position), end: Some(PaginationToken(position)) }
        };
        let state = match event.state_group {
            Some(group) => self.state_events(&*self.state_at_group(group).await?).await?,
            None => vec![],
        };
        Ok((event, before, after, state))
    }

    /// Parsed events of a state map.
    pub async fn state_events(&self, state: &StateMap) -> Result<Vec<Arc<Pdu>>, RoomsError> {
        let events = self.get_pdus(state.values()).await?;
        let mut out: Vec<Arc<Pdu>> = events.into_values().collect();
        out.sort_by_key(|p| p.stream_ordering);
        Ok(out)
    }

    /// The state a user may read: the current state when joined (or the
    /// room is world-readable), else the state when they left.
    pub async fn readable_state(&self, user: &OwnedUserId, room_id: &RoomId) -> Result<StateMap, RoomsError> {
        let current = self.current_state(room_id).await?;
        match self.membership(room_id, user).await? {
            Some(MembershipState::Join) => Ok((*current).clone()),
            Some(MembershipState::Leave | MembershipState::Ban) => {
                let id = current
                    .get(&(StateEventType::RoomMember, user.to_string()))
                    .ok_or_else(|| RoomsError::Forbidden("you are not in this room".into()))?;
                let leave =
                    self.get_pdu(id).await?.ok_or_else(|| RoomsError::Internal("member event missing".into()))?;
                let group =
                    leave.state_group.ok_or_else(|| RoomsError::Internal("member event without state".into()))?;
                Ok((*self.state_at_group(group).await?).clone())
            }
            _ => {
                let mut check = VisibilityCheck::new(self, room_id, user).await?;
                if check.may_read_room().await? {
                    Ok((*current).clone())
                } else {
                    Err(RoomsError::Forbidden("you are not allowed to read this room".into()))
                }
            }
        }
    }

    /// The state at a timeline position (`/members?at=`), if the user could
    /// see the room then.
    pub async fn state_at_position(
        &self,
        user: &OwnedUserId,
        room_id: &RoomId,
        at: PaginationToken,
    ) -> Result<StateMap, RoomsError> {
        let mut check = self.visibility(room_id, user).await?;
        let last = self.db.room_events(room_id.to_string(), at.0, None, Direction::Backward, 1).await?;
        let Some(stored) = last.into_iter().next() else {
            return Err(RoomsError::NotFound("no state at that position".into()));
        };
        let pdu = parse_stored(stored)?;
        if !check.can_see(&pdu).await? {
            return Err(RoomsError::Forbidden("you could not see the room at that position".into()));
        }
        Ok((*self.state_at_group(pdu.state_group.unwrap_or_default()).await?).clone())
    }

    /// `timestamp_to_event`: the visible event closest to `ts`.
    pub async fn event_near_timestamp(
        &self,
        user: &OwnedUserId,
        room_id: &RoomId,
        ts: i64,
        direction: Direction,
    ) -> Result<Arc<Pdu>, RoomsError> {
        let mut check = self.visibility(room_id, user).await?;
        let stored = self
            .db
            .event_near_timestamp(room_id.to_string(), ts, direction)
            .await?
            .ok_or_else(|| RoomsError::NotFound("no event found near that time".into()))?;
        let pdu = Arc::new(parse_stored(stored)?);
        if !check.can_see(&pdu).await? {
            return Err(RoomsError::NotFound("no event found near that time".into()));
        }
        Ok(pdu)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip() {
        assert_eq!(PaginationToken::parse("s42"), Some(PaginationToken(42)));
        assert_eq!(PaginationToken::parse("s42_7_9"), Some(PaginationToken(42)));
        assert_eq!(PaginationToken(7).to_string(), "s7");
        assert_eq!(PaginationToken::parse("t42"), None);
        // Backfilled history sits below position 0.
        assert_eq!(PaginationToken::parse("s-1"), Some(PaginationToken(-1)));
        assert_eq!(PaginationToken::parse("sx"), None);
    }

    #[test]
    fn wildcards_match_prefixes() {
        assert!(glob_match("m.room.*", "m.room.message"));
        assert!(!glob_match("m.room.*", "m.reaction"));
        assert!(glob_match("m.reaction", "m.reaction"));
    }
}
