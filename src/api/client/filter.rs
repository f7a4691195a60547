//! Filters (client-server API, "Filtering"): stored per user, referenced
//! from `/sync` by id.

use axum::Router;
use ruma::api::client::filter::{create_filter, get_filter};

use crate::{
    http::{ApiError, RouterExt, Ruma},
    services::AppState,
};

pub fn routes(router: Router<AppState>) -> Router<AppState> {
    router.ruma(create).ruma(get)
}

async fn create(
    state: AppState,
    req: Ruma<create_filter::v3::Request>,
) -> Result<create_filter::v3::Response, ApiError> {
    let user = req.session().user_id.clone();
    if req.body.user_id != user {
        return Err(ApiError::forbidden("you cannot create filters for other users"));
    }
    let value = serde_json::to_value(&req.body.filter).map_err(ApiError::internal_with)?;
    Ok(create_filter::v3::Response::new(state.streams.create_filter(&user, &value).await?))
}

async fn get(state: AppState, req: Ruma<get_filter::v3::Request>) -> Result<get_filter::v3::Response, ApiError> {
    let user = req.session().user_id.clone();
    if req.body.user_id != user {
        return Err(ApiError::forbidden("you cannot read other users' filters"));
    }
    let value = state.streams.get_filter(&user, &req.body.filter_id).await?;
    let filter = serde_json::from_value(value).map_err(ApiError::internal_with)?;
    Ok(get_filter::v3::Response::new(filter))
}
