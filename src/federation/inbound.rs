//! Checks on receipt of a PDU (server-server API, "Checks performed on
//! receipt of a PDU"): format, signatures of the servers that must have
//! signed it, content hash (redacted when it does not match), then the
//! missing auth and prev events fetched from the sender, and the room
//! server's authorisation.

use std::collections::{BTreeMap, HashSet};

use ruma::{
    CanonicalJsonObject, CanonicalJsonValue, EventId, OwnedEventId, OwnedRoomId, RoomId, RoomVersionId, ServerName,
    UInt,
    api::federation::{
        authorization::get_event_authorization,
        event::{get_event, get_missing_events, get_room_state, get_room_state_ids},
    },
    canonical_json::{RedactedBecause, redact},
    events::StateEventType,
    signatures::{Verified, required_server_signatures_to_verify_event, verify_event},
};
use serde_json::value::RawValue;

use super::{FedError, Federation};
use crate::rooms::{RemoteOutcome, StateMap, VerifiedPdu};

/// How many missing prev events are fetched for one incoming event.
const MISSING_EVENTS_LIMIT: u32 = 20;

/// Up to this many unknown events of a `/state_ids` answer are fetched one
/// by one (`/event`); more, and the whole state comes with `/state`.
const STATE_FETCH_ONE_BY_ONE: usize = 50;

/// The room id of a raw PDU.
pub fn room_of(raw: &RawValue) -> Result<OwnedRoomId, FedError> {
    #[derive(serde::Deserialize)]
    struct RoomOnly {
        room_id: OwnedRoomId,
    }
    serde_json::from_str::<RoomOnly>(raw.get())
        .map(|r| r.room_id)
        .map_err(|e| FedError::BadRequest(format!("the PDU has no valid room_id: {e}")))
}

impl Federation {
    /// Format, signatures and hashes of a PDU in a room of `version`.
    /// `room_id` is the room the caller expects (the v12 create event names none).
    pub async fn verify_pdu(
        &self,
        version: &RoomVersionId,
        room_id: &RoomId,
        raw: &RawValue,
    ) -> Result<VerifiedPdu, FedError> {
        let rules =
            version.rules().ok_or_else(|| FedError::BadRequest(format!("unsupported room version {version}")))?;
        let mut obj: CanonicalJsonObject =
            serde_json::from_str(raw.get()).map_err(|e| FedError::BadRequest(format!("the PDU is not JSON: {e}")))?;
        ruma::state_res::check_pdu_format(&obj, &rules.event_format).map_err(FedError::BadRequest)?;
        let event_id = crate::rooms::event_format::event_id_of(&obj, &rules).map_err(FedError::BadRequest)?;
        match obj.get("room_id") {
            Some(CanonicalJsonValue::String(id)) if id == room_id.as_str() => {}
            None if matches!(obj.get("type"), Some(CanonicalJsonValue::String(t)) if t == "m.room.create") => {}
            _ => return Err(FedError::BadRequest(format!("the PDU is not an event of {room_id}"))),
        }
        let servers = required_server_signatures_to_verify_event(&obj, &rules.signatures)
            .map_err(|e| FedError::BadRequest(e.to_string()))?;
        let at_ms = match obj.get("origin_server_ts") {
            Some(CanonicalJsonValue::Integer(ts)) if rules.enforce_key_validity => Some(i64::from(*ts)),
            _ => None,
        };
        let keys = self.public_key_map(&obj, servers, at_ms).await?;
        match verify_event(&keys, &obj, &rules) {
            Ok(Verified::All) => {}
            Ok(Verified::Signatures) => {
                tracing::info!(%event_id, "content hash mismatch: keeping the redacted event");
                obj = redact(obj, &rules.redaction, None::<RedactedBecause>)
                    .map_err(|e| FedError::BadRequest(e.to_string()))?;
            }
            Err(e) => return Err(FedError::Unauthorized(format!("{event_id} does not verify: {e}"))),
        }
        // Unsigned data from the sender is not trusted.
        obj.remove("unsigned");
        Ok(VerifiedPdu::new(event_id, room_id, &obj)?)
    }

