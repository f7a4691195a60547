//! Third-party networks (client-server API, "Third-party Networks"): the
//! protocols that application services bridge to. Plexus runs no
//! application services, so it knows no protocol; clients that ask at
//! start-up (matrix-js-sdk's `getThirdpartyProtocols`, Element's room
//! directory) get the empty answer instead of a 404.

use std::collections::BTreeMap;

use axum::Router;
use ruma::api::client::thirdparty::{get_protocol, get_protocols};

use crate::{
    http::{ApiError, RouterExt, Ruma},
    services::AppState,
};

pub fn routes(router: Router<AppState>) -> Router<AppState> {
    router.ruma(protocols).ruma(protocol)
}

async fn protocols(_: AppState, _: Ruma<get_protocols::v3::Request>) -> Result<get_protocols::v3::Response, ApiError> {
    Ok(get_protocols::v3::Response::new(BTreeMap::new()))
}

async fn protocol(_: AppState, req: Ruma<get_protocol::v3::Request>) -> Result<get_protocol::v3::Response, ApiError> {
    Err(ApiError::not_found(format!("unknown protocol {}", req.body.protocol)))
}
