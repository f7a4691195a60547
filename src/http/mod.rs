//! The HTTP edge: the axum router, the `Ruma<T>` extractor, Matrix error
//! responses, rate limits, CORS and request tracing. Knows nothing of SQL;
//! turns requests into domain calls and domain errors into Matrix errors.

mod error;
pub mod rate_limit;
mod ruma;

use std::time::Duration;

use axum::{Router, extract::Request, response::IntoResponse};
use http::{HeaderName, Method, StatusCode, header};
use tower::Layer;
use tower_http::{
    cors::{Any, CorsLayer},
    normalize_path::{NormalizePath, NormalizePathLayer},
    request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer},
    trace::TraceLayer,
};

pub use self::{
    error::ApiError,
    ruma::{RouterExt, Ruma, RumaResponse, extract_access_token, method_filter, read_body, request_error},
};
use crate::AppState;

static REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The whole HTTP application: every API, with its cross-cutting layers.
/// Trailing slashes are trimmed before routing, as Synapse tolerates them.
pub fn app(state: AppState) -> NormalizePath<Router> {
    let mut router = crate::client::routes(Router::new());
    if state.config.federation.serve_on_client_listener {
        router = crate::federation::server::routes(router);
    }
    layered(router, state)
}

/// The federation listener's application: the server-server and key APIs.
pub fn federation_app(state: AppState) -> NormalizePath<Router> {
    layered(crate::federation::server::routes(Router::new()), state)
}

fn layered(router: Router<AppState>, state: AppState) -> NormalizePath<Router> {
    let router = router
        .fallback(unknown_endpoint)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
        .layer(cors())
        .layer(TraceLayer::new_for_http().make_span_with(|req: &Request| {
            let id = req.headers().get(&REQUEST_ID).and_then(|v| v.to_str().ok()).unwrap_or("-");
            tracing::info_span!("request", method = %req.method(), path = %req.uri().path(), id = %id)
        }))
        .layer(PropagateRequestIdLayer::new(REQUEST_ID.clone()))
        .layer(SetRequestIdLayer::new(REQUEST_ID.clone(), MakeRequestUuid));
    NormalizePathLayer::trim_trailing_slash().layer(router)
}

/// Spec: "Web Browser Clients" — servers must answer CORS preflights.
fn cors() -> CorsLayer {
    CorsLayer::new()
        .allow_origin(Any)
        .allow_methods([Method::GET, Method::POST, Method::PUT, Method::DELETE, Method::OPTIONS])
        .allow_headers([
            header::ORIGIN,
            HeaderName::from_static("x-requested-with"),
            header::CONTENT_TYPE,
            header::ACCEPT,
            header::AUTHORIZATION,
        ])
        .max_age(Duration::from_secs(86400))
}

async fn unknown_endpoint() -> impl IntoResponse {
    ApiError::unrecognized(StatusCode::NOT_FOUND, "unrecognized request")
}

async fn method_not_allowed() -> impl IntoResponse {
    ApiError::unrecognized(StatusCode::METHOD_NOT_ALLOWED, "method not allowed on this endpoint")
}