    /// Handles one PDU of a transaction from `origin`.
    pub async fn receive_pdu(&self, origin: &ServerName, raw: &RawValue) -> Result<OwnedEventId, FedError> {
        let room_id = room_of(raw)?;
        if !self.rooms.knows_room(&room_id).await? {
            return Err(FedError::NotFound(format!("this server is not in {room_id}")));
        }
        // Spec: server-server API, "Server ACLs" (checked per PDU of /send).
        if !self.rooms.server_allowed(&room_id, origin).await? {
            return Err(FedError::Forbidden(format!("the server ACL of {room_id} denies {origin}")));
        }
        let version = self.rooms.room_version(&room_id).await?;
        let event = self.verify_pdu(&version, &room_id, raw).await?;
        let event_id = event.pdu.event_id.clone();
        self.process_verified(origin, &version, event, 0).await?;
        Ok(event_id)
    }

    async fn process_verified(
        &self,
        origin: &ServerName,
        version: &RoomVersionId,
        event: VerifiedPdu,
        depth: usize,
    ) -> Result<(), FedError> {
        let room_id = event.pdu.room.clone();
        // Missing auth events: the event's auth chain from the sender.
        if !self.rooms.missing_events(&event.pdu.fields.auth_events).await?.is_empty() {
            self.fetch_auth_chain(origin, version, &room_id, &event.pdu.event_id).await?;
        }
        // Missing prev events: fill the gap with get_missing_events.
        let mut missing_prev = self.rooms.missing_events(&event.pdu.fields.prev_events).await?;
        if !missing_prev.is_empty() && depth == 0 {
            self.fill_gap(origin, version, &room_id, &event).await;
            missing_prev = self.rooms.missing_events(&event.pdu.fields.prev_events).await?;
        }
        // Still missing: the state before the event comes from its server
        // (spec: server-server API, "Checks performed on receipt of a PDU").
        let outcome = if missing_prev.is_empty() {
            self.rooms.append_remote(event, None).await?
        } else {
            match self.fetch_state_before(origin, version, &room_id, &event.pdu.event_id).await {
                Ok(state) => self.rooms.append_remote_with_state_before(event, state).await?,
                Err(e) => {
                    tracing::info!(event_id = %event.pdu.event_id, error = %e, "no state from /state_ids; using the state this server has");
                    self.rooms.append_remote(event, None).await?
                }
            }
        };
        // A rejected event was processed: the transaction's answer for it
        // is `{}`, as Synapse's (and Sytest's, which checks it); `error` is
        // for a PDU that could not be processed at all.
        if let RemoteOutcome::Rejected(reason) = outcome {
            tracing::info!(%origin, %room_id, %reason, "rejected a PDU by the auth rules");
        }
        Ok(())
    }

