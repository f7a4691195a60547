//! The bridge between axum and ruma: `Ruma<T>` authenticates a request and
//! parses it into any ruma request type; `RouterExt::ruma` mounts a handler
//! on every path ruma knows for its endpoint; `RumaResponse` serialises a
//! ruma response.

use std::{future::Future, net::SocketAddr};

use axum::{
    Router,
    body::Body,
    extract::{ConnectInfo, FromRequest, FromRequestParts, Path, Request, State},
    response::{IntoResponse, Response},
    routing::{MethodFilter, on},
};
use bytes::Bytes;
use http::{Method, StatusCode};
use ruma::api::{
    IncomingRequest, OutgoingResponse,
    auth_scheme::{
        AccessToken, AccessTokenOptional, AppserviceToken, AppserviceTokenOptional, NoAccessToken, NoAuthentication,
    },
    error::{DeserializationError, FromHttpRequestError},
    path_builder::PathBuilder,
};

use super::{error::ApiError, guest::guest_may_use};
use crate::{
    appservice::AppserviceError,
    services::AppState,
    users::{Session, UsersError},
};

/// Whether an endpoint needs an access token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenRequirement {
    Required,
    Optional,
    None,
}

/// Maps ruma's authentication scheme types to what the extractor does.
pub trait ClientAuth {
    const TOKEN: TokenRequirement;
}

impl ClientAuth for AccessToken {
    const TOKEN: TokenRequirement = TokenRequirement::Required;
}
impl ClientAuth for AccessTokenOptional {
    const TOKEN: TokenRequirement = TokenRequirement::Optional;
}
impl ClientAuth for AppserviceToken {
    const TOKEN: TokenRequirement = TokenRequirement::Required;
}
impl ClientAuth for AppserviceTokenOptional {
    const TOKEN: TokenRequirement = TokenRequirement::Optional;
}
impl ClientAuth for NoAuthentication {
    const TOKEN: TokenRequirement = TokenRequirement::None;
}
impl ClientAuth for NoAccessToken {
    const TOKEN: TokenRequirement = TokenRequirement::None;
}

/// A parsed, authenticated client request.
pub struct Ruma<T> {
    pub body: T,
    /// The caller, when the request carried a valid access token.
    pub session: Option<Session>,
    pub client_addr: Option<SocketAddr>,
}

impl<T> Ruma<T> {
    /// The caller of an endpoint that requires authentication.
    pub fn session(&self) -> &Session {
        self.session.as_ref().expect("the extractor authenticated this endpoint")
    }

    pub fn client_ip(&self) -> std::net::IpAddr {
        self.client_addr.map(|a| a.ip()).unwrap_or(std::net::Ipv4Addr::UNSPECIFIED.into())
    }
}

/// The access token from `Authorization: Bearer` or the `access_token`
/// query parameter (deprecated in the spec, still used by clients).
pub fn extract_access_token(parts: &http::request::Parts) -> Result<Option<String>, ApiError> {
    if let Some(value) = parts.headers.get(http::header::AUTHORIZATION) {
        let value = value.to_str().map_err(|_| ApiError::unknown_token(false))?;
        let token = value
            .strip_prefix("Bearer ")
            .or_else(|| value.strip_prefix("bearer "))
            .ok_or_else(|| ApiError::unknown_token(false))?;
        return Ok(Some(token.trim().to_owned()));
    }
    let query = parts.uri.query().unwrap_or("");
    Ok(form_urlencoded_value(query, "access_token"))
}

