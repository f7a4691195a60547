//! MatrixRTC transport discovery (MSC4143, `GET /rtc/transports`): the
//! transports, such as a LiveKit SFU's JWT service, that this server offers
//! for group calls, at the unstable path (`rtc_transports`) and the stable
//! one (`transports`).

use axum::{Json, Router, extract::State, routing::get};
use http::StatusCode;
use ruma::api::client::rtc::transports;
use serde_json::json;

use crate::{
    http::{ApiError, RouterExt, Ruma},
    services::AppState,
};

/// MSC4143's stable path, which ruma 0.16 does not know (nor can its
/// endpoint macros be used outside ruma). The request is the unstable
/// one's, empty; only the response names its list `transports`.
const STABLE_PATH: &str = "/_matrix/client/v1/rtc/transports";

pub fn routes(router: Router<AppState>) -> Router<AppState> {
    router.ruma(transports_unstable).route(STABLE_PATH, get(transports_stable))
}

/// With no transport configured the server does not offer MSC4143 (nor
/// list it in `/versions`), and answers as for an unknown endpoint:
/// matrix-js-sdk takes a 404 as "not supported" and asks again a day later.
fn none_offered() -> ApiError {
    ApiError::unrecognized(StatusCode::NOT_FOUND, "this server offers no MatrixRTC transports")
}

async fn transports_unstable(
    state: AppState,
    _: Ruma<transports::v1::Request>,
) -> Result<transports::v1::Response, ApiError> {
    let offered = state.calls.rtc_transports().ok_or_else(none_offered)?;
    Ok(transports::v1::Response::new(offered.to_vec()))
}

async fn transports_stable(
    State(state): State<AppState>,
    _: Ruma<transports::v1::Request>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let offered = state.calls.rtc_transports().ok_or_else(none_offered)?;
    Ok(Json(json!({ "transports": offered })))
}
