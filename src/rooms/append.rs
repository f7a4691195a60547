//! Appending a local event: build the PDU (prev_events from the forward
//! extremities, auth_events from current state, depth), check it with the
//! auth rules, hash and sign it, and store it with its state change in one
//! transaction, all under the room's append lock.

use std::{collections::HashMap, sync::Arc};

use ruma::{
    CanonicalJsonObject, CanonicalJsonValue, MilliSecondsSinceUnixEpoch, OwnedEventId, OwnedRoomId, RoomId,
    RoomVersionId, UserId,
    canonical_json::{RedactedBecause, redact},
    events::{StateEventContent, StateEventType, TimelineEventType, room::member::MembershipState},
    room_version_rules::RoomVersionRules,
    signatures::hash_and_sign_event,
    state_res,
};
use serde_json::{Value, value::to_raw_value};

use futures_util::FutureExt;

use super::{RoomHead, Rooms, RoomsError, SentAhead, StateMap, pdu::Pdu, versions};
use crate::storage::rooms::{AppendOutcome, CurrentStateWrite, NewEvent, StateWrite, StoredState};

/// The largest PDU, as canonical JSON (spec: "Size limits").
pub const MAX_PDU_BYTES: usize = 65_536;

/// At most this many forward extremities become one event's prev_events.
const MAX_PREV_EVENTS: usize = 20;

/// How often `append_local` builds an event again when what it was built
/// on was not stored.
const MAX_APPEND_ATTEMPTS: usize = 4;

/// What a local user wants to send.
#[derive(Debug, Clone)]
pub struct EventDraft {
    pub kind: TimelineEventType,
    pub content: Value,
    pub state_key: Option<String>,
    pub redacts: Option<OwnedEventId>,
}

impl EventDraft {
    pub fn state(kind: StateEventType, state_key: impl Into<String>, content: Value) -> Self {
        Self { kind: kind.to_string().into(), content, state_key: Some(state_key.into()), redacts: None }
    }

    /// A state event from a ruma content type, which names the event type.
    pub fn from_state<C: StateEventContent>(state_key: impl Into<String>, content: &C) -> Self {
        let value = serde_json::to_value(content).expect("ruma event contents serialise to JSON objects");
        Self::state(content.event_type(), state_key, value)
    }

    pub fn message(kind: TimelineEventType, content: Value) -> Self {
        Self { kind, content, state_key: None, redacts: None }
    }
}

/// The client transaction a send belongs to.
#[derive(Debug, Clone)]
pub struct TxnRef {
    pub device_id: String,
    pub txn_id: String,
}

fn to_canonical(value: Value) -> Result<CanonicalJsonValue, RoomsError> {
    CanonicalJsonValue::try_from(value).map_err(|e| RoomsError::BadJson(format!("content is not canonical JSON: {e}")))
}

impl Rooms {
    /// Builds, authorises, signs and stores a local event in an existing
    /// room. Returns the stored PDU once it is committed.
    ///
    /// A message (no state key, no redaction) leaves the room's lock as
    /// soon as it is queued for storage, so the next message can be built
    /// on it while it is being committed: concurrent sends to one room
    /// share group commits instead of waiting for each other's. Queued
    /// events are stored in order; if one is not stored, those built on it
    /// are not either (storage checks prev events) and are built again on
    /// the head as stored.
    pub async fn append_local(
        &self,
        room_id: &RoomId,
        sender: &UserId,
        draft: EventDraft,
        txn: Option<TxnRef>,
    ) -> Result<Arc<Pdu>, RoomsError> {
        let message = draft.state_key.is_none() && draft.redacts.is_none();
        for attempt in 0..MAX_APPEND_ATTEMPTS {
            // A retry waits for everything queued before it.
            let pipelined = message && attempt == 0;
            if let Some(pdu) = self.try_append_local(room_id, sender, &draft, txn.clone(), pipelined).await? {
                if *pdu.kind() == TimelineEventType::RoomGuestAccess && pdu.state_key() == Some("") {
                    Box::pin(self.guests_leave_unless_allowed(room_id)).await?;
                }
                return Ok(pdu);
            }
        }
        Err(RoomsError::Internal("the room changed under every attempt to append".into()))
    }