/// The session an access token opens: a device's, or an application
/// service's acting as its sender or, with `?user_id=`, as a user of its
/// namespaces (application service API, "Identity assertion"), on the
/// device `org.matrix.msc3202.device_id` names (MSC3202) if any.
pub async fn authenticate(state: &AppState, parts: &http::request::Parts, token: &str) -> Result<Session, ApiError> {
    let Some(appservice) = state.appservice.by_as_token(token) else {
        return Ok(state.users.authenticate_token(token).await?);
    };
    let query = parts.uri.query().unwrap_or("");
    let user_id = match form_urlencoded_value(query, "user_id") {
        Some(user) => ruma::OwnedUserId::try_from(user)
            .map_err(|_| ApiError::invalid_param("`user_id` is not a valid user id"))?,
        None => appservice.sender.clone(),
    };
    if !appservice.is_user_in_namespace(&user_id) || user_id.server_name() != state.config.server.server_name {
        return Err(AppserviceError::NotInNamespace(user_id.to_string()).into());
    }
    // `/register` creates the user the appservice asserts; everywhere
    // else the user must exist.
    if !parts.uri.path().ends_with("/register") && !state.users.exists(&user_id).await? {
        return Err(AppserviceError::NotRegistered(user_id.to_string()).into());
    }
    let device_id = match form_urlencoded_value(query, "org.matrix.msc3202.device_id") {
        Some(device) => {
            let device = ruma::OwnedDeviceId::from(device);
            state.users.get_device(&user_id, &device).await.map_err(|_| {
                ApiError::forbidden(format!("{user_id} has no device {device} the application service may use"))
            })?;
            device
        }
        // Requests of an appservice without a device share one per user,
        // which scopes their transaction ids.
        None => ruma::OwnedDeviceId::from(APPSERVICE_DEVICE),
    };
    Ok(Session {
        user_id,
        device_id,
        is_admin: false,
        is_guest: false,
        appservice_id: Some(appservice.id().to_owned()),
    })
}

/// The caller of an endpoint mounted by hand (not through `RouterExt`),
/// which needs an access token: authenticated as `Ruma<T>` does it, and
/// refused to a guest unless guests may use the path.
pub async fn require_session(state: &AppState, parts: &http::request::Parts) -> Result<Session, ApiError> {
    let token = extract_access_token(parts)?.ok_or_else(ApiError::missing_token)?;
    let session = authenticate(state, parts, &token).await?;
    if session.is_guest && !guest_may_use(&parts.method, parts.uri.path()) {
        return Err(UsersError::GuestAccessForbidden.into());
    }
    Ok(session)
}

/// The device id of an appservice's requests that name none.
pub const APPSERVICE_DEVICE: &str = "APPSERVICE";

fn form_urlencoded_value(query: &str, key: &str) -> Option<String> {
    form_urlencoded::parse(query.as_bytes()).find(|(k, _)| k == key).map(|(_, v)| v.into_owned())
}

impl<T> FromRequest<AppState> for Ruma<T>
where
    T: IncomingRequest + Send,
    T::Authentication: ClientAuth,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let (mut parts, body) = req.into_parts();
        let path_args: Vec<String> = match Path::<Vec<String>>::from_request_parts(&mut parts, state).await {
            Ok(Path(args)) => args,
            Err(e) => return Err(ApiError::invalid_param(format!("bad path parameter: {e}"))),
        };
        Self::from_parts_with_path(parts, body, state, path_args).await
    }
}

