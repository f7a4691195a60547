//! Events from other servers, after federation has checked their format,
//! signatures and hashes: authorisation against their auth events, against
//! the state before them (state resolution v2 where branches meet) and
//! against the current state (soft failure); then the same append as local
//! events. Also the two ends of a join over federation: the template a
//! resident server offers (`make_join`) and importing a room's state when
//! this server joins it.

use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
};

use ruma::{
    CanonicalJsonObject, CanonicalJsonValue, OwnedEventId, OwnedServerName, RoomId, RoomVersionId, ServerName, UserId,
    events::{
        StateEventType, TimelineEventType,
        room::member::{MembershipState, RoomMemberEventContent},
    },
    room_version_rules::RoomVersionRules,
    state_res::{self},
};

use super::{RoomHead, Rooms, RoomsError, StateMap, pdu::Pdu, remote_state::joined_in, versions};
use crate::storage::rooms::{CurrentStateWrite, NewEvent, Outlier, StateWrite, StoredState};

/// State types shown to invitees and knockers (spec: "stripped state").
pub const STRIPPED_STATE: &[StateEventType] = &[
    StateEventType::RoomCreate,
    StateEventType::RoomJoinRules,
    StateEventType::RoomName,
    StateEventType::RoomAvatar,
    StateEventType::RoomCanonicalAlias,
    StateEventType::RoomEncryption,
    StateEventType::RoomTopic,
];

/// An event from another server whose signatures and hashes were checked.
#[derive(Debug, Clone)]
pub struct VerifiedPdu {
    pub pdu: Pdu,
    pub json: String,
}

impl VerifiedPdu {
    pub fn new(event_id: OwnedEventId, room: &RoomId, obj: &CanonicalJsonObject) -> Result<Self, RoomsError> {
        let json = serde_json::to_string(obj).map_err(|e| RoomsError::BadJson(e.to_string()))?;
        let pdu = Pdu::from_json(event_id, room.to_owned(), &json).map_err(|e| RoomsError::BadJson(e.to_string()))?;
        Ok(Self { pdu, json })
    }

    /// The event as a timeline append, with nothing but its own fields
    /// and the given state changes set.
    pub(super) fn new_event(&self, state: StateWrite, current_state: CurrentStateWrite) -> NewEvent {
        let pdu = &self.pdu;
        NewEvent {
            event_id: pdu.event_id.to_string(),
            room_id: pdu.room.to_string(),
            kind: pdu.kind().to_string(),
            state_key: pdu.state_key().map(str::to_owned),
            sender: pdu.sender().to_string(),
            origin_server_ts: i64::from(pdu.fields.origin_server_ts.0),
            depth: i64::try_from(u64::from(pdu.fields.depth)).unwrap_or(i64::MAX),
            json: self.json.clone(),
            prev_events: pdu.fields.prev_events.iter().map(|id| id.to_string()).collect(),
            auth_events: pdu.fields.auth_events.iter().map(|id| id.to_string()).collect(),
            state,
            replaces_state: None,
            forward_extremities: Vec::new(),
            membership: None,
            txn: None,
            new_room: None,
            redaction: None,
            current_state,
            send_to: Vec::new(),
        }
    }

    pub(super) fn outlier(&self, rejected: bool) -> Outlier {
        Outlier {
            event_id: self.pdu.event_id.to_string(),
            room_id: self.pdu.room.to_string(),
            kind: self.pdu.kind().to_string(),
            state_key: self.pdu.state_key().map(str::to_owned),
            sender: self.pdu.sender().to_string(),
            origin_server_ts: i64::from(self.pdu.fields.origin_server_ts.0),
            depth: i64::try_from(u64::from(self.pdu.fields.depth)).unwrap_or(i64::MAX),
            json: self.json.clone(),
            auth_events: self.pdu.fields.auth_events.iter().map(|id| id.to_string()).collect(),
            rejected,
        }
    }
}