    /// The state before `event_id` as `origin` reports it (`/state_ids`);
    /// events of it this server lacks are fetched (`/event`, or `/state`
    /// when there are many), verified, checked against their auth events
    /// and stored as outliers.
    async fn fetch_state_before(
        &self,
        origin: &ServerName,
        version: &RoomVersionId,
        room_id: &RoomId,
        event_id: &EventId,
    ) -> Result<StateMap, FedError> {
        let response =
            self.request(origin, get_room_state_ids::v1::Request::new(event_id.to_owned(), room_id.to_owned())).await?;
        let mut wanted = response.pdu_ids.clone();
        wanted.extend(response.auth_chain_ids.iter().cloned());
        let missing = self.rooms.missing_events(&wanted).await?;
        let mut fetched = Vec::with_capacity(missing.len());
        if missing.len() > STATE_FETCH_ONE_BY_ONE {
            // Many unknown events: the whole state and auth chain at once.
            let response =
                self.request(origin, get_room_state::v1::Request::new(event_id.to_owned(), room_id.to_owned())).await?;
            let missing: HashSet<OwnedEventId> = missing.into_iter().collect();
            for raw in response.pdus.iter().chain(&response.auth_chain) {
                match self.verify_pdu(version, room_id, raw).await {
                    Ok(event) if event.pdu.room == room_id && missing.contains(&event.pdu.event_id) => {
                        fetched.push(event)
                    }
                    Ok(_) => {}
                    Err(e) => tracing::info!(%origin, error = %e, "dropped a state event that does not verify"),
                }
            }
        } else {
            for id in missing {
                let pdu = self.request(origin, get_event::v1::Request::new(id.clone())).await?.pdu;
                let event = self.verify_pdu(version, room_id, &pdu).await?;
                if event.pdu.event_id != id || event.pdu.room != room_id {
                    return Err(FedError::BadResponse(format!("/event/{id} returned another event")));
                }
                fetched.push(event);
            }
        }
        fetched.sort_by_key(|e| u64::from(e.pdu.fields.depth));
        self.rooms.store_outliers(version, &fetched).await?;
        let events = self.rooms.get_pdus(response.pdu_ids.iter()).await?;
        let mut state = StateMap::new();
        for id in &response.pdu_ids {
            let pdu = events.get(id).ok_or_else(|| FedError::BadResponse(format!("state event {id} is missing")))?;
            let key = pdu.state_key().ok_or_else(|| FedError::BadResponse(format!("{id} is not a state event")))?;
            if pdu.room != room_id {
                return Err(FedError::BadResponse(format!("state event {id} is of another room")));
            }
            state.insert((StateEventType::from(pdu.kind().to_string()), key.to_owned()), id.clone());
        }
        Ok(state)
    }

    /// Fetches and stores (as outliers) the auth chain of `event_id`.
    async fn fetch_auth_chain(
        &self,
        origin: &ServerName,
        version: &RoomVersionId,
        room_id: &RoomId,
        event_id: &EventId,
    ) -> Result<(), FedError> {
        let response = self
            .request(origin, get_event_authorization::v1::Request::new(room_id.to_owned(), event_id.to_owned()))
            .await?;
        let mut verified = Vec::new();
        for raw in &response.auth_chain {
            match self.verify_pdu(version, room_id, raw).await {
                Ok(event) if event.pdu.room == room_id => verified.push(event),
                Ok(_) => {}
                Err(e) => tracing::info!(error = %e, "dropping an auth chain event that does not verify"),
            }
        }
        verified.sort_by_key(|e| u64::from(e.pdu.fields.depth));
        self.rooms.store_outliers(version, &verified).await?;
        Ok(())
    }

    /// Fetches the events between this server's forward extremities and
    /// `event`, and appends them oldest first.
    async fn fill_gap(&self, origin: &ServerName, version: &RoomVersionId, room_id: &RoomId, event: &VerifiedPdu) {
        let earliest = match self.rooms.forward_extremities(room_id).await {
            Ok(ids) => ids,
            Err(_) => return,
        };
        let mut request =
            get_missing_events::v1::Request::new(room_id.to_owned(), earliest, vec![event.pdu.event_id.clone()]);
        request.limit = UInt::from(MISSING_EVENTS_LIMIT);
        let Ok(response) = self.request(origin, request).await else { return };
        let mut events = Vec::new();
        for raw in &response.events {
            if let Ok(e) = self.verify_pdu(version, room_id, raw).await
                && e.pdu.room == room_id
            {
                events.push(e);
            }
        }
        events.sort_by_key(|e| u64::from(e.pdu.fields.depth));
        for e in events {
            if let Err(err) = Box::pin(self.process_verified(origin, version, e, 1)).await {
                tracing::info!(error = %err, "a missing event could not be appended");
            }
        }
    }
}

/// Events asked for in one backfill request.
const BACKFILL_LIMIT: u32 = 100;

