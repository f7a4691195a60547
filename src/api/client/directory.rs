//! Room aliases and the public room directory (client-server API, "Room
//! aliases", "Listing rooms").

use axum::Router;
use ruma::{
    UInt,
    api::client::{
        alias::{create_alias, delete_alias, get_alias},
        directory::{get_public_rooms, get_public_rooms_filtered, get_room_visibility, set_room_visibility},
        room::{Visibility, aliases},
    },
    directory::{PublicRoomsChunk, PublicRoomsChunkInit},
    room::JoinRuleKind,
};

use crate::{
    http::{ApiError, RouterExt, Ruma},
    rooms::PublicRoom,
    services::AppState,
};

pub fn routes(router: Router<AppState>) -> Router<AppState> {
    router
        .ruma(create)
        .ruma(resolve)
        .ruma(delete)
        .ruma(room_aliases)
        .ruma(public_rooms)
        .ruma(public_rooms_filtered)
        .ruma(get_visibility)
        .ruma(set_visibility)
}

async fn create(state: AppState, req: Ruma<create_alias::v3::Request>) -> Result<create_alias::v3::Response, ApiError> {
    let user = req.session().user_id.clone();
    state.rooms.require_joined(&req.body.room_id, &user).await?;
    state.rooms.create_alias(&user, &req.body.room_alias, &req.body.room_id).await?;
    Ok(create_alias::v3::Response::new())
}

async fn resolve(state: AppState, req: Ruma<get_alias::v3::Request>) -> Result<get_alias::v3::Response, ApiError> {
    let alias = req.body.room_alias;
    // An alias of another server is that server's to answer.
    if alias.server_name() != state.config.server.server_name && state.federation.enabled() {
        let request = ruma::api::federation::query::get_room_information::v1::Request::new(alias.clone());
        let answer = state.federation.request(alias.server_name(), request).await?;
        return Ok(get_alias::v3::Response::new(answer.room_id, answer.servers));
    }
    let room_id = state.rooms.resolve_alias(&alias).await?;
    Ok(get_alias::v3::Response::new(room_id, vec![state.config.server.server_name.clone()]))
}

async fn delete(state: AppState, req: Ruma<delete_alias::v3::Request>) -> Result<delete_alias::v3::Response, ApiError> {
    let session = req.session().clone();
    state.rooms.delete_alias(&session.user_id, session.is_admin, &req.body.room_alias).await?;
    Ok(delete_alias::v3::Response::new())
}

async fn room_aliases(state: AppState, req: Ruma<aliases::v3::Request>) -> Result<aliases::v3::Response, ApiError> {
    let user = req.session().user_id.clone();
    Ok(aliases::v3::Response::new(state.rooms.room_aliases(&user, &req.body.room_id).await?))
}

fn chunk(room: PublicRoom) -> PublicRoomsChunk {
    let mut chunk: PublicRoomsChunk = PublicRoomsChunkInit {
        num_joined_members: UInt::try_from(room.joined_members.max(0) as u64).unwrap_or_default(),
        room_id: room.room_id,
        world_readable: room.world_readable,
        guest_can_join: room.guest_can_join,
    }
    .into();
    chunk.name = room.name;
    chunk.topic = room.topic;
    chunk.canonical_alias = room.canonical_alias.and_then(|a| a.try_into().ok());
    chunk.avatar_url = room.avatar_url.map(Into::into);
    chunk.join_rule = room.join_rule.map(|r| JoinRuleKind::from(r.as_str())).unwrap_or(JoinRuleKind::Public);
    chunk.room_type = room.room_type.map(Into::into);
    chunk
}

