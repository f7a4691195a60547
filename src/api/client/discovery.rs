//! Server discovery and capabilities (client-server API, "Server
//! Discovery", "API Standards: GET /versions", "Capabilities negotiation").

use std::collections::BTreeMap;

use axum::{Json, Router, extract::State, routing::get};
use ruma::api::client::discovery::{
    discover_homeserver::{self, HomeserverInfo},
    get_capabilities::{self, v3::Capabilities},
    get_supported_versions,
};
use serde_json::{Value, json};

use crate::{
    http::{ApiError, JsonObject, RouterExt, Ruma},
    rooms,
    services::AppState,
};

/// The spec versions whose client-server API this server implements.
const SPEC_VERSIONS: &[&str] =
    &["r0.6.1", "v1.1", "v1.2", "v1.3", "v1.4", "v1.5", "v1.6", "v1.7", "v1.8", "v1.9", "v1.10", "v1.11", "v1.12"];

pub fn routes(router: axum::Router<AppState>) -> axum::Router<AppState> {
    router
        .ruma(versions)
        .ruma(well_known_client)
        .ruma_adjusting_response(capabilities, spell_out_change_password)
        .merge(Router::new().route("/.well-known/matrix/server", get(well_known_server)))
}

async fn versions(
    state: AppState,
    _: Ruma<get_supported_versions::Request>,
) -> Result<get_supported_versions::Response, ApiError> {
    let mut response = get_supported_versions::Response::new(SPEC_VERSIONS.iter().map(|v| (*v).to_owned()).collect());
    response.unstable_features = BTreeMap::from([
        ("org.matrix.msc2918.refresh_token".to_owned(), true),
        ("io.plexus.websocket".to_owned(), true),
        ("org.matrix.msc2108".to_owned(), true),
        // Simplified sliding sync (MSC4186), which Element X requires.
        ("org.matrix.simplified_msc3575".to_owned(), true),
        // Appservice pings (MSC2659, in spec v1.7).
        ("fi.mau.msc2659".to_owned(), true),
        ("fi.mau.msc2659.stable".to_owned(), true),
        // Appservices create and delete their users' devices (MSC4190).
        ("io.element.msc4190".to_owned(), true),
        // Cross-signing (MSC1756, in spec v1.1); older clients look for it.
        ("org.matrix.e2e_cross_signing".to_owned(), true),
    ]);
    // Delayed events, which Element Call needs to leave a call it dropped.
    if state.delayed.enabled() {
        response.unstable_features.insert("org.matrix.msc4140".to_owned(), true);
    }
    // MatrixRTC transport discovery, only when there is something to discover.
    if state.calls.rtc_transports().is_some() {
        response.unstable_features.insert("org.matrix.msc4143".to_owned(), true);
    }
    Ok(response)
}

async fn well_known_client(
    state: AppState,
    _: Ruma<discover_homeserver::Request>,
) -> Result<discover_homeserver::Response, ApiError> {
    Ok(discover_homeserver::Response::new(HomeserverInfo::new(state.config.public_base_url())))
}

/// `/.well-known/matrix/server`: where other servers reach our federation
/// API. Until a separate federation listener exists this is the client
/// listener's address, which serves both.
async fn well_known_server(State(state): State<AppState>) -> Json<serde_json::Value> {
    Json(json!({ "m.server": state.config.server.server_name.as_str() }))
}

/// ruma leaves `m.change_password` out while it has the spec's default
/// (`enabled: true`); Synapse always lists it, and clients and test suites
/// look for it.
fn spell_out_change_password(body: &mut JsonObject) {
    if let Some(Value::Object(capabilities)) = body.get_mut("capabilities") {
        capabilities.entry("m.change_password").or_insert_with(|| json!({"enabled": true}));
    }
}

async fn capabilities(
    state: AppState,
    _: Ruma<get_capabilities::v3::Request>,
) -> Result<get_capabilities::v3::Response, ApiError> {
    let mut capabilities = Capabilities::new();
    capabilities.room_versions = rooms::versions::capability(&state.config.rooms.default_room_version);
    capabilities.change_password.enabled = true;
    capabilities.thirdparty_id_changes.enabled = false;
    capabilities.get_login_token.enabled = false;
    Ok(get_capabilities::v3::Response::new(capabilities))
}