/// What became of a remote event.
#[derive(Debug, Clone)]
pub enum RemoteOutcome {
    /// Stored in the timeline.
    Accepted(Arc<Pdu>),
    /// Already stored.
    Known,
    /// Authorised by its own history but not by the current state: stored,
    /// not shown, not a forward extremity.
    SoftFailed,
    /// Refused by the auth rules: not stored (asked for again, it is
    /// checked again).
    Rejected(String),
}

/// The auth rules with the event's own auth events as the state.
pub(super) fn auth_with_events(
    pdu: &Pdu,
    rules: &RoomVersionRules,
    auth: &HashMap<OwnedEventId, Arc<Pdu>>,
) -> Result<(), String> {
    let fetch_event = |id: &ruma::EventId| auth.get(id).cloned();
    state_res::check_state_independent_auth_rules(&rules.authorization, pdu, fetch_event).map_err(|e| e.to_string())?;
    let by_key: HashMap<(StateEventType, String), Arc<Pdu>> =
        auth.values().filter_map(|e| Some((e.state_map_key()?, e.clone()))).collect();
    let fetch_state = |kind: &StateEventType, key: &str| by_key.get(&(kind.clone(), key.to_owned())).cloned();
    state_res::check_state_dependent_auth_rules(&rules.authorization, pdu, fetch_state).map_err(|e| e.to_string())
}

impl Rooms {
    /// The servers with joined users in the room, without this one and
    /// those the room's server ACL denies.
    pub(super) async fn remote_servers(&self, head: &RoomHead) -> Result<Vec<OwnedServerName>, RoomsError> {
        if !self.config.federation.enabled {
            return Ok(Vec::new());
        }
        let own = &self.config.server.server_name;
        let mut servers: Vec<OwnedServerName> =
            head.joined.iter().map(|u| u.server_name().to_owned()).filter(|s| s != own).collect();
        servers.sort();
        servers.dedup();
        if let Some(acl) = self.acl_in(&head.state).await? {
            servers.retain(|s| acl.is_allowed(s));
        }
        Ok(servers)
    }

    /// Whether this server knows the room (has its state).
    pub async fn knows_room(&self, room_id: &RoomId) -> Result<bool, RoomsError> {
        Ok(self.db.room_version(room_id.to_string()).await?.is_some())
    }

    /// Which of `ids` are not stored at all.
    pub async fn missing_events(&self, ids: &[OwnedEventId]) -> Result<Vec<OwnedEventId>, RoomsError> {
        let found = self.get_pdus(ids.iter()).await?;
        Ok(ids.iter().filter(|id| !found.contains_key(*id)).cloned().collect())
    }