    /// One attempt of `append_local`; `None` when the event was built on a
    /// head that turned out not to be stored.
    async fn try_append_local(
        &self,
        room_id: &RoomId,
        sender: &UserId,
        draft: &EventDraft,
        txn: Option<TxnRef>,
        pipelined: bool,
    ) -> Result<Option<Arc<Pdu>>, RoomsError> {
        let mut guard = self.lock_head(room_id, !pipelined).await?;
        let Some(head) = guard.as_mut() else {
            return Err(RoomsError::NotFound("unknown room".into()));
        };
        let device_txn = txn.as_ref().map(|t| (t.device_id.as_str().into(), t.txn_id.clone()));
        let txn_key = txn.as_ref().map(|t| (t.device_id.clone(), t.txn_id.clone()));
        let (pdu, mut new_event) = match self.build_event(room_id, sender, draft, head, txn).await {
            Ok(built) => built,
            // A retried transaction answers with its event even if the same
            // event could not be sent now.
            Err(e) => match txn_key {
                Some((device, txn)) => match self.db.find_txn(sender.to_string(), device, txn).await? {
                    Some(existing) => return self.sent_event(existing).await.map(Some),
                    None => return Err(e),
                },
                None => return Err(e),
            },
        };
        // Every server with a member in the room gets the event, and the
        // server of a remote user whose membership changes.
        let mut send_to = self.remote_servers(head).await?;
        if let Some(target) = pdu.state_key().filter(|_| *pdu.kind() == TimelineEventType::RoomMember)
            && let Ok(target) = UserId::parse(target)
            && self.config.federation.enabled
            && target.server_name() != self.config.server.server_name
            && !send_to.iter().any(|s| s == target.server_name())
        {
            send_to.push(target.server_name().to_owned());
        }
        new_event.send_to = send_to.iter().map(|s| s.to_string()).collect();
        // Cached with what it replaces, as a stored event is read back, so
        // clients get `prev_content` for it.
        let replaces_state = new_event.replaces_state.as_deref().and_then(|id| OwnedEventId::try_from(id).ok());
        let (stored_tx, stored_rx) = tokio::sync::oneshot::channel();
        let queued = self.db.queue_local_append(
            new_event,
            Box::new(move |stored| {
                let _ = stored_tx.send(stored);
            }),
        )?;
        // Wake the members after the event, the target of a membership
        // change (an invitee, a kicked user) and the sender.
        let joined = head.joined.clone();
        let outcome = if pipelined {
            self.advance_head(head, &pdu);
            head.sent_ahead = Some(SentAhead(stored_rx.shared()));
            drop(guard);
            queued.await?
        } else {
            let outcome = queued.await?;
            if let AppendOutcome::Stored(appended) = &outcome {
                self.advance_head(head, &pdu);
                head.state_group = appended.state_group;
                self.remember_state_group(appended.state_group, &head.state);
            } else {
                // Nothing is stored; the head may be stale: reload it.
                *guard = None;
            }
            outcome
        };
        let appended = match outcome {
            AppendOutcome::Stored(appended) => appended,
            AppendOutcome::AlreadySent(existing) => return self.sent_event(existing).await.map(Some),
            AppendOutcome::StaleHead => {
                tracing::debug!(%room_id, "event built on a head that was not stored; building it again");
                return Ok(None);
            }
        };
        let target = pdu
            .state_key()
            .filter(|_| *pdu.kind() == TimelineEventType::RoomMember)
            .and_then(|k| UserId::parse(k).ok());
        let mut pdu = pdu;
        pdu.stream_ordering = Some(appended.stream_ordering);
        pdu.state_group = Some(appended.state_group);
        pdu.txn = device_txn;
        pdu.replaces_state = replaces_state;
        let pdu = Arc::new(pdu);
        self.events.insert(pdu.event_id.clone(), pdu.clone());
        if let Some(target) = pdu.redacts_target() {
            self.events.remove(&target);
        }
        let wake: Vec<&UserId> = joined.iter().map(|u| u.as_ref()).chain(target.as_deref()).chain([sender]).collect();
        self.event_committed(appended.stream_ordering, &pdu, &wake, &send_to).await;
        Ok(Some(pdu))
    }