impl Federation {
    /// Fetches history older than this server's oldest event of the room
    /// from a server in the room; returns how many events were added.
    pub async fn backfill(&self, room_id: &RoomId) -> usize {
        if !self.enabled() {
            return 0;
        }
        match self.try_backfill(room_id).await {
            Ok(n) => n,
            Err(e) => {
                tracing::info!(%room_id, error = %e, "backfill failed");
                0
            }
        }
    }

    async fn try_backfill(&self, room_id: &RoomId) -> Result<usize, FedError> {
        let Some(oldest) = self.rooms.oldest_event(room_id).await? else { return Ok(0) };
        if *oldest.kind() == ruma::events::TimelineEventType::RoomCreate {
            return Ok(0);
        }
        let from = oldest.fields.prev_events.clone();
        if from.is_empty() {
            return Ok(0);
        }
        let version = self.rooms.room_version(room_id).await?;
        for server in self.room_servers(room_id).await? {
            let request = ruma::api::federation::backfill::get_backfill::v1::Request::new(
                room_id.to_owned(),
                from.clone(),
                UInt::from(BACKFILL_LIMIT),
            );
            let response = match self.request(&server, request).await {
                Ok(r) => r,
                Err(e) => {
                    tracing::info!(%room_id, %server, error = %e, "backfill request failed");
                    continue;
                }
            };
            let mut events = Vec::new();
            for raw in &response.pdus {
                match self.verify_pdu(&version, room_id, raw).await {
                    Ok(event) => events.push(event),
                    Err(e) => tracing::info!(%server, error = %e, "dropped a backfilled event that does not verify"),
                }
            }
            // Auth events this server lacks come with the events' auth chains.
            for event in &events {
                if !self.rooms.missing_events(&event.pdu.fields.auth_events).await?.is_empty() {
                    let _ = self.fetch_auth_chain(&server, &version, room_id, &event.pdu.event_id).await;
                }
            }
            events.sort_by_key(|e| u64::from(e.pdu.fields.depth));
            let added = self.rooms.store_backfilled(room_id, events).await?;
            if added > 0 {
                return Ok(added);
            }
        }
        Ok(0)
    }
}

impl Federation {
    /// Whether a transaction of `origin` was handled already (server-server
    /// API, "Transactions": a retried transaction is answered, not redone).
    pub async fn transaction_seen(&self, origin: &ServerName, txn_id: &str) -> Result<bool, FedError> {
        Ok(self.db.federation_txn_seen(origin.to_string(), txn_id.to_owned()).await?)
    }

    /// Records a transaction of `origin` as handled.
    pub async fn transaction_handled(&self, origin: &ServerName, txn_id: &str) -> Result<(), FedError> {
        Ok(self.db.mark_federation_txn(origin.to_string(), txn_id.to_owned()).await?)
    }

    /// Handles the PDUs of a transaction, one by one: the result of each,
    /// by event id (a PDU whose id cannot be told is left out).
    pub async fn receive_pdus(
        &self,
        origin: &ServerName,
        pdus: &[Box<RawValue>],
    ) -> BTreeMap<OwnedEventId, Result<(), String>> {
        let mut results = BTreeMap::new();
        for raw in pdus {
            match self.receive_pdu(origin, raw).await {
                Ok(event_id) => {
                    results.insert(event_id, Ok(()));
                }
                Err(e) => {
                    tracing::info!(%origin, error = %e, "refused a PDU");
                    if let Some(id) = self.event_id_of(raw).await {
                        results.insert(id, Err(e.to_string()));
                    }
                }
            }
        }
        results
    }

    /// The event id of a raw PDU of a room known here, for reporting a
    /// refusal.
    async fn event_id_of(&self, raw: &RawValue) -> Option<OwnedEventId> {
        let room = room_of(raw).ok()?;
        let version = self.rooms.room_version(&room).await.ok()?;
        let rules = version.rules()?;
        let obj: CanonicalJsonObject = serde_json::from_str(raw.get()).ok()?;
        crate::rooms::event_format::event_id_of(&obj, &rules).ok()
    }
}
