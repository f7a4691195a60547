//! The federation endpoints but the membership handshakes: keys and the
//! notary, version, transactions, room history (event, state, auth chain,
//! backfill, missing events), directory and profile queries, public rooms
//! and end-to-end encryption keys and devices.

use std::collections::{BTreeMap, HashSet};

use ruma::{
    OwnedEventId, ServerName,
    api::federation::{
        authorization::get_event_authorization,
        backfill::get_backfill,
        device::get_devices,
        directory::{get_public_rooms, get_public_rooms_filtered},
        discovery::{get_remote_server_keys, get_remote_server_keys_batch, get_server_keys, get_server_version},
        event::{get_event, get_missing_events, get_room_state, get_room_state_ids},
        keys::{claim_keys, get_keys},
        query::{get_profile_information, get_room_information},
        transactions::send_transaction_message,
    },
};
use serde_json::Value;

use super::Fed;
use crate::federation::{FedError, keys::raw_document};
use crate::{http::ApiError, services::AppState};

pub(super) async fn own_keys(
    state: AppState,
    _: Fed<get_server_keys::v2::Request>,
) -> Result<get_server_keys::v2::Response, ApiError> {
    Ok(get_server_keys::v2::Response::new(raw_document(&state.federation.own_key_document())))
}

pub(super) async fn notary_get(
    state: AppState,
    req: Fed<get_remote_server_keys::v2::Request>,
) -> Result<get_remote_server_keys::v2::Response, ApiError> {
    let fed = &state.federation;
    let docs = fed.key_documents_for(&req.body.server_name).await;
    Ok(get_remote_server_keys::v2::Response::new(docs.into_iter().map(|d| raw_document(&fed.countersign(d))).collect()))
}

pub(super) async fn notary_post(
    state: AppState,
    req: Fed<get_remote_server_keys_batch::v2::Request>,
) -> Result<get_remote_server_keys_batch::v2::Response, ApiError> {
    let fed = &state.federation;
    let mut out = Vec::new();
    for server in req.body.server_keys.keys().take(100) {
        for doc in fed.key_documents_for(server).await {
            out.push(raw_document(&fed.countersign(doc)));
        }
    }
    Ok(get_remote_server_keys_batch::v2::Response::new(out))
}

pub(super) async fn version(
    _: AppState,
    _: Fed<get_server_version::v1::Request>,
) -> Result<get_server_version::v1::Response, ApiError> {
    let mut server = get_server_version::v1::Server::new();
    server.name = Some("Plexus".into());
    server.version = Some(env!("CARGO_PKG_VERSION").into());
    let mut response = get_server_version::v1::Response::new();
    response.server = Some(server);
    Ok(response)
}

pub(super) async fn send_transaction(
    state: AppState,
    req: Fed<send_transaction_message::v1::Request>,
) -> Result<send_transaction_message::v1::Response, ApiError> {
    let origin = req.origin().to_owned();
    let body = req.body;
    if body.origin != origin {
        return Err(ApiError::forbidden("the transaction's origin is not the signing server"));
    }
    if body.pdus.len() > 50 || body.edus.len() > 100 {
        return Err(ApiError::bad_json("a transaction holds at most 50 PDUs and 100 EDUs"));
    }
    let fed = &state.federation;
    let txn_id = body.transaction_id.to_string();
    if state.db.federation_txn_seen(origin.to_string(), txn_id.clone()).await.map_err(FedError::from)? {
        return Ok(send_transaction_message::v1::Response::new(BTreeMap::new()));
    }
    let mut results = BTreeMap::new();
    for raw in &body.pdus {
        match fed.receive_pdu(&origin, raw).await {
            Ok(event_id) => {
                results.insert(event_id, Ok(()));
            }
            Err(e) => {
                tracing::info!(%origin, error = %e, "refused a PDU");
                if let Some(id) = event_id_of(raw, &state).await {
                    results.insert(id, Err(e.to_string()));
                }
            }
        }
    }
    for edu in &body.edus {
        if let Ok(value) = serde_json::from_str::<Value>(edu.json().get()) {
            super::edus::receive_edu(&state, &origin, value).await;
        }
    }
    state.db.mark_federation_txn(origin.to_string(), txn_id).await.map_err(FedError::from)?;
    Ok(send_transaction_message::v1::Response::new(results))
}

/// The event id of a raw PDU, for reporting a refusal.
async fn event_id_of(raw: &serde_json::value::RawValue, state: &AppState) -> Option<OwnedEventId> {
    let room = crate::federation::room_of(raw).ok()?;
    let version = state.rooms.room_version(&room).await.ok()?;
    let rules = version.rules()?;
    let obj: ruma::CanonicalJsonObject = serde_json::from_str(raw.get()).ok()?;
    crate::rooms::event_format::event_id_of(&obj, &rules).ok()
}

