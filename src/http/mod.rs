//! The HTTP glue under every endpoint: the `Ruma<T>` extractor, Matrix
//! error responses, CORS, request ids and tracing, and the client
//! listener's accept loop. Knows nothing of SQL or of the routes (`api`
//! assembles those); turns domain errors into Matrix errors.

mod error;
mod guest;
mod ruma;
mod serve;

use std::time::Duration;

use axum::{Router, extract::Request, response::IntoResponse};
use http::{HeaderName, Method, StatusCode, header};
use tower::{ServiceBuilder, util::MapRequest};
use tower_http::{
    classify::{ServerErrorsAsFailures, SharedClassifier},
    cors::{Any, Cors, CorsLayer},
    normalize_path::{NormalizePath, NormalizePathLayer},
    request_id::{MakeRequestUuid, PropagateRequestId, PropagateRequestIdLayer, SetRequestId, SetRequestIdLayer},
    trace::{Trace, TraceLayer},
};
use tracing::Span;

pub use self::{
    error::ApiError,
    ruma::{
        APPSERVICE_DEVICE, JsonObject, RouterExt, Ruma, RumaResponse, extract_access_token, method_filter, read_body,
        request_error, require_session,
    },
    serve::serve,
};
use crate::services::AppState;

static REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The application every listener serves: the router inside the
/// cross-cutting layers.
///
/// The layers wrap the router as a whole, not each route (`Router::layer`
/// would box a future per layer per request): a held `/sync` keeps its
/// request's future for minutes, and this one is a single allocation.
pub type App = MapRequest<
    NormalizePath<
        SetRequestId<
            PropagateRequestId<Trace<Cors<Router>, SharedClassifier<ServerErrorsAsFailures>, fn(&Request) -> Span>>,
            MakeRequestUuid,
        >,
    >,
    fn(Request) -> Request,
>;

/// Set on a request whose path ended with a slash before it was trimmed
/// for routing: the few endpoints whose spec path ends with one (`GET
/// /pushrules/`, `/pushrules/global/`) answer as Synapse does when it is
/// missing, and `GET /pushrules/global/{kind}/` lists a kind.
#[derive(Clone, Copy, Debug)]
pub struct TrailingSlash;

fn mark_trailing_slash(mut req: Request) -> Request {
    let path = req.uri().path();
    if path.len() > 1 && path.ends_with('/') {
        req.extensions_mut().insert(TrailingSlash);
    }
    req
}

/// Wraps a router in the cross-cutting layers every listener serves it
/// with. Trailing slashes are trimmed before routing, as Synapse tolerates
/// them; unknown paths and methods get Matrix errors.
pub fn layered(router: Router<AppState>, state: AppState) -> App {
    let router = router.fallback(unknown_endpoint).method_not_allowed_fallback(method_not_allowed).with_state(state);
    ServiceBuilder::new()
        .map_request(mark_trailing_slash as fn(Request) -> Request)
        .layer(NormalizePathLayer::trim_trailing_slash())
        .layer(SetRequestIdLayer::new(REQUEST_ID.clone(), MakeRequestUuid))
        .layer(PropagateRequestIdLayer::new(REQUEST_ID.clone()))
        .layer(TraceLayer::new_for_http().make_span_with(request_span as fn(&Request) -> Span))
        .layer(cors())
        .service(router)
}

fn request_span(req: &Request) -> Span {
    let id = req.headers().get(&REQUEST_ID).and_then(|v| v.to_str().ok()).unwrap_or("-");
    tracing::info_span!("request", method = %req.method(), path = %req.uri().path(), id = %id)
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