    /// The event a device sent earlier under a transaction id.
    async fn sent_event(&self, event_id: String) -> Result<Arc<Pdu>, RoomsError> {
        let id = OwnedEventId::try_from(event_id).map_err(|e| RoomsError::Internal(e.to_string()))?;
        self.get_pdu(&id).await?.ok_or_else(|| RoomsError::Internal("txn event vanished".into()))
    }

    /// Creates a room from its create event, returning the room id (for room
    /// version 12 derived from the create event's id).
    pub(super) async fn append_create(
        &self,
        version: &RoomVersionId,
        sender: &UserId,
        content: Value,
        chosen_room_id: Option<OwnedRoomId>,
    ) -> Result<(OwnedRoomId, Arc<Pdu>), RoomsError> {
        let rules = version.rules().ok_or_else(|| RoomsError::UnsupportedRoomVersion(version.to_string()))?;
        let room_id = if rules.authorization.room_create_event_id_as_room_id {
            if chosen_room_id.is_some() {
                return Err(RoomsError::Internal(format!("room version {version} rooms cannot be given a room id")));
            }
            None
        } else {
            Some(chosen_room_id.unwrap_or_else(|| RoomId::new_v1(&self.config.server.server_name)))
        };
        let mut obj = CanonicalJsonObject::new();
        obj.insert("auth_events".into(), CanonicalJsonValue::Array(vec![]));
        obj.insert("prev_events".into(), CanonicalJsonValue::Array(vec![]));
        obj.insert("content".into(), to_canonical(content)?);
        obj.insert("depth".into(), CanonicalJsonValue::Integer(1u32.into()));
        obj.insert(
            "origin_server_ts".into(),
            CanonicalJsonValue::Integer(
                self.next_create_ts()
                    .try_into()
                    .map_err(|_| RoomsError::Internal("the clock is beyond canonical JSON's integers".into()))?,
            ),
        );
        obj.insert("sender".into(), CanonicalJsonValue::String(sender.to_string()));
        obj.insert("type".into(), CanonicalJsonValue::String("m.room.create".into()));
        obj.insert("state_key".into(), CanonicalJsonValue::String(String::new()));
        if let Some(room_id) = &room_id {
            obj.insert("room_id".into(), CanonicalJsonValue::String(room_id.to_string()));
        }
        let (event_id, json) = self.hash_and_sign(&mut obj, &rules)?;
        let room_id = match room_id {
            Some(id) => id,
            None => RoomId::new_v2(&event_id.as_str()[1..]).map_err(|e| RoomsError::Internal(e.to_string()))?,
        };
        let pdu = Pdu::from_json(event_id.clone(), room_id.clone(), &json)
            .map_err(|e| RoomsError::Internal(e.to_string()))?;
        state_res::check_state_independent_auth_rules(&rules.authorization, &pdu, |_: &ruma::EventId| None::<Pdu>)
            .map_err(|e| RoomsError::Forbidden(format!("create event refused by the auth rules: {e}")))?;

        let slot = self.head_slot(&room_id);
        let mut guard = slot.lock().await;
        let key = (StateEventType::RoomCreate, String::new());
        let state: StoredState = HashMap::from([(("m.room.create".to_owned(), String::new()), event_id.to_string())]);
        let appended = self
            .db
            .append_event(NewEvent {
                event_id: event_id.to_string(),
                room_id: room_id.to_string(),
                kind: "m.room.create".into(),
                state_key: Some(String::new()),
                sender: sender.to_string(),
                origin_server_ts: i64::from(pdu.fields.origin_server_ts.0),
                depth: 1,
                json,
                prev_events: vec![],
                auth_events: vec![],
                state: StateWrite::Full { state },
                replaces_state: None,
                forward_extremities: vec![event_id.to_string()],
                membership: None,
                txn: None,
                new_room: Some((version.to_string(), sender.to_string())),
                redaction: None,
                current_state: CurrentStateWrite::ThisEvent,
                send_to: Vec::new(),
            })
            .await?;
        let mut pdu = pdu;
        pdu.stream_ordering = Some(appended.stream_ordering);
        pdu.state_group = Some(appended.state_group);
        let state = Arc::new(StateMap::from([(key, event_id.clone())]));
        self.remember_state_group(appended.state_group, &state);
        *guard = Some(RoomHead {
            rules,
            extremities: vec![event_id.clone()],
            max_depth: 1,
            state_group: appended.state_group,
            delta_depth: 0,
            state,
            joined: Arc::default(),
            sent_ahead: None,
        });
        let pdu = Arc::new(pdu);
        self.events.insert(event_id, pdu.clone());
        self.event_committed(appended.stream_ordering, &pdu, &[sender], &[]).await;
        Ok((room_id, pdu))
    }

