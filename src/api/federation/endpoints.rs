//! The federation endpoints but the membership handshakes: keys and the
//! notary, version, transactions, room history (event, state, auth chain,
//! backfill, missing events), directory and profile queries, public rooms,
//! space hierarchies, end-to-end encryption keys and devices, and OpenID
//! userinfo.

use std::collections::BTreeMap;

use axum::extract::{FromRequest, Path, Query, Request, State};
use ruma::api::federation::{
    authorization::get_event_authorization,
    backfill::get_backfill,
    device::get_devices,
    directory::{get_public_rooms, get_public_rooms_filtered},
    discovery::{get_remote_server_keys, get_remote_server_keys_batch, get_server_keys, get_server_version},
    event::{get_event, get_missing_events, get_room_state, get_room_state_ids},
    keys::{claim_keys, get_keys},
    openid::get_openid_userinfo,
    query::{get_profile_information, get_room_information},
    space::get_hierarchy,
    transactions::send_transaction_message,
};
use serde_json::Value;

use super::{Fed, edus};
use crate::federation::keys::raw_document;
use crate::{
    http::{ApiError, RumaResponse},
    services::AppState,
};

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
    let minimum = i64::from(req.body.minimum_valid_until_ts.get());
    let docs = state.federation.notary_documents(&req.body.server_name, &[], Some(minimum)).await;
    Ok(get_remote_server_keys::v2::Response::new(docs.iter().map(raw_document).collect()))
}

/// `GET /_matrix/key/v2/query/{serverName}/{keyId}`: the form of the
/// notary query naming one key, gone from the spec but still asked by
/// older servers (and served by Synapse); ruma has no type for it.
pub(super) async fn notary_get_key(
    State(state): State<AppState>,
    Path((server_name, key_id)): Path<(String, String)>,
    Query(query): Query<NotaryQuery>,
) -> Result<axum::Json<Value>, ApiError> {
    let server =
        ruma::OwnedServerName::try_from(server_name).map_err(|_| ApiError::invalid_param("invalid server name"))?;
    let docs = state.federation.notary_documents(&server, &[key_id], query.minimum_valid_until_ts).await;
    Ok(axum::Json(serde_json::json!({ "server_keys": docs })))
}

#[derive(serde::Deserialize)]
pub(super) struct NotaryQuery {
    minimum_valid_until_ts: Option<i64>,
}