/// Refuses a server the room's server ACL denies (server-server API,
/// "Server ACLs": 403 `M_FORBIDDEN`).
pub(super) async fn require_acl_allows(
    state: &AppState,
    room_id: &ruma::RoomId,
    server: &ServerName,
) -> Result<(), ApiError> {
    if state.rooms.knows_room(room_id).await? && !state.rooms.server_allowed(room_id, server).await? {
        return Err(ApiError::forbidden("the room's server ACL denies your server"));
    }
    Ok(())
}

/// Whether `server` may see the room: the room's server ACL allows it, and
/// it has a joined member or the room is world-readable.
async fn require_server_in_room(state: &AppState, room_id: &ruma::RoomId, server: &ServerName) -> Result<(), ApiError> {
    if !state.rooms.knows_room(room_id).await? {
        return Err(ApiError::not_found("this server does not know the room"));
    }
    require_acl_allows(state, room_id, server).await?;
    let members = state.rooms.joined_members(room_id).await?;
    if members.iter().any(|u| u.server_name() == server) {
        return Ok(());
    }
    let visibility = state
        .rooms
        .current_state_event(room_id, &ruma::events::StateEventType::RoomHistoryVisibility, "")
        .await?
        .and_then(|e| e.content_value().get("history_visibility").and_then(Value::as_str).map(str::to_owned));
    if visibility.as_deref() == Some("world_readable") {
        return Ok(());
    }
    Err(ApiError::forbidden("your server has no member in this room"))
}

pub(super) async fn event(
    state: AppState,
    req: Fed<get_event::v1::Request>,
) -> Result<get_event::v1::Response, ApiError> {
    let origin = req.origin().to_owned();
    let pdu = state.rooms.get_pdu(&req.body.event_id).await?.ok_or_else(|| ApiError::not_found("unknown event"))?;
    require_server_in_room(&state, &pdu.room, &origin).await?;
    let json = state.rooms.pdu_jsons(std::slice::from_ref(&req.body.event_id)).await?;
    let pdu = json.into_iter().next().ok_or_else(|| ApiError::not_found("unknown event"))?;
    Ok(get_event::v1::Response::new(
        state.federation.server_name().to_owned(),
        ruma::MilliSecondsSinceUnixEpoch::now(),
        pdu,
    ))
}

pub(super) async fn state_ids(
    state: AppState,
    req: Fed<get_room_state_ids::v1::Request>,
) -> Result<get_room_state_ids::v1::Response, ApiError> {
    require_server_in_room(&state, &req.body.room_id, req.origin()).await?;
    let (pdus, chain) = state.rooms.state_and_auth_chain_at(&req.body.room_id, Some(&req.body.event_id)).await?;
    Ok(get_room_state_ids::v1::Response::new(chain, pdus))
}

pub(super) async fn room_state(
    state: AppState,
    req: Fed<get_room_state::v1::Request>,
) -> Result<get_room_state::v1::Response, ApiError> {
    require_server_in_room(&state, &req.body.room_id, req.origin()).await?;
    let (pdus, chain) = state.rooms.state_and_auth_chain_at(&req.body.room_id, Some(&req.body.event_id)).await?;
    Ok(get_room_state::v1::Response::new(state.rooms.pdu_jsons(&chain).await?, state.rooms.pdu_jsons(&pdus).await?))
}

pub(super) async fn event_auth(
    state: AppState,
    req: Fed<get_event_authorization::v1::Request>,
) -> Result<get_event_authorization::v1::Response, ApiError> {
    require_server_in_room(&state, &req.body.room_id, req.origin()).await?;
    let chain = state.db.auth_chain(vec![req.body.event_id.to_string()]).await.map_err(FedError::from)?;
    let chain: Vec<OwnedEventId> = chain.into_iter().filter_map(|id| OwnedEventId::try_from(id).ok()).collect();
    Ok(get_event_authorization::v1::Response::new(state.rooms.pdu_jsons(&chain).await?))
}

/// Walks prev_events back from `latest`, stopping at `earliest`.
async fn walk_back(
    state: &AppState,
    room_id: &ruma::RoomId,
    latest: &[OwnedEventId],
    earliest: &[OwnedEventId],
    limit: usize,
    include_start: bool,
) -> Result<Vec<OwnedEventId>, ApiError> {
    let stop: HashSet<&OwnedEventId> = earliest.iter().collect();
    let mut seen: HashSet<OwnedEventId> = HashSet::new();
    let mut out = Vec::new();
    let mut frontier: Vec<OwnedEventId> = if include_start {
        latest.to_vec()
    } else {
        let start = state.rooms.get_pdus(latest.iter()).await?;
        start.values().flat_map(|p| p.fields.prev_events.clone()).collect()
    };
    while !frontier.is_empty() && out.len() < limit {
        let events = state.rooms.get_pdus(frontier.iter()).await?;
        let mut next = Vec::new();
        for id in &frontier {
            if stop.contains(id) || !seen.insert(id.clone()) {
                continue;
            }
            let Some(pdu) = events.get(id) else { continue };
            if pdu.room != room_id {
                continue;
            }
            out.push(id.clone());
            if out.len() >= limit {
                break;
            }
            next.extend(pdu.fields.prev_events.iter().cloned());
        }
        frontier = next;
    }
    Ok(out)
}