    /// Adds content hash and signature; returns the event id and the JSON
    /// as stored.
    fn hash_and_sign(
        &self,
        obj: &mut CanonicalJsonObject,
        rules: &RoomVersionRules,
    ) -> Result<(OwnedEventId, String), RoomsError> {
        super::event_format::assign_event_id(obj, rules, &self.config.server.server_name);
        hash_and_sign_event(self.config.server.server_name.as_str(), &self.key.keypair, obj, &rules.redaction)
            .map_err(|e| match e {
                ruma::signatures::JsonError::PduTooLarge => RoomsError::TooLarge,
                e => RoomsError::Internal(format!("cannot sign event: {e}")),
            })?;
        let event_id = super::event_format::event_id_of(obj, rules).map_err(RoomsError::Internal)?;
        let json = serde_json::to_string(obj).map_err(|e| RoomsError::Internal(e.to_string()))?;
        if json.len() > MAX_PDU_BYTES {
            return Err(RoomsError::TooLarge);
        }
        Ok((event_id, json))
    }

    /// Builds the PDU for `draft` on top of `head` and checks it.
    pub(super) async fn build_event(
        &self,
        room_id: &RoomId,
        sender: &UserId,
        draft: &EventDraft,
        head: &RoomHead,
        txn: Option<TxnRef>,
    ) -> Result<(Pdu, NewEvent), RoomsError> {
        let rules = &head.rules;
        if !draft.content.is_object() {
            return Err(RoomsError::BadJson("event content must be a JSON object".into()));
        }
        let content_raw = to_raw_value(&draft.content).map_err(|e| RoomsError::BadJson(e.to_string()))?;
        let auth_types = state_res::auth_types_for_event(
            &draft.kind,
            sender,
            draft.state_key.as_deref(),
            &content_raw,
            &rules.authorization,
        )
        .map_err(|e| RoomsError::BadJson(format!("invalid content: {e}")))?;
        let mut auth_events: Vec<OwnedEventId> =
            auth_types.iter().filter_map(|key| head.state.get(key).cloned()).collect();
        auth_events.sort();
        auth_events.dedup();
        let prev_events: Vec<OwnedEventId> = head.extremities.iter().take(MAX_PREV_EVENTS).cloned().collect();
        let depth = head.max_depth + 1;

        let mut content = draft.content.clone();
        let mut obj = CanonicalJsonObject::new();
        if let Some(target) = &draft.redacts {
            if rules.redaction.content_field_redacts {
                content["redacts"] = Value::String(target.to_string());
            } else {
                obj.insert("redacts".into(), CanonicalJsonValue::String(target.to_string()));
            }
        }
        obj.insert("auth_events".into(), self.event_references(&auth_events, rules).await?);
        obj.insert("prev_events".into(), self.event_references(&prev_events, rules).await?);
        obj.insert("content".into(), to_canonical(content)?);
        obj.insert(
            "depth".into(),
            CanonicalJsonValue::Integer(depth.try_into().map_err(|_| RoomsError::Internal("depth overflow".into()))?),
        );
        obj.insert("origin_server_ts".into(), now_ts());
        obj.insert("room_id".into(), CanonicalJsonValue::String(room_id.to_string()));
        obj.insert("sender".into(), CanonicalJsonValue::String(sender.to_string()));
        obj.insert("type".into(), CanonicalJsonValue::String(draft.kind.to_string()));
        if let Some(key) = &draft.state_key {
            obj.insert("state_key".into(), CanonicalJsonValue::String(key.clone()));
        }
        let (event_id, json) = self.hash_and_sign(&mut obj, rules)?;
        let pdu = Pdu::from_json(event_id.clone(), room_id.to_owned(), &json)
            .map_err(|e| RoomsError::Internal(e.to_string()))?;

        self.check_auth(&pdu, head, &auth_types).await?;
        let redaction = match &draft.redacts {
            Some(target) => self.redaction_write(&pdu, target, head).await?,
            None => None,
        };

        let state_key = draft.state_key.clone().map(|k| (draft.kind.to_string(), k));
        let state = match &state_key {
            None => StateWrite::Unchanged { group: head.state_group },
            Some(key) if head.delta_depth >= versions::MAX_DELTA_CHAIN => {
                let mut full: StoredState =
                    head.state.iter().map(|((t, k), id)| ((t.to_string(), k.clone()), id.to_string())).collect();
                full.insert(key.clone(), event_id.to_string());
                StateWrite::Full { state: full }
            }
            Some(key) => StateWrite::Delta {
                prev_group: head.state_group,
                delta_depth: head.delta_depth + 1,
                key: key.clone(),
                event_id: event_id.to_string(),
            },
        };
        let replaces_state = draft
            .state_key
            .as_ref()
            .and_then(|k| head.state.get(&(draft.kind.to_string().into(), k.clone())))
            .map(|id| id.to_string());
        let membership = (draft.kind == TimelineEventType::RoomMember)
            .then(|| {
                let membership = draft.content.get("membership").and_then(Value::as_str)?;
                Some((draft.state_key.clone()?, MembershipState::from(membership)))
            })
            .flatten();
        let mut forward_extremities: Vec<String> =
            head.extremities.iter().skip(MAX_PREV_EVENTS).map(|id| id.to_string()).collect();
        forward_extremities.push(event_id.to_string());
        let new_event = NewEvent {
            event_id: event_id.to_string(),
            room_id: room_id.to_string(),
            kind: draft.kind.to_string(),
            state_key: draft.state_key.clone(),
            sender: sender.to_string(),
            origin_server_ts: i64::from(pdu.fields.origin_server_ts.0),
            depth: depth as i64,
            json,
            prev_events: prev_events.iter().map(|id| id.to_string()).collect(),
            auth_events: auth_events.iter().map(|id| id.to_string()).collect(),
            state,
            replaces_state,
            forward_extremities,
            membership,
            txn: txn.map(|t| (sender.to_string(), t.device_id, t.txn_id)),
            new_room: None,
            redaction,
            current_state: CurrentStateWrite::ThisEvent,
            send_to: Vec::new(),
        };
        Ok((pdu, new_event))
    }

