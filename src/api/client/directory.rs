//! Room aliases and the public room directory (client-server API, "Room
//! aliases", "Listing rooms").

use axum::Router;
use ruma::api::client::{
    alias::{create_alias, delete_alias, get_alias},
    directory::{get_public_rooms, get_public_rooms_filtered, get_room_visibility, set_room_visibility},
    room::{Visibility, aliases},
};

use crate::{
    http::{ApiError, RouterExt, Ruma},
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
    // Spec: an exclusive alias namespace is the appservice's alone.
    if let Some(owner) = state.appservice.all().iter().find(|a| a.is_exclusive_alias(&req.body.room_alias))
        && req.session().appservice_id.as_deref() != Some(owner.id())
    {
        return Err(ApiError::new(
            http::StatusCode::BAD_REQUEST,
            ruma::api::error::ErrorKind::Exclusive,
            format!("{} is reserved by application service {}", req.body.room_alias, owner.id()),
        ));
    }
    state.rooms.require_joined(&req.body.room_id, &user).await?;
    state.rooms.create_alias(&user, &req.body.room_alias, &req.body.room_id).await?;
    Ok(create_alias::v3::Response::new())
}

async fn resolve(state: AppState, req: Ruma<get_alias::v3::Request>) -> Result<get_alias::v3::Response, ApiError> {
    state.appservice.query_alias_if_unknown(&req.body.room_alias).await?;
    let (room_id, servers) = state.federation.resolve_alias(&req.body.room_alias).await?;
    Ok(get_alias::v3::Response::new(room_id, servers))
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

async fn public_rooms(
    state: AppState,
    req: Ruma<get_public_rooms::v3::Request>,
) -> Result<get_public_rooms::v3::Response, ApiError> {
    let body = req.body;
    let page = state.federation.public_rooms(body.server.as_deref(), body.limit, body.since, None).await?;
    let mut response = get_public_rooms::v3::Response::new(page.chunk);
    response.next_batch = page.next_batch;
    response.prev_batch = page.prev_batch;
    response.total_room_count_estimate = page.total_room_count_estimate;
    Ok(response)
}

async fn public_rooms_filtered(
    state: AppState,
    req: Ruma<get_public_rooms_filtered::v3::Request>,
) -> Result<get_public_rooms_filtered::v3::Response, ApiError> {
    let body = req.body;
    let page = state.federation.public_rooms(body.server.as_deref(), body.limit, body.since, Some(body.filter)).await?;
    let mut response = get_public_rooms_filtered::v3::Response::new();
    response.chunk = page.chunk;
    response.next_batch = page.next_batch;
    response.prev_batch = page.prev_batch;
    response.total_room_count_estimate = page.total_room_count_estimate;
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