impl<T> Ruma<T>
where
    T: IncomingRequest + Send,
    T::Authentication: ClientAuth,
{
    /// Parses a request as `T` with the given path parameters, for a route
    /// that is not `T`'s own but stands for it (Synapse's `POST
    /// /rooms/{roomId}/send/{eventType}` without a transaction id).
    pub async fn from_parts_with_path(
        parts: http::request::Parts,
        body: Body,
        state: &AppState,
        path_args: Vec<String>,
    ) -> Result<Self, ApiError> {
        let client_addr = parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0);

        let token = extract_access_token(&parts)?;
        let session = match (<T::Authentication as ClientAuth>::TOKEN, token) {
            (TokenRequirement::Required, None) => return Err(ApiError::missing_token()),
            (TokenRequirement::None, _) | (TokenRequirement::Optional, None) => None,
            (_, Some(token)) => Some(authenticate(state, &parts, &token).await?),
        };
        // An endpoint anyone may call without a token (`/versions`, which
        // clients call with theirs) is open to guests too.
        if session.as_ref().is_some_and(|s| s.is_guest)
            && <T::Authentication as ClientAuth>::TOKEN == TokenRequirement::Required
            && !T::PATH_BUILDER.all_paths().any(|path| guest_may_use(&T::METHOD, path))
        {
            return Err(UsersError::GuestAccessForbidden.into());
        }

        let mut body = read_body(body, &parts, state.config.server.max_request_bytes).await?;
        // Clients send no body where every field is optional (matrix-nio's
        // join, for one); treat that as `{}` for every JSON endpoint, as
        // Synapse does, since some of ruma's hand-written parsers do not.
        let json_body = parts
            .headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_none_or(|ct| ct.starts_with("application/json"));
        if body.is_empty() && json_body && !matches!(parts.method, Method::GET | Method::HEAD | Method::DELETE) {
            body = Bytes::from_static(b"{}");
        }
        if !body.is_empty() && parts.method != Method::GET {
            // Spec: a body that is not valid UTF-8 is not JSON (RFC 8259
            // requires UTF-8); serde skips over the bytes of strings it
            // ignores, so this is checked first.
            std::str::from_utf8(&body).map_err(|e| ApiError::not_json(format!("the body is not valid UTF-8: {e}")))?;
            serde_json::from_slice::<serde::de::IgnoredAny>(&body)
                .map_err(|e| ApiError::not_json(format!("the body is not valid JSON: {e}")))?;
        }
        let http_request = http::Request::from_parts(parts, body);
        let parsed = T::try_from_http_request(http_request, &path_args).map_err(request_error)?;
        Ok(Self { body: parsed, session, client_addr })
    }
}

/// How much of an oversized body is read and thrown away before answering
/// 413, so that a client still sending it gets the answer rather than a
/// connection reset. Bodies declared larger than this are refused at once.
const DRAIN_LIMIT: usize = 4 * 1024 * 1024;

/// Reads the whole body, refusing more than `limit` bytes with 413.
pub async fn read_body(body: Body, parts: &http::request::Parts, limit: usize) -> Result<Bytes, ApiError> {
    use http_body_util::BodyExt;
    let too_large = || ApiError::too_large(format!("the request body exceeds {limit} bytes"));
    let declared = parts
        .headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit.saturating_add(DRAIN_LIMIT)) {
        return Err(too_large());
    }
    let mut body = body;
    let mut collected = bytes::BytesMut::new();
    let mut seen = 0usize;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| ApiError::bad_json(format!("cannot read the request body: {e}")))?;
        let Ok(data) = frame.into_data() else { continue };
        seen += data.len();
        if seen > limit.saturating_add(DRAIN_LIMIT) {
            return Err(too_large());
        }
        if seen <= limit {
            collected.extend_from_slice(&data);
        }
    }
    if seen > limit {
        return Err(too_large());
    }
    Ok(collected.freeze())
}

pub fn request_error(e: FromHttpRequestError) -> ApiError {
    match e {
        FromHttpRequestError::MethodMismatch { .. } => {
            ApiError::unrecognized(StatusCode::METHOD_NOT_ALLOWED, "method not allowed")
        }
        FromHttpRequestError::Deserialization(DeserializationError::Json(e)) => {
            ApiError::bad_json(format!("the request does not have the expected shape: {e}"))
        }
        FromHttpRequestError::Deserialization(e) => ApiError::invalid_param(format!("invalid request parameter: {e}")),
        other => ApiError::bad_json(other.to_string()),
    }
}

/// A ruma response as an axum response.
pub struct RumaResponse<T>(pub T);

impl<T: OutgoingResponse> IntoResponse for RumaResponse<T> {
    fn into_response(self) -> Response {
        match self.0.try_into_http_response::<Vec<u8>>() {
            Ok(r) => r.map(Body::from).into_response(),
            Err(e) => {
                tracing::error!(error = %e, "cannot serialize a response");
                ApiError::internal().into_response()
            }
        }
    }
}

