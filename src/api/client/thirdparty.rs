//! Third-party networks (client-server API, "Third-party Networks"): the
//! protocols that application services bridge to, and lookups of users
//! and locations on them, passed through to the appservices that declare
//! each protocol (`protocols` in their registration). With none, clients
//! that ask at start-up (matrix-js-sdk's `getThirdpartyProtocols`,
//! Element's room directory) get the empty answer instead of a 404.

use axum::Router;
use ruma::api::client::thirdparty::{
    get_location_for_protocol, get_location_for_room_alias, get_protocol, get_protocols, get_user_for_protocol,
    get_user_for_user_id,
};

use crate::{
    appservice::ThirdPartyLookup,
    http::{ApiError, RouterExt, Ruma},
    services::AppState,
};

pub fn routes(router: Router<AppState>) -> Router<AppState> {
    router
        .ruma(protocols)
        .ruma(protocol)
        .ruma(users_of_protocol)
        .ruma(locations_of_protocol)
        .ruma(users_of_matrix_id)
        .ruma(locations_of_alias)
}

async fn protocols(
    state: AppState,
    _: Ruma<get_protocols::v3::Request>,
) -> Result<get_protocols::v3::Response, ApiError> {
    Ok(get_protocols::v3::Response::new(state.appservice.thirdparty_protocols().await))
}

async fn protocol(
    state: AppState,
    req: Ruma<get_protocol::v3::Request>,
) -> Result<get_protocol::v3::Response, ApiError> {
    let protocol = state.appservice.thirdparty_protocol(&req.body.protocol).await;
    let protocol = protocol.ok_or_else(|| ApiError::not_found(format!("unknown protocol {}", req.body.protocol)))?;
    Ok(get_protocol::v3::Response::new(protocol))
}

async fn users_of_protocol(
    state: AppState,
    req: Ruma<get_user_for_protocol::v3::Request>,
) -> Result<get_user_for_protocol::v3::Response, ApiError> {
    let lookup = ThirdPartyLookup::Protocol { protocol: req.body.protocol, fields: req.body.fields };
    Ok(get_user_for_protocol::v3::Response::new(state.appservice.thirdparty_users(lookup).await))
}

async fn locations_of_protocol(
    state: AppState,
    req: Ruma<get_location_for_protocol::v3::Request>,
) -> Result<get_location_for_protocol::v3::Response, ApiError> {
    let lookup = ThirdPartyLookup::Protocol { protocol: req.body.protocol, fields: req.body.fields };
    Ok(get_location_for_protocol::v3::Response::new(state.appservice.thirdparty_locations(lookup).await))
}

async fn users_of_matrix_id(
    state: AppState,
    req: Ruma<get_user_for_user_id::v3::Request>,
) -> Result<get_user_for_user_id::v3::Response, ApiError> {
    let lookup = ThirdPartyLookup::Matrix(req.body.userid.to_string());
    Ok(get_user_for_user_id::v3::Response::new(state.appservice.thirdparty_users(lookup).await))
}

async fn locations_of_alias(
    state: AppState,
    req: Ruma<get_location_for_room_alias::v3::Request>,
) -> Result<get_location_for_room_alias::v3::Response, ApiError> {
    let lookup = ThirdPartyLookup::Matrix(req.body.alias.to_string());
    Ok(get_location_for_room_alias::v3::Response::new(state.appservice.thirdparty_locations(lookup).await))
}