    /// Runs ruma's authorization rules against the event's auth events and
    /// the current state.
    pub(super) async fn check_auth(
        &self,
        pdu: &Pdu,
        head: &RoomHead,
        auth_types: &[(StateEventType, String)],
    ) -> Result<(), RoomsError> {
        let mut wanted: Vec<OwnedEventId> = pdu.fields.auth_events.clone();
        for key in [
            (StateEventType::RoomCreate, String::new()),
            (StateEventType::RoomPowerLevels, String::new()),
            (StateEventType::RoomJoinRules, String::new()),
        ]
        .iter()
        .chain(auth_types)
        {
            if let Some(id) = head.state.get(key) {
                wanted.push(id.clone());
            }
        }
        let events = self.get_pdus(wanted.iter()).await?;
        let fetch_event = |id: &ruma::EventId| events.get(id).cloned();
        state_res::check_state_independent_auth_rules(&head.rules.authorization, pdu, fetch_event)
            .map_err(|e| RoomsError::Forbidden(format!("refused by the auth rules: {e}")))?;
        let fetch_state = |kind: &StateEventType, key: &str| {
            head.state.get(&(kind.clone(), key.to_owned())).and_then(|id| events.get(id).cloned())
        };
        state_res::check_state_dependent_auth_rules(&head.rules.authorization, pdu, fetch_state)
            .map_err(|e| RoomsError::Forbidden(format!("refused by the auth rules: {e}")))?;
        Ok(())
    }