pub(super) async fn missing_events(
    state: AppState,
    req: Fed<get_missing_events::v1::Request>,
) -> Result<get_missing_events::v1::Response, ApiError> {
    require_server_in_room(&state, &req.body.room_id, req.origin()).await?;
    let limit = usize::try_from(u64::from(req.body.limit)).unwrap_or(10).min(100);
    let ids =
        walk_back(&state, &req.body.room_id, &req.body.latest_events, &req.body.earliest_events, limit, false).await?;
    let mut pdus = state.rooms.get_pdus(ids.iter()).await?.into_values().collect::<Vec<_>>();
    let min_depth = u64::from(req.body.min_depth);
    pdus.retain(|p| u64::from(p.fields.depth) >= min_depth);
    pdus.sort_by_key(|p| u64::from(p.fields.depth));
    let ids: Vec<OwnedEventId> = pdus.iter().map(|p| p.event_id.clone()).collect();
    Ok(get_missing_events::v1::Response::new(state.rooms.pdu_jsons(&ids).await?))
}

pub(super) async fn backfill(
    state: AppState,
    req: Fed<get_backfill::v1::Request>,
) -> Result<get_backfill::v1::Response, ApiError> {
    require_server_in_room(&state, &req.body.room_id, req.origin()).await?;
    let limit = usize::try_from(u64::from(req.body.limit)).unwrap_or(10).min(100);
    let ids = walk_back(&state, &req.body.room_id, &req.body.v, &[], limit, true).await?;
    Ok(get_backfill::v1::Response::new(
        state.federation.server_name().to_owned(),
        ruma::MilliSecondsSinceUnixEpoch::now(),
        state.rooms.pdu_jsons(&ids).await?,
    ))
}

pub(super) async fn query_directory(
    state: AppState,
    req: Fed<get_room_information::v1::Request>,
) -> Result<get_room_information::v1::Response, ApiError> {
    if req.body.room_alias.server_name() != state.federation.server_name() {
        return Err(ApiError::not_found("the alias is not on this server"));
    }
    let room_id = state.rooms.resolve_alias(&req.body.room_alias).await?;
    let mut servers = vec![state.federation.server_name().to_owned()];
    servers.extend(state.federation.room_servers(&room_id).await?);
    Ok(get_room_information::v1::Response::new(room_id, servers))
}

/// A local user named in a request from another server.
fn local_user(state: &AppState, user: &ruma::UserId) -> Result<(), ApiError> {
    if user.server_name() != state.federation.server_name() {
        return Err(ApiError::not_found("the user is not on this server"));
    }
    Ok(())
}

pub(super) async fn query_profile(
    state: AppState,
    req: Fed<get_profile_information::v1::Request>,
) -> Result<get_profile_information::v1::Response, ApiError> {
    local_user(&state, &req.body.user_id)?;
    if state.db.get_user(req.body.user_id.clone()).await.map_err(FedError::from)?.is_none() {
        return Err(ApiError::not_found("no such user"));
    }
    let profile = state.db.get_profile(req.body.user_id.clone()).await.map_err(FedError::from)?;
    let wanted = req.body.field.as_ref().map(|f| f.as_str().to_owned());
    Ok(profile.into_iter().filter(|(k, _)| wanted.as_deref().is_none_or(|w| w == k)).collect())
}

fn raw_json<T>(value: Value) -> Result<ruma::serde::Raw<T>, ApiError> {
    serde_json::value::to_raw_value(&value).map(ruma::serde::Raw::from_json).map_err(|_| ApiError::internal())
}