/// A ruma response whose JSON body `adjust` changes before it is sent:
/// for what ruma's response types cannot say (a field they always write,
/// one they leave out at its default).
pub struct AdjustedResponse<T>(pub T, pub fn(&mut JsonObject));

impl<T: OutgoingResponse> IntoResponse for AdjustedResponse<T> {
    fn into_response(self) -> Response {
        let (parts, body) = match self.0.try_into_http_response::<Vec<u8>>() {
            Ok(r) => r.into_parts(),
            Err(e) => {
                tracing::error!(error = %e, "cannot serialize a response");
                return ApiError::internal().into_response();
            }
        };
        let body = match serde_json::from_slice::<JsonObject>(&body) {
            Ok(mut object) => {
                (self.1)(&mut object);
                serde_json::to_vec(&object).unwrap_or(body)
            }
            Err(_) => body,
        };
        let mut parts = parts;
        parts.headers.remove(http::header::CONTENT_LENGTH);
        http::Response::from_parts(parts, Body::from(body)).into_response()
    }
}

pub fn method_filter(method: &Method) -> MethodFilter {
    match *method {
        Method::GET => MethodFilter::GET,
        Method::POST => MethodFilter::POST,
        Method::PUT => MethodFilter::PUT,
        Method::DELETE => MethodFilter::DELETE,
        Method::PATCH => MethodFilter::PATCH,
        Method::HEAD => MethodFilter::HEAD,
        _ => MethodFilter::OPTIONS,
    }
}

/// Mounting ruma endpoints on the router.
pub trait RouterExt: Sized {
    /// Mounts `handler` on every path (stable and unstable) of its endpoint.
    fn ruma<T, F, Fut>(self, handler: F) -> Self
    where
        T: IncomingRequest + Send + 'static,
        T::Authentication: ClientAuth,
        T::OutgoingResponse: Send,
        F: Fn(AppState, Ruma<T>) -> Fut + Clone + Send + Sync + 'static,
        Fut: Future<Output = Result<T::OutgoingResponse, ApiError>> + Send + 'static;

    /// Like `ruma`, for an endpoint whose path ends with a slash: a request
    /// without it (trimmed for routing, `super::TrailingSlash`) gets
    /// `without_slash`'s error, as Synapse answers.
    fn ruma_slash_terminated<T, F, Fut>(self, handler: F, without_slash: fn() -> ApiError) -> Self
    where
        T: IncomingRequest + Send + 'static,
        T::Authentication: ClientAuth,
        T::OutgoingResponse: Send,
        F: Fn(AppState, Ruma<T>) -> Fut + Clone + Send + Sync + 'static,
        Fut: Future<Output = Result<T::OutgoingResponse, ApiError>> + Send + 'static;

    /// Like `ruma`, for a handler that writes its own HTTP response rather
    /// than ruma's (`/sync`, whose JSON keeps keys ruma leaves out when
    /// empty).
    fn ruma_responding<T, F, Fut, R>(self, handler: F) -> Self
    where
        T: IncomingRequest + Send + 'static,
        T::Authentication: ClientAuth,
        F: Fn(AppState, Ruma<T>) -> Fut + Clone + Send + Sync + 'static,
        Fut: Future<Output = Result<R, ApiError>> + Send + 'static,
        R: IntoResponse + Send + 'static;

    /// Like `ruma`, and also on each path with its last parameter left out,
    /// for endpoints whose last parameter may be empty (state keys).
    fn ruma_with_empty_last<T, F, Fut>(self, handler: F) -> Self
    where
        T: IncomingRequest + Send + 'static,
        T::Authentication: ClientAuth,
        T::OutgoingResponse: Send,
        F: Fn(AppState, Ruma<T>) -> Fut + Clone + Send + Sync + 'static,
        Fut: Future<Output = Result<T::OutgoingResponse, ApiError>> + Send + 'static;

