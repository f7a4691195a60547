//! The server-server API: signing keys and the key cache (`keys`), server
//! discovery (`resolve`), signed outbound requests (`Federation::request`),
//! the persistent outbound queue (`sender`), verification of what other
//! servers send (`inbound`), joins over federation (`membership`) and the
//! federation endpoints (`server`). Nothing a remote server sends reaches
//! the room server before its signatures and hashes are checked.

mod client_membership;
mod device_lists;
mod directory;
mod e2ee;
mod edus;
mod hierarchy;
mod inbound;
pub mod keys;
pub mod listener;
mod media;
mod membership;
pub mod resolve;
pub mod sender;
pub mod tls;
mod v1;

pub use self::{e2ee::ClaimedKeys, inbound::room_of, membership::stripped_events};

use std::{fmt::Debug, sync::Arc};

use bytes::Bytes;
use http::StatusCode;
use ruma::{
    OwnedServerName, ServerName,
    api::{
        IncomingResponse, OutgoingRequest,
        auth_scheme::{AuthScheme, NoAuthentication},
        error::{ErrorKind, FromHttpResponseError},
        federation::authentication::{ServerSignatures, ServerSignaturesInput},
        path_builder::SinglePath,
    },
};

use crate::{config::Config, e2ee::E2ee, rooms::Rooms, server_key::ServerKey, storage::Storage};

/// The largest response body accepted from another server (a `send_join`
/// of a big room is the largest).
const MAX_RESPONSE_BYTES: usize = 64 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum FedError {
    #[error("federation is disabled on this server")]
    Disabled,
    #[error("{0}")]
    Unreachable(String),
    /// The other server answered with an error: its status and Matrix
    /// error (errcode and the fields that go with it).
    #[error("remote server answered {status} {}: {message}", kind.errcode())]
    Remote { status: StatusCode, kind: ErrorKind, message: String },
    #[error("unexpected response: {0}")]
    BadResponse(String),
    #[error("{0}")]
    ResponseTooLarge(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("internal error: {0}")]
    Internal(String),
    #[error(transparent)]
    Storage(#[from] crate::storage::StorageError),
    #[error(transparent)]
    Rooms(#[from] crate::rooms::RoomsError),
    #[error(transparent)]
    E2ee(#[from] crate::e2ee::E2eeError),
}

/// What an outbound request signs with, per ruma's authentication scheme.
pub trait OutboundAuth: AuthScheme {
    fn input<'a>(origin: &ServerName, destination: &ServerName, key: &'a ServerKey) -> Self::Input<'a>;
}

impl OutboundAuth for ServerSignatures {
    fn input<'a>(origin: &ServerName, destination: &ServerName, key: &'a ServerKey) -> Self::Input<'a> {
        ServerSignaturesInput::new(origin.to_owned(), destination.to_owned(), &key.keypair)
    }
}

impl OutboundAuth for NoAuthentication {
    fn input<'a>(_: &ServerName, _: &ServerName, _: &'a ServerKey) -> Self::Input<'a> {}
}

/// The federation service.
pub struct Federation {
    pub config: Arc<Config>,
    db: Arc<dyn Storage>,
    pub(crate) key: Arc<ServerKey>,
    rooms: Arc<Rooms>,
    e2ee: E2ee,
    http: reqwest::Client,
    resolver: resolve::Resolver,
    cache: keys::KeyCache,
    /// Other servers' answers about spaces this server is not in.
    spaces: hierarchy::RemoteSpaceCache,
    pub sender: Arc<sender::Sender>,
}

impl Federation {
    pub fn new(
        config: Arc<Config>,
        db: Arc<dyn Storage>,
        key: Arc<ServerKey>,
        rooms: Arc<Rooms>,
        e2ee: E2ee,
    ) -> Result<Arc<Self>, String> {
        let fed = &config.federation;
        let policy = resolve::AddressPolicy {
            allowed_ranges: crate::address_policy::parse_ranges(&fed.allowed_ranges)?,
            allow_loopback: fed.allow_loopback,
        };
        let dns = Arc::new(resolve::Dns::new(policy).map_err(|e| e.to_string())?);
        let user_agent = format!("Plexus/{}", env!("CARGO_PKG_VERSION"));
        let http = tls::client(fed, dns.clone(), &user_agent)?;
        let resolver = resolve::Resolver::new(dns, http.clone());
        let sender = Arc::new(sender::Sender::new(db.clone()));
        Ok(Arc::new(Self {
            config,
            db,
            key,
            rooms,
            e2ee,
            http,
            resolver,
            cache: keys::KeyCache::default(),
            spaces: hierarchy::remote_space_cache(),
            sender,
        }))
    }

    pub fn enabled(&self) -> bool {
        self.config.federation.enabled
    }

    pub fn server_name(&self) -> &ServerName {
        &self.config.server.server_name
    }

    pub fn is_denied(&self, server: &ServerName) -> bool {
        self.config.federation.denied_servers.iter().any(|s| s == server)
    }

    /// Sends a request to another server, signed with X-Matrix when the
    /// endpoint needs it, and parses the answer.
    pub async fn request<R>(&self, destination: &ServerName, request: R) -> Result<R::IncomingResponse, FedError>
    where
        R: OutgoingRequest<PathBuilder = SinglePath> + Debug,
        R::Authentication: OutboundAuth,
    {
        let (dest, http_request) = self.build_request(destination, request).await?;
        let path = http_request.uri().path().to_owned();
        let response = self.send_http(destination, &dest, http_request, MAX_RESPONSE_BYTES).await?;
        parse_response::<R>(destination, &path, response)
    }