pub(super) async fn user_keys_query(
    state: AppState,
    req: Fed<get_keys::v1::Request>,
) -> Result<get_keys::v1::Response, ApiError> {
    let own = state.federation.server_name().to_owned();
    // The requester is on another server: it never sees user-signing keys.
    let requester = ruma::UserId::parse(format!("@_:{}", req.origin())).map_err(|_| ApiError::internal())?;
    let wanted = req.body.device_keys.into_iter().filter(|(u, _)| u.server_name() == own).collect();
    let result = state.e2ee.query_keys(&requester, wanted).await?;
    let mut response = get_keys::v1::Response::new(BTreeMap::new());
    for (user, devices) in result.device_keys {
        let user = ruma::OwnedUserId::try_from(user).map_err(|_| ApiError::internal())?;
        let mut map = BTreeMap::new();
        for (device, keys) in devices {
            map.insert(ruma::OwnedDeviceId::from(device), raw_json(keys)?);
        }
        response.device_keys.insert(user, map);
    }
    for (user, key) in result.master_keys {
        response
            .master_keys
            .insert(ruma::OwnedUserId::try_from(user).map_err(|_| ApiError::internal())?, raw_json(key)?);
    }
    for (user, key) in result.self_signing_keys {
        response
            .self_signing_keys
            .insert(ruma::OwnedUserId::try_from(user).map_err(|_| ApiError::internal())?, raw_json(key)?);
    }
    Ok(response)
}

pub(super) async fn user_keys_claim(
    state: AppState,
    req: Fed<claim_keys::v1::Request>,
) -> Result<claim_keys::v1::Response, ApiError> {
    let own = state.federation.server_name().to_owned();
    let wanted = req
        .body
        .one_time_keys
        .into_iter()
        .filter(|(u, _)| u.server_name() == own)
        .map(|(u, devices)| (u, devices.into_iter().map(|(d, alg)| (d, alg.to_string())).collect()))
        .collect();
    let (claimed, _) = state.e2ee.claim_keys(wanted).await?;
    let mut keys = BTreeMap::new();
    for (user, devices) in claimed {
        let mut by_device = BTreeMap::new();
        for (device, ids) in devices {
            let mut by_id = BTreeMap::new();
            for (id, key) in ids {
                let id = ruma::OwnedOneTimeKeyId::try_from(id).map_err(|_| ApiError::internal())?;
                by_id.insert(id, raw_json(key)?);
            }
            by_device.insert(ruma::OwnedDeviceId::from(device), by_id);
        }
        keys.insert(ruma::OwnedUserId::try_from(user).map_err(|_| ApiError::internal())?, by_device);
    }
    Ok(claim_keys::v1::Response::new(keys))
}

pub(super) async fn user_devices(
    state: AppState,
    req: Fed<get_devices::v1::Request>,
) -> Result<get_devices::v1::Response, ApiError> {
    let user = req.body.user_id.clone();
    local_user(&state, &user)?;
    let requester = ruma::UserId::parse(format!("@_:{}", req.origin())).map_err(|_| ApiError::internal())?;
    let result = state.e2ee.query_keys(&requester, BTreeMap::from([(user.clone(), Vec::new())])).await?;
    let stream_id = ruma::UInt::try_from(crate::storage::now_ms().max(0) as u64).unwrap_or_default();
    let mut response = get_devices::v1::Response::new(user.clone(), stream_id);
    let names: BTreeMap<String, Option<String>> = state
        .db
        .list_devices(user.clone())
        .await
        .map_err(FedError::from)?
        .into_iter()
        .map(|d| (d.device_id.to_string(), d.display_name))
        .collect();
    for (device, keys) in result.device_keys.get(user.as_str()).cloned().unwrap_or_default() {
        let mut entry = get_devices::v1::UserDevice::new(ruma::OwnedDeviceId::from(device.clone()), raw_json(keys)?);
        entry.device_display_name = names.get(&device).cloned().flatten();
        response.devices.push(entry);
    }
    if let Some(key) = result.master_keys.get(user.as_str()) {
        response.master_key = Some(raw_json(key.clone())?);
    }
    if let Some(key) = result.self_signing_keys.get(user.as_str()) {
        response.self_signing_key = Some(raw_json(key.clone())?);
    }
    Ok(response)
}

pub(super) async fn public_rooms(
    state: AppState,
    req: Fed<get_public_rooms::v1::Request>,
) -> Result<get_public_rooms::v1::Response, ApiError> {
    let (chunk, next, prev, total) =
        crate::api::client::directory::page(&state, None, req.body.limit, req.body.since.as_deref()).await?;
    let mut response = get_public_rooms::v1::Response::new();
    response.chunk = chunk;
    response.next_batch = next;
    response.prev_batch = prev;
    response.total_room_count_estimate = Some(total);
    Ok(response)
}

pub(super) async fn public_rooms_filtered(
    state: AppState,
    req: Fed<get_public_rooms_filtered::v1::Request>,
) -> Result<get_public_rooms_filtered::v1::Response, ApiError> {
    let body = req.body;
    let search = body.filter.generic_search_term.as_deref();
    let (chunk, next, prev, total) =
        crate::api::client::directory::page(&state, search, body.limit, body.since.as_deref()).await?;
    let mut response = get_public_rooms_filtered::v1::Response::new();
    response.chunk = chunk;
    response.next_batch = next;
    response.prev_batch = prev;
    response.total_room_count_estimate = Some(total);
    Ok(response)
}