    /// Like `ruma` (`ruma_with_empty_last` with `empty_last`), except that
    /// a request whose query has `param` goes to `variant`, with the
    /// parameter's value: a second endpoint on the same paths, told apart by
    /// a query parameter (MSC4140's delayed sends, `org.matrix.msc4140.delay`).
    /// The request is parsed as `T` either way.
    fn ruma_with_query_variant<T, F, Fut, G, GFut, V>(
        self,
        handler: F,
        param: &'static str,
        variant: G,
        empty_last: bool,
    ) -> Self
    where
        T: IncomingRequest + Send + 'static,
        T::Authentication: ClientAuth,
        T::OutgoingResponse: Send,
        F: Fn(AppState, Ruma<T>) -> Fut + Clone + Send + Sync + 'static,
        Fut: Future<Output = Result<T::OutgoingResponse, ApiError>> + Send + 'static,
        G: Fn(AppState, Ruma<T>, String) -> GFut + Clone + Send + Sync + 'static,
        GFut: Future<Output = Result<V, ApiError>> + Send + 'static,
        V: OutgoingResponse + Send;

    /// Like `ruma`, and the handler also gets the request's JSON body
    /// object as the client sent it, after `prepare`, which runs before
    /// ruma parses the body: for endpoints where a client's body carries
    /// more than ruma's request type keeps (a join's extra member event
    /// fields), or lacks what ruma requires but Synapse defaults (a typing
    /// notice's `timeout`). A body that is not a JSON object is left to
    /// `Ruma` to refuse, and the handler gets an empty object.
    fn ruma_with_body<T, F, Fut>(self, prepare: fn(&mut JsonObject), handler: F) -> Self
    where
        T: IncomingRequest + Send + 'static,
        T::Authentication: ClientAuth,
        T::OutgoingResponse: Send,
        F: Fn(AppState, Ruma<T>, JsonObject) -> Fut + Clone + Send + Sync + 'static,
        Fut: Future<Output = Result<T::OutgoingResponse, ApiError>> + Send + 'static;

    /// Like `ruma`, with the response's JSON body changed by `adjust`
    /// (`AdjustedResponse`).
    fn ruma_adjusting_response<T, F, Fut>(self, handler: F, adjust: fn(&mut JsonObject)) -> Self
    where
        T: IncomingRequest + Send + 'static,
        T::Authentication: ClientAuth,
        T::OutgoingResponse: Send,
        F: Fn(AppState, Ruma<T>) -> Fut + Clone + Send + Sync + 'static,
        Fut: Future<Output = Result<T::OutgoingResponse, ApiError>> + Send + 'static;
}

/// A request body's JSON object.
pub type JsonObject = serde_json::Map<String, serde_json::Value>;

/// The paths of `T`, each also without its last parameter when
/// `empty_last`.
fn paths_of<T: IncomingRequest>(empty_last: bool) -> Vec<&'static str> {
    let paths: Vec<&'static str> = T::PATH_BUILDER.all_paths().collect();
    let shortened = paths
        .iter()
        .filter(|_| empty_last)
        .filter_map(|p| p.strip_suffix('}').and_then(|p| p.rsplit_once("/{")).map(|(head, _)| head));
    shortened.chain(paths.iter().copied()).collect()
}

impl RouterExt for Router<AppState> {
    fn ruma<T, F, Fut>(self, handler: F) -> Self
    where
        T: IncomingRequest + Send + 'static,
        T::Authentication: ClientAuth,
        T::OutgoingResponse: Send,
        F: Fn(AppState, Ruma<T>) -> Fut + Clone + Send + Sync + 'static,
        Fut: Future<Output = Result<T::OutgoingResponse, ApiError>> + Send + 'static,
    {
        mount(self, T::PATH_BUILDER.all_paths(), handler, RumaResponse, None)
    }

