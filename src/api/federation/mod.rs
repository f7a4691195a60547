//! The server-server API's endpoints. `Fed<T>` checks the X-Matrix
//! signature of a request (fetching the origin's keys as needed) and parses
//! it into a ruma request type; `endpoints` answers key, version,
//! transaction, room-history, query and device requests of other servers,
//! `resident` the membership handshakes, `edus` applies the EDUs of a
//! transaction, `media` serves this server's media to other servers.

mod edus;
mod endpoints;
mod media;
mod resident;

use std::collections::BTreeMap;

use axum::{
    Router,
    extract::{FromRequest, FromRequestParts, Path, Request, State},
    routing::on,
};
use http::StatusCode;
use ruma::{
    OwnedServerName, ServerName,
    api::{
        IncomingRequest,
        auth_scheme::{AuthScheme, NoAuthentication},
        error::ErrorKind,
        federation::authentication::{ServerSignatures, XMatrix},
    },
    signatures::PublicKeyMap,
};

use crate::federation::FedError;
use crate::{
    http::{ApiError, RumaResponse},
    services::AppState,
};

impl From<FedError> for ApiError {
    fn from(e: FedError) -> Self {
        match e {
            FedError::Disabled => ApiError::forbidden(e.to_string()),
            FedError::Unreachable(m) => ApiError::new(StatusCode::BAD_GATEWAY, ErrorKind::Unknown, m),
            FedError::Remote { status, errcode, message } => match errcode.as_str() {
                "M_FORBIDDEN" => ApiError::forbidden(message),
                "M_NOT_FOUND" => ApiError::not_found(message),
                _ => ApiError::new(StatusCode::BAD_GATEWAY, ErrorKind::Unknown, format!("{status}: {message}")),
            },
            FedError::BadResponse(m) | FedError::ResponseTooLarge(m) => {
                ApiError::new(StatusCode::BAD_GATEWAY, ErrorKind::Unknown, m)
            }
            FedError::BadRequest(m) => ApiError::bad_json(m),
            FedError::Unauthorized(m) => ApiError::new(StatusCode::UNAUTHORIZED, ErrorKind::Unauthorized, m),
            FedError::Forbidden(m) => ApiError::forbidden(m),
            FedError::NotFound(m) => ApiError::not_found(m),
            FedError::Internal(m) => {
                tracing::error!(error = %m, "federation internal error");
                ApiError::internal()
            }
            FedError::Storage(e) => {
                tracing::error!(error = %e, "federation storage error");
                ApiError::internal()
            }
            FedError::Rooms(e) => e.into(),
            FedError::E2ee(e) => e.into(),
        }
    }
}

/// Whether an endpoint needs a signed request.
pub trait FedAuth: AuthScheme {
    const SIGNED: bool;
}
impl FedAuth for ServerSignatures {
    const SIGNED: bool = true;
}
impl FedAuth for NoAuthentication {
    const SIGNED: bool = false;
}

/// A parsed federation request; `origin` is set for signed endpoints.
pub struct Fed<T> {
    pub body: T,
    pub origin: Option<OwnedServerName>,
}

impl<T> Fed<T> {
    pub(super) fn origin(&self) -> &ServerName {
        self.origin.as_deref().expect("the extractor checked the signature")
    }
}

fn unauthorized(message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, ErrorKind::Unauthorized, message)
}