    /// Checks that `redaction` may redact `target` and returns the target's
    /// redacted JSON to store (client-server API, "Redactions": the sender
    /// must be the target's sender or have the `redact` power level).
    async fn redaction_write(
        &self,
        redaction: &Pdu,
        target: &OwnedEventId,
        head: &RoomHead,
    ) -> Result<Option<(String, String)>, RoomsError> {
        let Some(original) = self.get_pdu(target).await? else {
            return Err(RoomsError::NotFound("the event to redact does not exist".into()));
        };
        if original.room != redaction.room {
            // Synapse answers 400 here, as Sytest checks.
            return Err(RoomsError::InvalidParam("the event to redact is in another room".into()));
        }
        if original.sender() != redaction.sender() {
            let levels = self.power_levels_of(head).await?;
            if !levels.user_can_redact_event_of_other(redaction.sender()) {
                return Err(RoomsError::Forbidden("you may not redact other users' events".into()));
            }
        }
        let stored = self
            .db
            .get_event(target.to_string())
            .await?
            .ok_or_else(|| RoomsError::NotFound("the event to redact does not exist".into()))?;
        let obj: CanonicalJsonObject =
            serde_json::from_str(&stored.json).map_err(|e| RoomsError::Internal(format!("stored event: {e}")))?;
        let redacted = redact(obj, &head.rules.redaction, None::<RedactedBecause>)
            .map_err(|e| RoomsError::Internal(format!("cannot redact: {e}")))?;
        let json = serde_json::to_string(&redacted).map_err(|e| RoomsError::Internal(e.to_string()))?;
        Ok(Some((target.to_string(), json)))
    }

    /// The power levels of the room at its head.
    pub(super) async fn power_levels_of(
        &self,
        head: &RoomHead,
    ) -> Result<ruma::events::room::power_levels::RoomPowerLevels, RoomsError> {
        self.power_levels_in_state(&head.state, &head.rules).await
    }

    /// The power levels a state of a room gives (the defaults without a
    /// power levels event), with the creators' privileges of version 12.
    pub async fn power_levels_in_state(
        &self,
        state: &StateMap,
        rules: &RoomVersionRules,
    ) -> Result<ruma::events::room::power_levels::RoomPowerLevels, RoomsError> {
        use ruma::events::room::power_levels::{RoomPowerLevels, RoomPowerLevelsEventContent};
        let pl = match state.get(&(StateEventType::RoomPowerLevels, String::new())) {
            Some(id) => self.get_pdu(id).await?.and_then(|p| p.content::<RoomPowerLevelsEventContent>()),
            None => None,
        };
        let creators = self.creators(state, rules).await?;
        Ok(RoomPowerLevels::new(pl.into(), &rules.authorization, creators))
    }

    /// The room's creators: the create event's sender, plus the
    /// `additional_creators` of room version 12.
    async fn creators(&self, state: &StateMap, rules: &RoomVersionRules) -> Result<Vec<ruma::OwnedUserId>, RoomsError> {
        let Some(id) = state.get(&(StateEventType::RoomCreate, String::new())) else {
            return Ok(vec![]);
        };
        let Some(create) = self.get_pdu(id).await? else {
            return Ok(vec![]);
        };
        let mut creators = vec![create.sender().to_owned()];
        if rules.authorization.additional_room_creators
            && let Some(extra) = create.content_value().get("additional_creators").and_then(Value::as_array)
        {
            creators.extend(extra.iter().filter_map(|v| v.as_str()).filter_map(|s| ruma::UserId::parse(s).ok()));
        }
        Ok(creators)
    }

    /// Moves the head past a newly stored event.
    fn advance_head(&self, head: &mut RoomHead, pdu: &Pdu) {
        let consumed = head.extremities.len().min(MAX_PREV_EVENTS);
        head.extremities.drain(..consumed);
        head.extremities.push(pdu.event_id.clone());
        head.max_depth = u64::from(pdu.fields.depth);
        let Some(key) = pdu.state_key() else { return };
        let mut state = (*head.state).clone();
        state.insert((pdu.kind().to_string().into(), key.to_owned()), pdu.event_id.clone());
        head.state = Arc::new(state);
        head.delta_depth = if head.delta_depth >= versions::MAX_DELTA_CHAIN { 0 } else { head.delta_depth + 1 };
        if *pdu.kind() == TimelineEventType::RoomMember
            && let Ok(member) = UserId::parse(key)
        {
            let mut joined = (*head.joined).clone();
            if pdu.membership() == Some(MembershipState::Join) {
                joined.insert(member);
            } else {
                joined.remove(&member);
            }
            head.joined = Arc::new(joined);
        }
    }
}

fn now_ts() -> CanonicalJsonValue {
    CanonicalJsonValue::Integer(MilliSecondsSinceUnixEpoch::now().0.into())
}