/// Pages through the directory: `since` is the offset as a decimal string.
/// Other servers read it through federation too.
pub(crate) async fn page(
    state: &AppState,
    search: Option<&str>,
    limit: Option<UInt>,
    since: Option<&str>,
) -> Result<(Vec<PublicRoomsChunk>, Option<String>, Option<String>, UInt), ApiError> {
    let rooms = state.rooms.public_rooms(search).await?;
    let total = UInt::try_from(rooms.len() as u64).unwrap_or_default();
    let offset = match since {
        Some(s) => s.parse::<usize>().map_err(|_| ApiError::invalid_param("invalid `since` token"))?,
        None => 0,
    };
    let limit = limit.and_then(|l| usize::try_from(l).ok()).unwrap_or(100).clamp(1, 500);
    let end = (offset + limit).min(rooms.len());
    let next = (end < rooms.len()).then(|| end.to_string());
    let prev = (offset > 0).then(|| offset.saturating_sub(limit).to_string());
    let chunk = rooms.into_iter().skip(offset).take(limit).map(chunk).collect();
    Ok((chunk, next, prev, total))
}

/// The other server whose directory a client asks for, if any.
fn remote_directory(state: &AppState, server: Option<&ruma::OwnedServerName>) -> Option<ruma::OwnedServerName> {
    server.filter(|s| **s != state.config.server.server_name && state.federation.enabled()).cloned()
}

async fn public_rooms(
    state: AppState,
    req: Ruma<get_public_rooms::v3::Request>,
) -> Result<get_public_rooms::v3::Response, ApiError> {
    if let Some(server) = remote_directory(&state, req.body.server.as_ref()) {
        let mut request = ruma::api::federation::directory::get_public_rooms::v1::Request::new();
        request.limit = req.body.limit;
        request.since = req.body.since;
        let answer = state.federation.request(&server, request).await?;
        let mut response = get_public_rooms::v3::Response::new(answer.chunk);
        response.next_batch = answer.next_batch;
        response.prev_batch = answer.prev_batch;
        response.total_room_count_estimate = answer.total_room_count_estimate;
        return Ok(response);
    }
    let (chunk, next, prev, total) = page(&state, None, req.body.limit, req.body.since.as_deref()).await?;
    let mut response = get_public_rooms::v3::Response::new(chunk);
    response.next_batch = next;
    response.prev_batch = prev;
    response.total_room_count_estimate = Some(total);
    Ok(response)
}

async fn public_rooms_filtered(
    state: AppState,
    req: Ruma<get_public_rooms_filtered::v3::Request>,
) -> Result<get_public_rooms_filtered::v3::Response, ApiError> {
    let body = req.body;
    if let Some(server) = remote_directory(&state, body.server.as_ref()) {
        let mut request = ruma::api::federation::directory::get_public_rooms_filtered::v1::Request::new();
        request.limit = body.limit;
        request.since = body.since;
        request.filter = body.filter;
        let answer = state.federation.request(&server, request).await?;
        let mut response = get_public_rooms_filtered::v3::Response::new();
        response.chunk = answer.chunk;
        response.next_batch = answer.next_batch;
        response.prev_batch = answer.prev_batch;
        response.total_room_count_estimate = answer.total_room_count_estimate;
        return Ok(response);
    }
    let search = body.filter.generic_search_term.as_deref();
    let (chunk, next, prev, total) = page(&state, search, body.limit, body.since.as_deref()).await?;
    let mut response = get_public_rooms_filtered::v3::Response::new();
    response.chunk = chunk;
    response.next_batch = next;
    response.prev_batch = prev;
    response.total_room_count_estimate = Some(total);
    Ok(response)
}

async fn get_visibility(
    state: AppState,
    req: Ruma<get_room_visibility::v3::Request>,
) -> Result<get_room_visibility::v3::Response, ApiError> {
    let public = state.rooms.directory_visibility(&req.body.room_id).await?;
    Ok(get_room_visibility::v3::Response::new(if public { Visibility::Public } else { Visibility::Private }))
}

async fn set_visibility(
    state: AppState,
    req: Ruma<set_room_visibility::v3::Request>,
) -> Result<set_room_visibility::v3::Response, ApiError> {
    let session = req.session().clone();
    let public = req.body.visibility == Visibility::Public;
    state.rooms.set_directory_visibility(&session.user_id, session.is_admin, &req.body.room_id, public).await?;
    Ok(set_room_visibility::v3::Response::new())
}