impl<T> FromRequest<AppState> for Fed<T>
where
    T: IncomingRequest + Send,
    T::Authentication: FedAuth,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let (mut parts, body) = req.into_parts();
        let path_args: Vec<String> = match Path::<Vec<String>>::from_request_parts(&mut parts, state).await {
            Ok(Path(args)) => args,
            Err(e) => return Err(ApiError::invalid_param(format!("bad path parameter: {e}"))),
        };
        let fed = &state.federation;
        if !fed.enabled() {
            return Err(ApiError::unrecognized(StatusCode::NOT_FOUND, "this server does not federate"));
        }
        let body = crate::http::read_body(body, &parts, state.config.server.max_request_bytes.max(1 << 20)).await?;
        if !body.is_empty() {
            serde_json::from_slice::<serde::de::IgnoredAny>(&body)
                .map_err(|e| ApiError::not_json(format!("the body is not valid JSON: {e}")))?;
        }
        let request = http::Request::from_parts(parts, body);
        let origin = if <T::Authentication as FedAuth>::SIGNED {
            let header = request
                .headers()
                .get(http::header::AUTHORIZATION)
                .ok_or_else(|| unauthorized("missing X-Matrix authorization"))?;
            let xmatrix = XMatrix::try_from(header).map_err(|e| unauthorized(format!("bad X-Matrix header: {e}")))?;
            if fed.is_denied(&xmatrix.origin) {
                return Err(ApiError::forbidden("this server does not federate with yours"));
            }
            let keys = fed
                .server_keys(&xmatrix.origin, &[xmatrix.key.to_string()], None)
                .await
                .map_err(|e| unauthorized(format!("cannot get the origin's key: {e}")))?;
            let map: PublicKeyMap = BTreeMap::from([(xmatrix.origin.to_string(), keys)]);
            xmatrix
                .verify_request(&request, fed.server_name(), &map)
                .map_err(|e| unauthorized(format!("the request signature does not verify: {e}")))?;
            Some(xmatrix.origin)
        } else {
            None
        };
        let body = T::try_from_http_request(request, &path_args).map_err(crate::http::request_error)?;
        Ok(Self { body, origin })
    }
}

pub(super) fn mount<T, F, Fut>(router: Router<AppState>, handler: F) -> Router<AppState>
where
    T: IncomingRequest + Send + 'static,
    T::Authentication: FedAuth,
    T::OutgoingResponse: Send,
    F: Fn(AppState, Fed<T>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<T::OutgoingResponse, ApiError>> + Send + 'static,
{
    let mut router = router;
    for path in ruma::api::path_builder::PathBuilder::all_paths(&T::PATH_BUILDER) {
        let handler = handler.clone();
        router = router.route(
            path,
            on(crate::http::method_filter(&T::METHOD), move |State(state): State<AppState>, req: Fed<T>| async move {
                handler(state, req).await.map(RumaResponse)
            }),
        );
    }
    router
}

/// The federation and key endpoints.
pub fn routes(router: Router<AppState>) -> Router<AppState> {
    let router = mount(router, endpoints::own_keys);
    let router = mount(router, endpoints::notary_get);
    let router = mount(router, endpoints::notary_post);
    let router = mount(router, endpoints::version);
    let router = mount(router, endpoints::send_transaction);
    let router = resident::routes(router);
    let router = mount(router, endpoints::event);
    let router = mount(router, endpoints::state_ids);
    let router = mount(router, endpoints::room_state);
    let router = mount(router, endpoints::event_auth);
    let router = mount(router, endpoints::missing_events);
    let router = mount(router, endpoints::backfill);
    let router = mount(router, endpoints::query_directory);
    let router = mount(router, endpoints::query_profile);
    let router = mount(router, endpoints::public_rooms);
    let router = mount(router, endpoints::public_rooms_filtered);
    let router = mount(router, endpoints::hierarchy);
    let router = mount(router, endpoints::user_keys_query);
    let router = mount(router, endpoints::user_keys_claim);
    let router = mount(router, endpoints::user_devices);
    let router = mount(router, endpoints::openid_userinfo);
    let router = media::routes(router);
    // The legacy `/_matrix/key/v2/server/{keyId}` answers like the plain path.
    router.route(
        "/_matrix/key/v2/server/{key_id}",
        axum::routing::get(
            |State(state): State<AppState>| async move { axum::Json(state.federation.own_key_document()) },
        ),
    )
}
