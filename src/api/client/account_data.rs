//! Account data and room tags (client-server API, "Client Config", "Room
//! Tagging").

use axum::Router;
use ruma::api::client::{
    config::{get_global_account_data, get_room_account_data, set_global_account_data, set_room_account_data},
    tag::{create_tag, delete_tag, get_tags},
};
use serde_json::Value;

use crate::{
    http::{ApiError, RouterExt, Ruma},
    services::AppState,
};

pub fn routes(router: Router<AppState>) -> Router<AppState> {
    router.ruma(set_global).ruma(get_global).ruma(set_room).ruma(get_room).ruma(tags).ruma(add_tag).ruma(remove_tag)
}

fn require_self(session_user: &ruma::OwnedUserId, user: &ruma::OwnedUserId) -> Result<(), ApiError> {
    if session_user != user {
        return Err(ApiError::forbidden("you cannot access other users' account data"));
    }
    Ok(())
}

fn parse(raw: &serde_json::value::RawValue) -> Result<Value, ApiError> {
    serde_json::from_str(raw.get()).map_err(|e| ApiError::bad_json(e.to_string()))
}

async fn set_global(
    state: AppState,
    req: Ruma<set_global_account_data::v3::Request>,
) -> Result<set_global_account_data::v3::Response, ApiError> {
    let user = req.session().user_id.clone();
    require_self(&user, &req.body.user_id)?;
    let content = parse(req.body.data.json())?;
    state.streams.set_account_data(&user, None, &req.body.event_type.to_string(), content).await?;
    Ok(set_global_account_data::v3::Response::new())
}

async fn get_global(
    state: AppState,
    req: Ruma<get_global_account_data::v3::Request>,
) -> Result<get_global_account_data::v3::Response, ApiError> {
    let user = req.session().user_id.clone();
    require_self(&user, &req.body.user_id)?;
    let value = state.streams.get_account_data(&user, None, &req.body.event_type.to_string()).await?;
    let raw = serde_json::value::to_raw_value(&value).map_err(ApiError::internal_with)?;
    Ok(get_global_account_data::v3::Response::new(ruma::serde::Raw::from_json(raw)))
}

async fn set_room(
    state: AppState,
    req: Ruma<set_room_account_data::v3::Request>,
) -> Result<set_room_account_data::v3::Response, ApiError> {
    let user = req.session().user_id.clone();
    require_self(&user, &req.body.user_id)?;
    let content = parse(req.body.data.json())?;
    state.streams.set_account_data(&user, Some(&req.body.room_id), &req.body.event_type.to_string(), content).await?;
    Ok(set_room_account_data::v3::Response::new())
}

async fn get_room(
    state: AppState,
    req: Ruma<get_room_account_data::v3::Request>,
) -> Result<get_room_account_data::v3::Response, ApiError> {
    let user = req.session().user_id.clone();
    require_self(&user, &req.body.user_id)?;
    let value =
        state.streams.get_account_data(&user, Some(&req.body.room_id), &req.body.event_type.to_string()).await?;
    let raw = serde_json::value::to_raw_value(&value).map_err(ApiError::internal_with)?;
    Ok(get_room_account_data::v3::Response::new(ruma::serde::Raw::from_json(raw)))
}

async fn tags(state: AppState, req: Ruma<get_tags::v3::Request>) -> Result<get_tags::v3::Response, ApiError> {
    let user = req.session().user_id.clone();
    require_self(&user, &req.body.user_id)?;
    let tags = state.streams.tags(&user, &req.body.room_id).await?;
    let tags = serde_json::from_value(Value::Object(tags)).map_err(ApiError::internal_with)?;
    Ok(get_tags::v3::Response::new(tags))
}

async fn add_tag(state: AppState, req: Ruma<create_tag::v3::Request>) -> Result<create_tag::v3::Response, ApiError> {
    let user = req.session().user_id.clone();
    require_self(&user, &req.body.user_id)?;
    let info = serde_json::to_value(&req.body.tag_info).map_err(ApiError::internal_with)?;
    state.streams.set_tag(&user, &req.body.room_id, &req.body.tag, Some(info)).await?;
    Ok(create_tag::v3::Response::new())
}

async fn remove_tag(state: AppState, req: Ruma<delete_tag::v3::Request>) -> Result<delete_tag::v3::Response, ApiError> {
    let user = req.session().user_id.clone();
    require_self(&user, &req.body.user_id)?;
    state.streams.set_tag(&user, &req.body.room_id, &req.body.tag, None).await?;
    Ok(delete_tag::v3::Response::new())
}
