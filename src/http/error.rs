//! Matrix error responses: every failure leaves the server as a JSON body
//! with an `errcode` and the status the spec gives for it.

use axum::response::{IntoResponse, Response};
use http::StatusCode;
use ruma::api::{
    OutgoingResponse,
    client::uiaa::{UiaaInfo, UiaaResponse},
    error::{ErrorBody, ErrorKind, LimitExceededErrorData, RetryAfter, StandardErrorBody, UnknownTokenErrorData},
};

use crate::{
    appservice::{AppserviceCallError, AppserviceError},
    calls::CallsError,
    delayed::DelayedError,
    e2ee::E2eeError,
    push::PushError,
    reports::ReportsError,
    rooms::RoomsError,
    search::SearchError,
    storage::StorageError,
    streams::StreamsError,
    sync::SyncError,
    users::UsersError,
};

/// An error answered to a client.
#[derive(Debug)]
pub enum ApiError {
    Matrix {
        status: StatusCode,
        kind: ErrorKind,
        message: String,
    },
    /// An error whose body carries fields ruma's `ErrorKind` cannot (an
    /// unstable errcode beside `M_UNKNOWN`, as MSCs define them).
    Json {
        status: StatusCode,
        body: serde_json::Value,
    },
    Uia(Box<UiaaInfo>),
}

impl ApiError {
    pub fn new(status: StatusCode, kind: ErrorKind, message: impl Into<String>) -> Self {
        Self::Matrix { status, kind, message: message.into() }
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, ErrorKind::Forbidden, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, ErrorKind::NotFound, message)
    }

    pub fn bad_json(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, ErrorKind::BadJson, message)
    }

    pub fn not_json(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, ErrorKind::NotJson, message)
    }

    pub fn invalid_param(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, ErrorKind::InvalidParam, message)
    }

    pub fn unrecognized(status: StatusCode, message: impl Into<String>) -> Self {
        Self::new(status, ErrorKind::Unrecognized, message)
    }

    pub fn too_large(message: impl Into<String>) -> Self {
        Self::new(StatusCode::PAYLOAD_TOO_LARGE, ErrorKind::TooLarge, message)
    }

    pub fn missing_token() -> Self {
        Self::new(StatusCode::UNAUTHORIZED, ErrorKind::MissingToken, "missing access token")
    }

    pub fn unknown_token(soft_logout: bool) -> Self {
        let mut data = UnknownTokenErrorData::new();
        data.soft_logout = soft_logout;
        let message = if soft_logout { "access token has expired" } else { "unknown access token" };
        Self::new(StatusCode::UNAUTHORIZED, ErrorKind::UnknownToken(data), message)
    }

    pub fn limit_exceeded(retry_after: std::time::Duration) -> Self {
        let mut data = LimitExceededErrorData::new();
        data.retry_after = Some(RetryAfter::Delay(retry_after));
        Self::new(StatusCode::TOO_MANY_REQUESTS, ErrorKind::LimitExceeded(data), "too many requests")
    }

    /// A server fault; the detail goes to the log, not to the client.
    pub fn internal_with(detail: impl std::fmt::Display) -> Self {
        tracing::error!(%detail, "internal error");
        Self::internal()
    }

    pub fn internal() -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, ErrorKind::Unknown, "internal server error")
    }

    /// The Matrix error body (`errcode`, `error`, and extra fields such as
    /// `retry_after_ms`), for transports that carry errors inside frames.
    pub fn body_json(&self) -> serde_json::Value {
        match self {
            Self::Matrix { kind, message, .. } => {
                let body = StandardErrorBody::new(kind.clone(), message.clone());
                serde_json::to_value(&body)
                    .unwrap_or_else(|_| serde_json::json!({"errcode": "M_UNKNOWN", "error": message}))
            }
            Self::Json { body, .. } => body.clone(),
            Self::Uia(info) => serde_json::to_value(info).unwrap_or_default(),
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Self::Matrix { status, .. } | Self::Json { status, .. } => *status,
            Self::Uia(_) => StatusCode::UNAUTHORIZED,
        }
    }
}

impl From<StorageError> for ApiError {
    fn from(e: StorageError) -> Self {
        tracing::error!(error = %e, "storage failure");
        Self::internal()
    }
}

