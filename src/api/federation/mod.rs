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
use bytes::Bytes;
use http::StatusCode;
use ruma::{
    OwnedServerName, RoomId, ServerName,
    api::{
        IncomingRequest, Metadata,
        auth_scheme::{AuthScheme, NoAuthentication},
        error::ErrorKind,
        federation::{
            authentication::{ServerSignatures, XMatrix, XMatrixParseError},
            openid::get_openid_userinfo,
        },
        path_builder::PathBuilder,
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
            FedError::Remote { status, kind, message } => remote_to_client(status, kind, message),
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

/// What the local client is told of another server's error. The errors
/// that are about the request itself (the room is not there, the user may
/// not join, the room's version is one this server cannot follow) reach
/// the client as the remote server gave them, as Synapse passes them on;
/// anything else is the other server's failure, a 502.
fn remote_to_client(status: StatusCode, kind: ErrorKind, message: String) -> ApiError {
    let passed_on = matches!(
        kind,
        ErrorKind::Forbidden
            | ErrorKind::NotFound
            | ErrorKind::IncompatibleRoomVersion(_)
            | ErrorKind::UnsupportedRoomVersion
    );
    if passed_on && status.is_client_error() {
        return ApiError::new(status, kind, message);
    }
    ApiError::new(StatusCode::BAD_GATEWAY, ErrorKind::Unknown, format!("{status} {}: {message}", kind.errcode()))
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

/// A federation request that passed the checks every endpoint shares, not
/// yet parsed into its endpoint's type.
struct Checked {
    /// The signing server, for endpoints that need a signature.
    origin: Option<OwnedServerName>,
    /// The path parameters, named, in the order of the path.
    params: Vec<(String, String)>,
    request: http::Request<Bytes>,
}

/// The checks before any endpoint sees a request (server-server API,
/// "Request Authentication", "Server ACLs"), in this order: the body is
/// JSON (400 `M_NOT_JSON`) and an object (400 `M_BAD_JSON`); when `signed`,
/// the X-Matrix header parses (400 `M_UNAUTHORIZED` otherwise, as Synapse
/// answers) and its signature verifies with the origin's keys (401
/// `M_UNAUTHORIZED`); and for a request about a room, the room's server
/// ACL allows the origin (403 `M_FORBIDDEN`), before the endpoint parses
/// or acts on the body.
async fn check_request(req: Request, state: &AppState, signed: bool) -> Result<Checked, ApiError> {
    let (mut parts, body) = req.into_parts();
    let params: Vec<(String, String)> = match Path::<Vec<(String, String)>>::from_request_parts(&mut parts, state).await
    {
        Ok(Path(params)) => params,
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
        if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
            return Err(ApiError::bad_json("the body must be a JSON object"));
        }
    }
    let request = http::Request::from_parts(parts, body);
    if !signed {
        return Ok(Checked { origin: None, params, request });
    }
    // Authorization of another scheme is no X-Matrix authorization.
    const SCHEME: &[u8] = b"X-Matrix ";
    let header = request
        .headers()
        .get(http::header::AUTHORIZATION)
        .filter(|h| h.as_bytes().get(..SCHEME.len()).is_some_and(|s| s.eq_ignore_ascii_case(SCHEME)))
        .ok_or_else(|| unauthorized("missing X-Matrix authorization"))?;
    let xmatrix = match XMatrix::try_from(header) {
        Ok(xmatrix) => xmatrix,
        Err(XMatrixParseError::NotFound) => return Err(unauthorized("missing X-Matrix authorization")),
        Err(e) => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                ErrorKind::Unauthorized,
                format!("malformed X-Matrix authorization: {e}"),
            ));
        }
    };
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
    // Spec: server-server API, "Server ACLs": a denied server is refused by
    // every endpoint about a room (`/send` checks each PDU's room instead).
    if let Some((_, room)) = params.iter().find(|(name, _)| name == "room_id")
        && let Ok(room_id) = <&RoomId>::try_from(room.as_str())
    {
        state.rooms.require_server_allowed(room_id, &xmatrix.origin).await?;
    }
    Ok(Checked { origin: Some(xmatrix.origin), params, request })
}

impl<T> FromRequest<AppState> for Fed<T>
where
    T: IncomingRequest + Send,
    T::Authentication: FedAuth,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let checked = check_request(req, state, <T::Authentication as FedAuth>::SIGNED).await?;
        let path_args: Vec<String> = checked.params.into_iter().map(|(_, value)| value).collect();
        let body = T::try_from_http_request(checked.request, &path_args).map_err(crate::http::request_error)?;
        Ok(Self { body, origin: checked.origin })
    }
}

/// A signed federation request whose body ruma has no type for (the v1
/// `/invite`, whose body is the bare event): its origin, path parameters
/// and JSON body.
pub struct FedRaw {
    pub origin: OwnedServerName,
    params: Vec<(String, String)>,
    pub body: Bytes,
}

impl FedRaw {
    /// The path parameter `name`, parsed.
    pub(super) fn param<P: TryFrom<String>>(&self, name: &str) -> Result<P, ApiError> {
        let value = self.params.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone()).unwrap_or_default();
        P::try_from(value).map_err(|_| ApiError::invalid_param(format!("invalid path parameter {name}")))
    }
}

impl FromRequest<AppState> for FedRaw {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let checked = check_request(req, state, true).await?;
        let origin = checked.origin.expect("a signed request has an origin");
        Ok(Self { origin, params: checked.params, body: checked.request.into_body() })
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
    let userinfo_paths = <get_openid_userinfo::v1::Request as Metadata>::PATH_BUILDER.all_paths();
    let router = userinfo_paths.fold(router, |r, path| r.route(path, axum::routing::get(endpoints::openid_userinfo)));
    let router = media::routes(router);
    let router =
        router.route("/_matrix/key/v2/query/{server_name}/{key_id}", axum::routing::get(endpoints::notary_get_key));
    // The legacy `/_matrix/key/v2/server/{keyId}` answers like the plain path.
    router.route(
        "/_matrix/key/v2/server/{key_id}",
        axum::routing::get(
            |State(state): State<AppState>| async move { axum::Json(state.federation.own_key_document()) },
        ),
    )
}