    /// The template of a membership event (`join` or `leave`) for
    /// `user_id` (server-server API `make_join`, `make_leave`): what the
    /// user's server signs and sends back.
    pub async fn make_membership_template(
        &self,
        room_id: &RoomId,
        user_id: &UserId,
        membership: MembershipState,
    ) -> Result<(RoomVersionId, CanonicalJsonObject), RoomsError> {
        let guard = self.lock_head(room_id, true).await?;
        let head = guard.as_ref().ok_or_else(|| RoomsError::NotFound("unknown room".into()))?;
        let version = self.room_version(room_id).await?;
        let content = serde_json::to_value(RoomMemberEventContent::new(membership))
            .map_err(|e| RoomsError::Internal(e.to_string()))?;
        let content_raw = serde_json::value::to_raw_value(&content).map_err(|e| RoomsError::Internal(e.to_string()))?;
        let auth_types = state_res::auth_types_for_event(
            &TimelineEventType::RoomMember,
            user_id,
            Some(user_id.as_str()),
            &content_raw,
            &head.rules.authorization,
        )
        .map_err(|e| RoomsError::Internal(e.to_string()))?;
        let mut auth_events: Vec<OwnedEventId> = auth_types.iter().filter_map(|k| head.state.get(k).cloned()).collect();
        auth_events.sort();
        auth_events.dedup();
        let mut obj = CanonicalJsonObject::new();
        let prev_events: Vec<OwnedEventId> = head.extremities.iter().take(20).cloned().collect();
        obj.insert("auth_events".into(), self.event_references(&auth_events, &head.rules).await?);
        obj.insert("prev_events".into(), self.event_references(&prev_events, &head.rules).await?);
        obj.insert("content".into(), CanonicalJsonValue::try_from(content).expect("canonical"));
        obj.insert("depth".into(), CanonicalJsonValue::Integer((head.max_depth + 1).try_into().unwrap_or_default()));
        obj.insert(
            "origin_server_ts".into(),
            CanonicalJsonValue::Integer(ruma::MilliSecondsSinceUnixEpoch::now().0.into()),
        );
        obj.insert("room_id".into(), CanonicalJsonValue::String(room_id.to_string()));
        obj.insert("sender".into(), CanonicalJsonValue::String(user_id.to_string()));
        obj.insert("state_key".into(), CanonicalJsonValue::String(user_id.to_string()));
        obj.insert("type".into(), CanonicalJsonValue::String("m.room.member".into()));
        // `origin` is still expected by older servers.
        obj.insert("origin".into(), CanonicalJsonValue::String(user_id.server_name().to_string()));
        // Check that the event would be allowed now, with a stand-in id.
        let json = serde_json::to_string(&obj).map_err(|e| RoomsError::Internal(e.to_string()))?;
        let probe = Pdu::from_json(
            OwnedEventId::try_from("$membership_template_probe").expect("valid id"),
            room_id.to_owned(),
            &json,
        )
        .map_err(|e| RoomsError::Internal(e.to_string()))?;
        self.check_auth(&probe, head, &auth_types).await?;
        Ok((version, obj))
    }

    /// Appends an event from another server. `forward_to_room` is set for
    /// join events this server receives as the resident server
    /// (`send_join`): they go out to every other server in the room.
    pub async fn append_remote(
        &self,
        event: VerifiedPdu,
        forward_from: Option<&ServerName>,
    ) -> Result<RemoteOutcome, RoomsError> {
        self.append_remote_at(event, forward_from, None).await
    }

    /// Appends an event from another server whose prev events this server
    /// could not fetch, with the state before it that its server reported
    /// (`/state_ids`) in place of the state after its prev events.
    pub async fn append_remote_with_state_before(
        &self,
        event: VerifiedPdu,
        state_before: StateMap,
    ) -> Result<RemoteOutcome, RoomsError> {
        self.append_remote_at(event, None, Some(state_before)).await
    }