impl From<UsersError> for ApiError {
    fn from(e: UsersError) -> Self {
        use StatusCode as S;
        let message = e.to_string();
        match e {
            UsersError::Uia(info) => Self::Uia(info),
            UsersError::InvalidUsername(_) => Self::new(S::BAD_REQUEST, ErrorKind::InvalidUsername, message),
            UsersError::UserInUse => Self::new(S::BAD_REQUEST, ErrorKind::UserInUse, message),
            UsersError::RegistrationClosed | UsersError::Forbidden(_) => Self::forbidden(message),
            UsersError::GuestAccessForbidden => Self::new(S::FORBIDDEN, ErrorKind::GuestAccessForbidden, message),
            UsersError::WeakPassword(_) => Self::new(S::BAD_REQUEST, ErrorKind::WeakPassword, message),
            UsersError::InvalidCredentials => Self::forbidden(message),
            UsersError::UserDeactivated => Self::new(S::FORBIDDEN, ErrorKind::UserDeactivated, message),
            UsersError::UnknownToken { soft_logout } => Self::unknown_token(soft_logout),
            UsersError::NotFound(_) => Self::not_found(message),
            UsersError::InvalidParam(_) => Self::invalid_param(message),
            UsersError::Unrecognized(_) => Self::unrecognized(S::BAD_REQUEST, message),
            UsersError::Storage(e) => e.into(),
        }
    }
}

impl From<CallsError> for ApiError {
    fn from(e: CallsError) -> Self {
        match e {
            CallsError::GuestAccessForbidden => {
                Self::new(StatusCode::FORBIDDEN, ErrorKind::GuestAccessForbidden, e.to_string())
            }
        }
    }
}

impl From<RoomsError> for ApiError {
    fn from(e: RoomsError) -> Self {
        use StatusCode as S;
        let message = e.to_string();
        match e {
            RoomsError::NotFound(_) => Self::not_found(message),
            RoomsError::Forbidden(_) => Self::forbidden(message),
            RoomsError::UnsupportedRoomVersion(_) => {
                Self::new(S::BAD_REQUEST, ErrorKind::UnsupportedRoomVersion, message)
            }
            RoomsError::TooLarge => Self::too_large(message),
            RoomsError::InvalidParam(_) => Self::invalid_param(message),
            RoomsError::BadJson(_) => Self::bad_json(message),
            RoomsError::RoomInUse(_) => Self::new(S::BAD_REQUEST, ErrorKind::RoomInUse, message),
            RoomsError::AliasExists(_) => Self::new(S::CONFLICT, ErrorKind::Unknown, message),
            RoomsError::BadAlias(_) => Self::new(S::BAD_REQUEST, ErrorKind::InvalidParam, message),
            RoomsError::CanonicalAlias(_) => Self::new(S::BAD_REQUEST, ErrorKind::BadAlias, message),
            RoomsError::Internal(detail) => Self::internal_with(detail),
            RoomsError::Storage(e) => e.into(),
        }
    }
}

impl From<StreamsError> for ApiError {
    fn from(e: StreamsError) -> Self {
        let message = e.to_string();
        match e {
            StreamsError::Forbidden(_) => Self::forbidden(message),
            StreamsError::NotFound(_) => Self::not_found(message),
            StreamsError::BadJson(_) => Self::bad_json(message),
            StreamsError::Rooms(e) => e.into(),
            StreamsError::Storage(e) => e.into(),
        }
    }
}

impl From<PushError> for ApiError {
    fn from(e: PushError) -> Self {
        let message = e.to_string();
        match e {
            PushError::NotFound(_) => Self::not_found(message),
            PushError::InvalidParam(_) => Self::invalid_param(message),
            PushError::Streams(e) => e.into(),
            PushError::Rooms(e) => e.into(),
            PushError::Storage(e) => e.into(),
        }
    }
}

impl From<ReportsError> for ApiError {
    fn from(e: ReportsError) -> Self {
        let message = e.to_string();
        match e {
            ReportsError::EventNotFound => Self::not_found(message),
            ReportsError::Rooms(e) => e.into(),
            ReportsError::Storage(e) => e.into(),
        }
    }
}

impl From<SearchError> for ApiError {
    fn from(e: SearchError) -> Self {
        let message = e.to_string();
        match e {
            SearchError::InvalidParam(_) => Self::invalid_param(message),
            SearchError::Rooms(e) => e.into(),
            SearchError::Storage(e) => e.into(),
        }
    }
}

impl From<E2eeError> for ApiError {
    fn from(e: E2eeError) -> Self {
        let message = e.to_string();
        match e {
            E2eeError::InvalidKeys(_) => Self::invalid_param(message),
            E2eeError::BadJson(_) => Self::bad_json(message),
            E2eeError::Forbidden(_) => Self::forbidden(message),
            E2eeError::NotFound(_) => Self::not_found(message),
            E2eeError::WrongBackupVersion(Some(current)) => {
                let data = ruma::api::error::WrongRoomKeysVersionErrorData::new(current);
                Self::new(StatusCode::FORBIDDEN, ErrorKind::WrongRoomKeysVersion(data), message)
            }
            E2eeError::WrongBackupVersion(None) => Self::not_found("there is no current backup version"),
            E2eeError::Users(e) => e.into(),
            E2eeError::Storage(e) => e.into(),
        }
    }
}