    /// Sends a request to another server, signed with X-Matrix when the
    /// endpoint needs it; returns the answer unparsed, its body at most
    /// `max_bytes`.
    pub(crate) async fn send<R>(
        &self,
        destination: &ServerName,
        request: R,
        max_bytes: usize,
    ) -> Result<http::Response<Bytes>, FedError>
    where
        R: OutgoingRequest<PathBuilder = SinglePath> + Debug,
        R::Authentication: OutboundAuth,
    {
        let (dest, http_request) = self.build_request(destination, request).await?;
        self.send_http(destination, &dest, http_request, max_bytes).await
    }

    /// Checks that `destination` may be asked, resolves it, and turns a
    /// ruma request into a signed HTTP request for it.
    async fn build_request<R>(
        &self,
        destination: &ServerName,
        request: R,
    ) -> Result<(resolve::Destination, http::Request<Vec<u8>>), FedError>
    where
        R: OutgoingRequest<PathBuilder = SinglePath> + Debug,
        R::Authentication: OutboundAuth,
    {
        let dest = self.destination(destination).await?;
        let auth = <R::Authentication as OutboundAuth>::input(self.server_name(), destination, &self.key);
        let http_request = request
            .try_into_http_request::<Vec<u8>>(&dest.base_url, auth, ())
            .map_err(|e| FedError::Internal(format!("cannot build the request: {e}")))?;
        Ok((dest, http_request))
    }

    /// Where requests for `destination` go, once it is known that this
    /// server may send them.
    async fn destination(&self, destination: &ServerName) -> Result<resolve::Destination, FedError> {
        if !self.enabled() {
            return Err(FedError::Disabled);
        }
        if destination == self.server_name() {
            return Err(FedError::Internal("a request to this server itself".into()));
        }
        if self.is_denied(destination) {
            return Err(FedError::Forbidden(format!("{destination} is on this server's deny-list")));
        }
        self.resolver.resolve(destination).await.map_err(|e| FedError::Unreachable(e.to_string()))
    }

    /// Sends a built request to `dest` (the `Host` header set as the spec
    /// asks) and reads the answer, whatever its status, its body at most
    /// `max_bytes`.
    async fn send_http(
        &self,
        destination: &ServerName,
        dest: &resolve::Destination,
        http_request: http::Request<Vec<u8>>,
        max_bytes: usize,
    ) -> Result<http::Response<Bytes>, FedError> {
        let (mut parts, body) = http_request.into_parts();
        if let Ok(host) = http::HeaderValue::from_str(&dest.host_header) {
            parts.headers.insert(http::header::HOST, host);
        }
        let request = reqwest::Request::try_from(http::Request::from_parts(parts, reqwest::Body::from(body)))
            .map_err(|e| FedError::Internal(format!("cannot build the request: {e}")))?;
        let response = self.http.execute(request).await.map_err(|e| {
            self.resolver.forget(destination);
            FedError::Unreachable(format!("{destination}: {e}"))
        })?;
        read_response(destination.as_str(), response, max_bytes).await
    }

    /// Servers with joined users in a room, this one and those the room's
    /// server ACL denies excepted.
    pub async fn room_servers(&self, room_id: &ruma::RoomId) -> Result<Vec<OwnedServerName>, FedError> {
        let mut servers: Vec<OwnedServerName> = self
            .rooms
            .joined_members(room_id)
            .await?
            .into_iter()
            .map(|u| u.server_name().to_owned())
            .filter(|s| s != self.server_name())
            .collect();
        servers.sort();
        servers.dedup();
        if let Some(acl) = self.rooms.server_acl(room_id).await? {
            servers.retain(|s| acl.is_allowed(s));
        }
        Ok(servers)
    }
}

/// Reads an answer whole, refusing a body of more than `max_bytes`.
async fn read_response(
    from: &str,
    mut response: reqwest::Response,
    max_bytes: usize,
) -> Result<http::Response<Bytes>, FedError> {
    let too_large = || FedError::ResponseTooLarge(format!("{from} sent a response over the size limit"));
    if response.content_length().is_some_and(|n| n > max_bytes as u64) {
        return Err(too_large());
    }
    let status = response.status();
    let headers = response.headers().clone();
    let mut body = bytes::BytesMut::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| FedError::Unreachable(format!("{from}: {e}")))? {
        if body.len() + chunk.len() > max_bytes {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    let mut http_response = http::Response::builder().status(status);
    if let Some(h) = http_response.headers_mut() {
        *h = headers;
    }
    http_response.body(body.freeze()).map_err(|e| FedError::Internal(format!("response: {e}")))
}

/// Parses another server's answer as `R`'s response; an error status
/// becomes `FedError::Remote` with the Matrix error it carried.
fn parse_response<R: OutgoingRequest>(
    destination: &ServerName,
    path: &str,
    response: http::Response<Bytes>,
) -> Result<R::IncomingResponse, FedError> {
    let status = response.status();
    let body = response.body().clone();
    R::IncomingResponse::try_from_http_response(response).map_err(|e| match e {
        FromHttpResponseError::Server(_) => remote_error(status, &body),
        other => FedError::BadResponse(format!("{destination} {path}: {other}")),
    })
}

/// The Matrix error of an error answer (`M_UNKNOWN` when the body has
/// none), with the fields its errcode defines (`room_version`, ...).
fn remote_error(status: StatusCode, body: &[u8]) -> FedError {
    let json: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
    let kind = serde_json::from_value::<ErrorKind>(json.clone()).unwrap_or(ErrorKind::Unknown);
    let message = json.get("error").and_then(|v| v.as_str()).unwrap_or("").to_owned();
    FedError::Remote { status, kind, message }
}