    async fn append_remote_at(
        &self,
        event: VerifiedPdu,
        forward_from: Option<&ServerName>,
        state_before: Option<StateMap>,
    ) -> Result<RemoteOutcome, RoomsError> {
        let room_id = event.pdu.room.clone();
        let mut guard = self.lock_head(&room_id, true).await?;
        let Some(head) = guard.as_mut() else {
            return Err(RoomsError::NotFound("unknown room".into()));
        };
        if self.db.event_outlier(event.pdu.event_id.to_string()).await? == Some(false) {
            return Ok(RemoteOutcome::Known);
        }
        let pdu = &event.pdu;
        let rules = head.rules.clone();

        // 1. Against its own auth events (and the create event, which room
        // version 12 leaves out of them).
        let mut auth = self.get_pdus(pdu.fields.auth_events.iter()).await?;
        if auth.len() != pdu.fields.auth_events.len() {
            let reason = "some auth events are unknown".to_owned();
            return Ok(RemoteOutcome::Rejected(reason));
        }
        if let Some(create) = head.state.get(&(StateEventType::RoomCreate, String::new()))
            && let Some(event) = self.get_pdu(create).await?
        {
            auth.insert(create.clone(), event);
        }
        if let Err(reason) = auth_with_events(pdu, &rules, &auth) {
            return Ok(RemoteOutcome::Rejected(reason));
        }

        // 2. Against the state before it.
        let before = match state_before {
            Some(state) => state,
            None => self.state_before(pdu, head).await?,
        };
        if let Err(reason) = self.auth_with_state(pdu, &rules, &before).await {
            return Ok(RemoteOutcome::Rejected(reason));
        }
        let mut after = before;
        if let Some(key) = pdu.state_map_key() {
            after.insert(key, pdu.event_id.clone());
        }

        // 3. Against the current state: soft failure.
        if let Err(reason) = self.auth_with_state(pdu, &rules, &head.state).await {
            tracing::info!(event_id = %pdu.event_id, %reason, "soft-failed a remote event");
            self.db.store_outliers(vec![event.outlier(false)]).await?;
            return Ok(RemoteOutcome::SoftFailed);
        }

        // The new current state: the state after this event if it builds on
        // every forward extremity, else both resolved.
        let prevs: HashSet<&OwnedEventId> = pdu.fields.prev_events.iter().collect();
        let covers_all = head.extremities.iter().all(|id| prevs.contains(id));
        let new_current =
            if covers_all { after } else { self.resolve(&rules, &[(*head.state).clone(), after], Some(pdu)).await? };

        let mut changed: Vec<(StateEventType, String)> =
            new_current.iter().filter(|(k, id)| head.state.get(*k) != Some(*id)).map(|(k, _)| k.clone()).collect();
        changed.extend(head.state.keys().filter(|k| !new_current.contains_key(*k)).cloned());
        let own_key = pdu.state_map_key();
        let (state, current_state) = if changed.is_empty() {
            (StateWrite::Unchanged { group: head.state_group }, CurrentStateWrite::Unchanged)
        } else if changed.len() == 1
            && own_key.as_ref() == changed.first()
            && head.delta_depth < versions::MAX_DELTA_CHAIN
        {
            let key = own_key.clone().expect("checked");
            (
                StateWrite::Delta {
                    prev_group: head.state_group,
                    delta_depth: head.delta_depth + 1,
                    key: (key.0.to_string(), key.1),
                    event_id: pdu.event_id.to_string(),
                },
                CurrentStateWrite::ThisEvent,
            )
        } else {
            let full: StoredState =
                new_current.iter().map(|((t, k), id)| ((t.to_string(), k.clone()), id.to_string())).collect();
            (StateWrite::Full { state: full.clone() }, CurrentStateWrite::Replace(full))
        };
        let membership = match (&current_state, pdu.kind()) {
            (CurrentStateWrite::ThisEvent, TimelineEventType::RoomMember) => {
                pdu.membership().and_then(|m| Some((pdu.state_key()?.to_owned(), m)))
            }
            _ => None,
        };
        let mut extremities: Vec<OwnedEventId> =
            head.extremities.iter().filter(|id| !prevs.contains(id)).cloned().collect();
        extremities.push(pdu.event_id.clone());
        let send_to: Vec<OwnedServerName> = match forward_from {
            Some(origin) => {
                let mut servers = self.remote_servers(head).await?;
                servers.retain(|s| s != origin);
                servers
            }
            None => Vec::new(),
        };
        let is_full = matches!(state, StateWrite::Full { .. });
        let is_delta = matches!(state, StateWrite::Delta { .. });
        let replaces_state = own_key.as_ref().and_then(|k| head.state.get(k)).cloned();
        let new_event = NewEvent {
            replaces_state: replaces_state.as_ref().map(|id| id.to_string()),
            forward_extremities: extremities.iter().map(|id| id.to_string()).collect(),
            membership,
            send_to: send_to.iter().map(|s| s.to_string()).collect(),
            ..event.new_event(state, current_state)
        };
        let redaction = match pdu.redacts_target() {
            Some(target) if *pdu.kind() == TimelineEventType::RoomRedaction => {
                self.remote_redaction(pdu, &target, head).await
            }
            _ => None,
        };
        let new_event = NewEvent { redaction, ..new_event };
        let appended = self.db.append_event(new_event).await?;

        // Move the head.
        let old_joined = head.joined.clone();
        head.extremities = extremities;
        head.max_depth = head.max_depth.max(u64::from(pdu.fields.depth));
        if head.state.len() != new_current.len() || head.state.iter().any(|(k, id)| new_current.get(k) != Some(id)) {
            head.joined = Arc::new(joined_in(self, &new_current).await?);
            head.state = Arc::new(new_current);
        }
        head.state_group = appended.state_group;
        head.delta_depth = if is_full {
            0
        } else if is_delta {
            head.delta_depth + 1
        } else {
            head.delta_depth
        };
        let mut stored = event.pdu.clone();
        stored.stream_ordering = Some(appended.stream_ordering);
        stored.state_group = Some(appended.state_group);
        // Cached as stored, so clients get `prev_content` from the cache too.
        stored.replaces_state = replaces_state;
        let stored = Arc::new(stored);
        self.events.insert(stored.event_id.clone(), stored.clone());
        if let Some(target) = stored.redacts_target() {
            self.events.remove(&target);
        }
        let own = &self.config.server.server_name;
        let target = stored
            .state_key()
            .filter(|_| *stored.kind() == TimelineEventType::RoomMember)
            .and_then(|k| UserId::parse(k).ok());
        let wake: Vec<&UserId> = head
            .joined
            .iter()
            .chain(old_joined.iter())
            .map(|u| u.as_ref())
            .chain(target.as_deref())
            .filter(|u| u.server_name() == own)
            .collect();
        self.event_committed(appended.stream_ordering, &stored, &wake, &send_to).await;
        Ok(RemoteOutcome::Accepted(stored))
    }

