//! The application service API, homeserver side: transactions, user and
//! alias queries, and pings sent to an appservice's `url` with its
//! `hs_token`. The operator chose the URL, so loopback and private
//! addresses are allowed; every request has a connect and a total timeout.

use std::{
    collections::BTreeMap,
    time::{Duration, Instant},
};

use ruma::{
    OwnedRoomAliasId, OwnedTransactionId, OwnedUserId,
    api::{
        OutgoingRequest,
        appservice::{
            event::push_events,
            ping::send_ping,
            query::{query_room_alias, query_user_id},
        },
        auth_scheme::SendAccessToken,
    },
    serde::Raw,
};
use serde_json::{Map, Value, json, value::RawValue};

use super::registration::Appservice;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// How much of an error body a failed ping reports.
const MAX_REPORTED_BODY: usize = 4096;

/// What a transaction carries beyond events and ephemeral data, under the
/// keys Synapse sends (MSC2409's to-device key, MSC3202's with both forms
/// of the one-time key counts' name); each is left out when empty.
#[derive(Debug, Default)]
pub(super) struct TransactionExtras {
    pub to_device: Vec<Value>,
    pub changed: Vec<String>,
    pub left: Vec<String>,
    /// user → device → algorithm → count.
    pub one_time_keys_count: BTreeMap<String, BTreeMap<String, Value>>,
    /// user → device → algorithms.
    pub unused_fallback_key_types: BTreeMap<String, BTreeMap<String, Value>>,
}

impl TransactionExtras {
    fn is_empty(&self) -> bool {
        self.to_device.is_empty()
            && self.changed.is_empty()
            && self.left.is_empty()
            && self.one_time_keys_count.is_empty()
            && self.unused_fallback_key_types.is_empty()
    }

    fn add_to(self, body: &mut Map<String, Value>) {
        if !self.to_device.is_empty() {
            body.insert("de.sorunome.msc2409.to_device".into(), self.to_device.into());
        }
        if !self.changed.is_empty() || !self.left.is_empty() {
            body.insert("org.matrix.msc3202.device_lists".into(), json!({"changed": self.changed, "left": self.left}));
        }
        if !self.one_time_keys_count.is_empty() {
            let counts = json!(self.one_time_keys_count);
            body.insert("org.matrix.msc3202.device_one_time_key_counts".into(), counts.clone());
            body.insert("org.matrix.msc3202.device_one_time_keys_count".into(), counts);
        }
        if !self.unused_fallback_key_types.is_empty() {
            body.insert(
                "org.matrix.msc3202.device_unused_fallback_key_types".into(),
                json!(self.unused_fallback_key_types),
            );
        }
    }
}

/// Why a request to an appservice failed.
#[derive(Debug, thiserror::Error)]
pub enum AppserviceCallError {
    #[error("the appservice has no url")]
    UrlNotSet,
    #[error("the appservice did not answer in time")]
    Timeout,
    #[error("cannot reach the appservice: {0}")]
    ConnectionFailed(String),
    #[error("the appservice answered {status}")]
    BadStatus { status: http::StatusCode, body: String },
    #[error("cannot build the request: {0}")]
    Request(String),
}

/// The HTTP client every appservice request goes through.
pub struct AppserviceClient {
    http: reqwest::Client,
}

impl AppserviceClient {
    pub fn new() -> Result<Self, String> {
        let http = reqwest::Client::builder()
            .user_agent(concat!("Plexus/", env!("CARGO_PKG_VERSION"), " appservice"))
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            .build()
            .map_err(|e| format!("cannot build the appservice client: {e}"))?;
        Ok(Self { http })
    }

    /// `PUT /_matrix/app/v1/transactions/{txnId}`. Ephemeral data goes
    /// under the stable key and MSC2409's `de.sorunome.msc2409.ephemeral`.
    pub async fn send_transaction(
        &self,
        appservice: &Appservice,
        txn_id: OwnedTransactionId,
        events: Vec<Box<RawValue>>,
        ephemeral: Vec<Box<RawValue>>,
        extras: TransactionExtras,
    ) -> Result<(), AppserviceCallError> {
        let mut request = push_events::v1::Request::new(txn_id, events.into_iter().map(Raw::from_json).collect());
        request.ephemeral = ephemeral.iter().cloned().map(Raw::from_json).collect();
        let mut http_request = self.build(appservice, request)?;
        if !ephemeral.is_empty() || !extras.is_empty() {
            let mut body: serde_json::Map<String, serde_json::Value> =
                serde_json::from_slice(http_request.body()).map_err(|e| AppserviceCallError::Request(e.to_string()))?;
            if let Some(stable) = body.get("ephemeral").cloned() {
                body.insert("de.sorunome.msc2409.ephemeral".into(), stable);
            }
            extras.add_to(&mut body);
            *http_request.body_mut() =
                serde_json::to_vec(&body).map_err(|e| AppserviceCallError::Request(e.to_string()))?;
        }
        self.execute(http_request).await.map(|_| ())
    }