pub(super) async fn notary_post(
    state: AppState,
    req: Fed<get_remote_server_keys_batch::v2::Request>,
) -> Result<get_remote_server_keys_batch::v2::Response, ApiError> {
    let fed = &state.federation;
    let mut out = Vec::new();
    for (server, keys) in req.body.server_keys.iter().take(100) {
        let key_ids: Vec<String> = keys.keys().map(|id| id.to_string()).collect();
        let minimum =
            keys.values().filter_map(|criteria| criteria.minimum_valid_until_ts).map(|ts| i64::from(ts.get())).max();
        out.extend(fed.notary_documents(server, &key_ids, minimum).await.iter().map(raw_document));
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
    let txn_id = body.transaction_id.as_str();
    if fed.transaction_seen(&origin, txn_id).await? {
        return Ok(send_transaction_message::v1::Response::new(BTreeMap::new()));
    }
    let (early, late): (Vec<_>, Vec<_>) = body.edus.iter().partition(|edu| edus::applies_before_pdus(edu));
    for edu in early {
        edus::receive_edu(&state, &origin, edu).await;
    }
    let results = fed.receive_pdus(&origin, &body.pdus).await;
    for edu in late {
        edus::receive_edu(&state, &origin, edu).await;
    }
    fed.transaction_handled(&origin, txn_id).await?;
    Ok(send_transaction_message::v1::Response::new(results))
}

pub(super) async fn event(
    state: AppState,
    req: Fed<get_event::v1::Request>,
) -> Result<get_event::v1::Response, ApiError> {
    let origin = req.origin().to_owned();
    let pdu = state.rooms.get_pdu(&req.body.event_id).await?.ok_or_else(|| ApiError::not_found("unknown event"))?;
    state.rooms.require_server_in_room(&pdu.room, &origin).await?;
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
    state.rooms.require_server_in_room(&req.body.room_id, req.origin()).await?;
    let (pdus, chain) = state.rooms.state_and_auth_chain_at(&req.body.room_id, Some(&req.body.event_id)).await?;
    Ok(get_room_state_ids::v1::Response::new(chain, pdus))
}

pub(super) async fn room_state(
    state: AppState,
    req: Fed<get_room_state::v1::Request>,
) -> Result<get_room_state::v1::Response, ApiError> {
    state.rooms.require_server_in_room(&req.body.room_id, req.origin()).await?;
    let (pdus, chain) = state.rooms.state_and_auth_chain_at(&req.body.room_id, Some(&req.body.event_id)).await?;
    Ok(get_room_state::v1::Response::new(state.rooms.pdu_jsons(&chain).await?, state.rooms.pdu_jsons(&pdus).await?))
}

pub(super) async fn event_auth(
    state: AppState,
    req: Fed<get_event_authorization::v1::Request>,
) -> Result<get_event_authorization::v1::Response, ApiError> {
    state.rooms.require_server_in_room(&req.body.room_id, req.origin()).await?;
    let chain = state.rooms.auth_chain(std::slice::from_ref(&req.body.event_id)).await?;
    Ok(get_event_authorization::v1::Response::new(state.rooms.pdu_jsons(&chain).await?))
}

pub(super) async fn missing_events(
    state: AppState,
    req: Fed<get_missing_events::v1::Request>,
) -> Result<get_missing_events::v1::Response, ApiError> {
    state.rooms.require_server_in_room(&req.body.room_id, req.origin()).await?;
    let limit = usize::try_from(u64::from(req.body.limit)).unwrap_or(10).min(100);
    let body = req.body;
    let ids = state
        .rooms
        .missing_events_between(
            &body.room_id,
            &body.latest_events,
            &body.earliest_events,
            limit,
            u64::from(body.min_depth),
        )
        .await?;
    Ok(get_missing_events::v1::Response::new(state.rooms.pdu_jsons(&ids).await?))
}

pub(super) async fn backfill(
    state: AppState,
    req: Fed<get_backfill::v1::Request>,
) -> Result<get_backfill::v1::Response, ApiError> {
    state.rooms.require_server_in_room(&req.body.room_id, req.origin()).await?;
    let limit = usize::try_from(u64::from(req.body.limit)).unwrap_or(10).min(100);
    let ids = state.rooms.history_before(&req.body.room_id, &req.body.v, limit).await?;
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
    let (room_id, servers) = state.federation.answer_alias_query(&req.body.room_alias).await?;
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
    let profile = state.users.get_profile(&req.body.user_id).await?;
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
    // The stream id of the last `m.device_list_update` sent about the user,
    // which the next one names as its `prev_id`.
    let stream_id = state.e2ee.device_stream_id(&user).await?;
    let stream_id = ruma::UInt::new_saturating(u64::try_from(stream_id).unwrap_or_default());
    let mut response = get_devices::v1::Response::new(user.clone(), stream_id);
    let names: BTreeMap<String, Option<String>> =
        state.users.list_devices(&user).await?.into_iter().map(|d| (d.device_id.to_string(), d.display_name)).collect();
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
    let page = state.rooms.public_rooms_page(None, req.body.limit, req.body.since.as_deref()).await?;
    let mut response = get_public_rooms::v1::Response::new();
    response.chunk = page.chunk;
    response.next_batch = page.next_batch;
    response.prev_batch = page.prev_batch;
    response.total_room_count_estimate = page.total_room_count_estimate;
    Ok(response)
}

pub(super) async fn public_rooms_filtered(
    state: AppState,
    req: Fed<get_public_rooms_filtered::v1::Request>,
) -> Result<get_public_rooms_filtered::v1::Response, ApiError> {
    let body = req.body;
    let search = body.filter.generic_search_term.as_deref();
    let page = state.rooms.public_rooms_page(search, body.limit, body.since.as_deref()).await?;
    let mut response = get_public_rooms_filtered::v1::Response::new();
    response.chunk = page.chunk;
    response.next_batch = page.next_batch;
    response.prev_batch = page.prev_batch;
    response.total_room_count_estimate = page.total_room_count_estimate;
    Ok(response)
}

pub(super) async fn hierarchy(
    state: AppState,
    req: Fed<get_hierarchy::v1::Request>,
) -> Result<get_hierarchy::v1::Response, ApiError> {
    let origin = req.origin().to_owned();
    let space = state.federation.answer_hierarchy(&origin, &req.body.room_id, req.body.suggested_only).await?;
    let mut response = get_hierarchy::v1::Response::new(space.room);
    response.children = space.children;
    response.inaccessible_children = space.inaccessible_children;
    Ok(response)
}

/// Whose OpenID token this is (server-server API, "OpenID"). Asked by a
/// third party, not a server: the request is not signed, the token is the
/// credential. Mounted by hand: a request without `access_token` names no
/// valid token, 401 `M_UNKNOWN_TOKEN` as for a wrong one (as Synapse, and
/// Sytest "Requests to userinfo without access tokens are rejected"),
/// where ruma's parsing would make it a 400.
pub(super) async fn openid_userinfo(
    State(state): State<AppState>,
    req: Request,
) -> Result<RumaResponse<get_openid_userinfo::v1::Response>, ApiError> {
    let has_token =
        req.uri().query().is_some_and(|q| form_urlencoded::parse(q.as_bytes()).any(|(k, _)| k == "access_token"));
    if state.federation.enabled() && !has_token {
        return Err(ApiError::unknown_token(false));
    }
    let req = Fed::<get_openid_userinfo::v1::Request>::from_request(req, &state).await?;
    let user_id = state.users.openid_userinfo(&req.body.access_token).await?;
    Ok(RumaResponse(get_openid_userinfo::v1::Response::new(user_id)))
}