    /// Redaction of a remote event: applied when the target is known and the
    /// redaction is allowed (same sender server, or the redact power).
    async fn remote_redaction(
        &self,
        redaction: &Pdu,
        target: &OwnedEventId,
        head: &RoomHead,
    ) -> Option<(String, String)> {
        let original = self.get_pdu(target).await.ok().flatten()?;
        if original.room != redaction.room {
            return None;
        }
        if original.sender().server_name() != redaction.sender().server_name() {
            let levels = self.power_levels_of(head).await.ok()?;
            if !levels.user_can_redact_event_of_other(redaction.sender()) {
                return None;
            }
        }
        let stored = self.db.get_event(target.to_string()).await.ok().flatten()?;
        let obj: CanonicalJsonObject = serde_json::from_str(&stored.json).ok()?;
        let redacted =
            ruma::canonical_json::redact(obj, &head.rules.redaction, None::<ruma::canonical_json::RedactedBecause>)
                .ok()?;
        Some((target.to_string(), serde_json::to_string(&redacted).ok()?))
    }

    /// The auth rules against a state map.
    pub(super) async fn auth_with_state(
        &self,
        pdu: &Pdu,
        rules: &RoomVersionRules,
        state: &StateMap,
    ) -> Result<(), String> {
        let content = pdu.fields.content.clone();
        let keys =
            state_res::auth_types_for_event(pdu.kind(), pdu.sender(), pdu.state_key(), &content, &rules.authorization)
                .map_err(|e| e.to_string())?;
        let wanted: Vec<OwnedEventId> = keys
            .iter()
            .chain(&[
                (StateEventType::RoomCreate, String::new()),
                (StateEventType::RoomPowerLevels, String::new()),
                (StateEventType::RoomJoinRules, String::new()),
            ])
            .filter_map(|k| state.get(k).cloned())
            .collect();
        let events = self.get_pdus(wanted.iter()).await.map_err(|e| e.to_string())?;
        let fetch_state = |kind: &StateEventType, key: &str| {
            state.get(&(kind.clone(), key.to_owned())).and_then(|id| events.get(id).cloned())
        };
        state_res::check_state_dependent_auth_rules(&rules.authorization, pdu, fetch_state).map_err(|e| e.to_string())
    }
}