    fn ruma_slash_terminated<T, F, Fut>(self, handler: F, without_slash: fn() -> ApiError) -> Self
    where
        T: IncomingRequest + Send + 'static,
        T::Authentication: ClientAuth,
        T::OutgoingResponse: Send,
        F: Fn(AppState, Ruma<T>) -> Fut + Clone + Send + Sync + 'static,
        Fut: Future<Output = Result<T::OutgoingResponse, ApiError>> + Send + 'static,
    {
        mount(self, T::PATH_BUILDER.all_paths(), handler, RumaResponse, Some(without_slash))
    }

    fn ruma_responding<T, F, Fut, R>(self, handler: F) -> Self
    where
        T: IncomingRequest + Send + 'static,
        T::Authentication: ClientAuth,
        F: Fn(AppState, Ruma<T>) -> Fut + Clone + Send + Sync + 'static,
        Fut: Future<Output = Result<R, ApiError>> + Send + 'static,
        R: IntoResponse + Send + 'static,
    {
        mount(self, T::PATH_BUILDER.all_paths(), handler, std::convert::identity::<R>, None)
    }

    fn ruma_with_empty_last<T, F, Fut>(self, handler: F) -> Self
    where
        T: IncomingRequest + Send + 'static,
        T::Authentication: ClientAuth,
        T::OutgoingResponse: Send,
        F: Fn(AppState, Ruma<T>) -> Fut + Clone + Send + Sync + 'static,
        Fut: Future<Output = Result<T::OutgoingResponse, ApiError>> + Send + 'static,
    {
        mount(self, paths_of::<T>(true).into_iter(), handler, RumaResponse, None)
    }

    fn ruma_with_query_variant<T, F, Fut, G, GFut, V>(
        self,
        handler: F,
        param: &'static str,
        variant: G,
        empty_last: bool,
    ) -> Self
    where
        T: IncomingRequest + Send + 'static,
        T::Authentication: ClientAuth,
        T::OutgoingResponse: Send,
        F: Fn(AppState, Ruma<T>) -> Fut + Clone + Send + Sync + 'static,
        Fut: Future<Output = Result<T::OutgoingResponse, ApiError>> + Send + 'static,
        G: Fn(AppState, Ruma<T>, String) -> GFut + Clone + Send + Sync + 'static,
        GFut: Future<Output = Result<V, ApiError>> + Send + 'static,
        V: OutgoingResponse + Send,
    {
        let mut router = self;
        for path in paths_of::<T>(empty_last) {
            let (handler, variant) = (handler.clone(), variant.clone());
            let path = if path.len() > 1 { path.trim_end_matches('/') } else { path };
            router = router.route(
                path,
                on(method_filter(&T::METHOD), move |State(state): State<AppState>, req: Request| {
                    let (handler, variant) = (handler.clone(), variant.clone());
                    async move {
                        let value = form_urlencoded_value(req.uri().query().unwrap_or(""), param);
                        let req = Box::pin(Ruma::<T>::from_request(req, &state)).await?;
                        match value {
                            Some(value) => variant(state, req, value).await.map(|r| RumaResponse(r).into_response()),
                            None => handler(state, req).await.map(|r| RumaResponse(r).into_response()),
                        }
                    }
                }),
            );
        }
        router
    }

    fn ruma_with_body<T, F, Fut>(self, prepare: fn(&mut JsonObject), handler: F) -> Self
    where
        T: IncomingRequest + Send + 'static,
        T::Authentication: ClientAuth,
        T::OutgoingResponse: Send,
        F: Fn(AppState, Ruma<T>, JsonObject) -> Fut + Clone + Send + Sync + 'static,
        Fut: Future<Output = Result<T::OutgoingResponse, ApiError>> + Send + 'static,
    {
        let mut router = self;
        for path in T::PATH_BUILDER.all_paths() {
            let handler = handler.clone();
            let path = if path.len() > 1 { path.trim_end_matches('/') } else { path };
            router = router.route(
                path,
                on(method_filter(&T::METHOD), move |State(state): State<AppState>, req: Request| {
                    let handler = handler.clone();
                    async move {
                        let (req, body) = Box::pin(prepare_body(req, &state, prepare)).await?;
                        let req = Box::pin(Ruma::<T>::from_request(req, &state)).await?;
                        handler(state, req, body).await.map(RumaResponse)
                    }
                }),
            );
        }
        router
    }