    /// `GET /_matrix/app/v1/users/{userId}`: whether the appservice has (now) created the user.
    pub async fn query_user(&self, appservice: &Appservice, user: OwnedUserId) -> Result<(), AppserviceCallError> {
        let request = self.build(appservice, query_user_id::v1::Request::new(user))?;
        self.execute(request).await.map(|_| ())
    }

    /// `GET /_matrix/app/v1/rooms/{roomAlias}`: whether the appservice has (now) created the alias.
    pub async fn query_alias(
        &self,
        appservice: &Appservice,
        alias: OwnedRoomAliasId,
    ) -> Result<(), AppserviceCallError> {
        let request = self.build(appservice, query_room_alias::v1::Request::new(alias))?;
        self.execute(request).await.map(|_| ())
    }

    /// `POST /_matrix/app/v1/ping`; how long the round trip took.
    pub async fn ping(
        &self,
        appservice: &Appservice,
        transaction_id: Option<OwnedTransactionId>,
    ) -> Result<Duration, AppserviceCallError> {
        let mut request = send_ping::v1::Request::new();
        request.transaction_id = transaction_id;
        let request = self.build(appservice, request)?;
        let started = Instant::now();
        self.execute(request).await?;
        Ok(started.elapsed())
    }

    /// Any appservice API request whose answer is parsed (the
    /// third-party lookups).
    pub async fn call<R>(&self, appservice: &Appservice, request: R) -> Result<R::IncomingResponse, AppserviceCallError>
    where
        R: OutgoingRequest<PathBuilder = ruma::api::path_builder::SinglePath>,
        for<'a> R::Authentication: ruma::api::auth_scheme::AuthScheme<Input<'a> = SendAccessToken<'a>>,
    {
        use ruma::api::IncomingResponse;
        let request = self.build(appservice, request)?;
        let body = self.execute(request).await?;
        let response = http::Response::builder()
            .status(http::StatusCode::OK)
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(bytes::Bytes::from(body))
            .map_err(|e| AppserviceCallError::Request(e.to_string()))?;
        R::IncomingResponse::try_from_http_response(response)
            .map_err(|e| AppserviceCallError::ConnectionFailed(format!("unexpected answer: {e}")))
    }

    fn build<R: OutgoingRequest<PathBuilder = ruma::api::path_builder::SinglePath>>(
        &self,
        appservice: &Appservice,
        request: R,
    ) -> Result<http::Request<Vec<u8>>, AppserviceCallError>
    where
        for<'a> R::Authentication: ruma::api::auth_scheme::AuthScheme<Input<'a> = SendAccessToken<'a>>,
    {
        let url = appservice.registration.url.as_deref().ok_or(AppserviceCallError::UrlNotSet)?;
        request
            .try_into_http_request::<Vec<u8>>(
                url.trim_end_matches('/'),
                SendAccessToken::Always(&appservice.registration.hs_token),
                (),
            )
            .map_err(|e| AppserviceCallError::Request(e.to_string()))
    }

    async fn execute(&self, request: http::Request<Vec<u8>>) -> Result<String, AppserviceCallError> {
        let (parts, body) = request.into_parts();
        let request = reqwest::Request::try_from(http::Request::from_parts(parts, reqwest::Body::from(body)))
            .map_err(|e| AppserviceCallError::Request(e.to_string()))?;
        let response = self.http.execute(request).await.map_err(call_error)?;
        let status = response.status();
        let body = response.text().await.map_err(call_error)?;
        if !status.is_success() {
            let body = body.chars().take(MAX_REPORTED_BODY).collect();
            return Err(AppserviceCallError::BadStatus { status, body });
        }
        Ok(body)
    }
}

fn call_error(e: reqwest::Error) -> AppserviceCallError {
    if e.is_timeout() {
        return AppserviceCallError::Timeout;
    }
    let mut message = e.to_string();
    let mut cause = std::error::Error::source(&e);
    while let Some(c) = cause {
        message.push_str(": ");
        message.push_str(&c.to_string());
        cause = c.source();
    }
    AppserviceCallError::ConnectionFailed(message)
}