impl From<SyncError> for ApiError {
    fn from(e: SyncError) -> Self {
        match e {
            SyncError::InvalidToken => Self::invalid_param("the `since` token is not valid"),
            // MSC4186: the client starts a new connection.
            SyncError::UnknownPos => Self::new(StatusCode::BAD_REQUEST, ErrorKind::UnknownPos, "unknown position"),
            SyncError::Rooms(e) => e.into(),
            SyncError::Streams(e) => e.into(),
            SyncError::Storage(e) => e.into(),
        }
    }
}

impl From<DelayedError> for ApiError {
    fn from(e: DelayedError) -> Self {
        let message = e.to_string();
        match e {
            DelayedError::Disabled => Self::forbidden(message),
            DelayedError::InvalidParam(_) => Self::invalid_param(message),
            // MSC4140's unstable form, which matrix-js-sdk reads to lower
            // the delay it asks for.
            DelayedError::MaxDelayExceeded { max_ms } => Self::Json {
                status: StatusCode::BAD_REQUEST,
                body: serde_json::json!({
                    "errcode": "M_UNKNOWN",
                    "org.matrix.msc4140.errcode": "M_MAX_DELAY_EXCEEDED",
                    "org.matrix.msc4140.max_delay": max_ms,
                    "error": message,
                }),
            },
            DelayedError::LimitExceeded { retry_after_ms } => {
                let mut data = LimitExceededErrorData::new();
                data.retry_after = Some(RetryAfter::Delay(std::time::Duration::from_millis(retry_after_ms)));
                Self::new(StatusCode::TOO_MANY_REQUESTS, ErrorKind::LimitExceeded(data), message)
            }
            DelayedError::NotFound => Self::not_found(message),
            DelayedError::RateLimited { retry_after_ms } => {
                Self::limit_exceeded(std::time::Duration::from_millis(retry_after_ms))
            }
            DelayedError::Rooms(e) => e.into(),
            DelayedError::Storage(e) => e.into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let response = match self {
            Self::Matrix { status, kind, message } => {
                let error =
                    ruma::api::error::Error::new(status, ErrorBody::Standard(StandardErrorBody::new(kind, message)));
                UiaaResponse::MatrixError(error).try_into_http_response::<Vec<u8>>()
            }
            Self::Json { status, body } => {
                let error = ruma::api::error::Error::new(status, ErrorBody::Json(body));
                UiaaResponse::MatrixError(error).try_into_http_response::<Vec<u8>>()
            }
            Self::Uia(info) => {
                // Synapse always sends `completed`, and clients read it
                // even when no stage is done; ruma leaves an empty list out.
                let mut body = serde_json::to_value(&*info).unwrap_or_default();
                if let Some(fields) = body.as_object_mut() {
                    fields.entry("completed").or_insert_with(|| serde_json::Value::Array(Vec::new()));
                }
                return (StatusCode::UNAUTHORIZED, axum::Json(body)).into_response();
            }
        };
        match response {
            Ok(r) => r.map(axum::body::Body::from).into_response(),
            Err(e) => {
                tracing::error!(error = %e, "cannot serialize an error response");
                StatusCode::INTERNAL_SERVER_ERROR.into_response()
            }
        }
    }
}

impl From<AppserviceError> for ApiError {
    fn from(e: AppserviceError) -> Self {
        use ruma::api::error::BadStatusErrorData;
        let message = e.to_string();
        match e {
            AppserviceError::NotInNamespace(_) => Self::new(StatusCode::FORBIDDEN, ErrorKind::Exclusive, message),
            AppserviceError::NotRegistered(_) | AppserviceError::Forbidden(_) => Self::forbidden(message),
            AppserviceError::Ping(call) => match call {
                AppserviceCallError::UrlNotSet => Self::new(StatusCode::BAD_REQUEST, ErrorKind::UrlNotSet, message),
                AppserviceCallError::Timeout => {
                    Self::new(StatusCode::GATEWAY_TIMEOUT, ErrorKind::ConnectionTimeout, message)
                }
                AppserviceCallError::ConnectionFailed(_) | AppserviceCallError::Request(_) => {
                    Self::new(StatusCode::BAD_GATEWAY, ErrorKind::ConnectionFailed, message)
                }
                AppserviceCallError::BadStatus { status, body } => {
                    let mut data = BadStatusErrorData::new();
                    data.status = Some(status);
                    data.body = Some(body);
                    Self::new(StatusCode::BAD_GATEWAY, ErrorKind::BadStatus(data), message)
                }
            },
            AppserviceError::Storage(e) => e.into(),
        }
    }
}

impl From<crate::rate_limit::RateLimited> for ApiError {
    fn from(e: crate::rate_limit::RateLimited) -> Self {
        ApiError::limit_exceeded(e.retry_after)
    }
}