    fn ruma_adjusting_response<T, F, Fut>(self, handler: F, adjust: fn(&mut JsonObject)) -> Self
    where
        T: IncomingRequest + Send + 'static,
        T::Authentication: ClientAuth,
        T::OutgoingResponse: Send,
        F: Fn(AppState, Ruma<T>) -> Fut + Clone + Send + Sync + 'static,
        Fut: Future<Output = Result<T::OutgoingResponse, ApiError>> + Send + 'static,
    {
        mount(self, T::PATH_BUILDER.all_paths(), handler, move |r| AdjustedResponse(r, adjust), None)
    }
}

/// Reads the body of `req`, runs `prepare` on it when it is a JSON object,
/// and gives back the request (with the prepared body) and the object.
async fn prepare_body(
    req: Request,
    state: &AppState,
    prepare: fn(&mut JsonObject),
) -> Result<(Request, JsonObject), ApiError> {
    let (mut parts, body) = req.into_parts();
    let bytes = read_body(body, &parts, state.config.server.max_request_bytes).await?;
    let object = match serde_json::from_slice::<serde_json::Value>(&bytes) {
        Ok(serde_json::Value::Object(mut object)) => {
            prepare(&mut object);
            Some(object)
        }
        _ => None,
    };
    let bytes = match &object {
        Some(object) => Bytes::from(serde_json::to_vec(object).map_err(ApiError::internal_with)?),
        None => bytes,
    };
    parts.headers.remove(http::header::CONTENT_LENGTH);
    Ok((Request::from_parts(parts, Body::from(bytes)), object.unwrap_or_default()))
}

/// Mounts `handler` on `paths`; `respond` makes what it returns an HTTP
/// response. With `without_slash`, a request whose path lacked the
/// trailing slash the endpoint's path has gets that error instead.
fn mount<T, F, Fut, O, R>(
    router: Router<AppState>,
    paths: impl Iterator<Item = &'static str>,
    handler: F,
    respond: impl Fn(O) -> R + Clone + Send + Sync + 'static,
    without_slash: Option<fn() -> ApiError>,
) -> Router<AppState>
where
    T: IncomingRequest + Send + 'static,
    T::Authentication: ClientAuth,
    F: Fn(AppState, Ruma<T>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<O, ApiError>> + Send + 'static,
    O: Send + 'static,
    R: IntoResponse + Send + 'static,
{
    let mut router = router;
    {
        for path in paths {
            let (handler, respond) = (handler.clone(), respond.clone());
            // Requests reach the router with trailing slashes trimmed
            // (`super::layered`), so a path ruma spells with one
            // (`/pushrules/`) is mounted without it.
            let path = if path.len() > 1 { path.trim_end_matches('/') } else { path };
            router = router.route(
                path,
                // Extraction is boxed and freed before the handler runs, so
                // a long wait (a held `/sync`) keeps neither the parsed
                // request nor the space its extraction took.
                on(method_filter(&T::METHOD), move |State(state): State<AppState>, req: Request| {
                    let (handler, respond) = (handler.clone(), respond.clone());
                    async move {
                        if let Some(refusal) = without_slash
                            && req.extensions().get::<super::TrailingSlash>().is_none()
                        {
                            return Err(refusal());
                        }
                        let req = Box::pin(Ruma::<T>::from_request(req, &state)).await?;
                        handler(state, req).await.map(respond)
                    }
                }),
            );
        }
        router
    }
}
