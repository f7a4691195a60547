//! The content repository endpoints (client-server API, "Content
//! repository"). Uploads and downloads stream: the body is never held in
//! memory whole. Downloads carry the safe-serving headers of
//! `media::serve`.

use axum::{
    Router,
    body::Body,
    extract::{Path, Query, Request, State},
    response::{IntoResponse, Response},
    routing::{get, post, put},
};
use http::{HeaderValue, StatusCode, header, request::Parts};
use ruma::{
    MilliSecondsSinceUnixEpoch, UInt,
    api::client::{authenticated_media, media},
};
use serde::Deserialize;
use serde_json::json;

use crate::{
    http::{ApiError, RouterExt, Ruma, require_session},
    media::{MediaError, served_headers, thumbnail::Method},
    services::AppState,
    users::Session,
};

pub fn routes(router: Router<AppState>) -> Router<AppState> {
    let router = router
        .ruma(create_mxc)
        .ruma(config_v1)
        .ruma(config_legacy)
        .route("/_matrix/media/v3/upload", post(upload))
        .route("/_matrix/media/r0/upload", post(upload))
        .route("/_matrix/media/v3/upload/{server}/{media_id}", put(upload_reserved))
        .route("/_matrix/client/v1/media/download/{server}/{media_id}", get(download))
        .route("/_matrix/client/v1/media/download/{server}/{media_id}/{file_name}", get(download_named))
        .route("/_matrix/client/v1/media/thumbnail/{server}/{media_id}", get(thumbnail))
        .route("/_matrix/client/v1/media/preview_url", get(preview_url))
        .route("/_matrix/media/v3/preview_url", get(preview_url))
        .route("/_matrix/media/r0/preview_url", get(preview_url));
    let mut router = router;
    for version in ["v3", "r0"] {
        router = router
            .route(&format!("/_matrix/media/{version}/download/{{server}}/{{media_id}}"), get(legacy_download))
            .route(
                &format!("/_matrix/media/{version}/download/{{server}}/{{media_id}}/{{file_name}}"),
                get(legacy_download_named),
            )
            .route(&format!("/_matrix/media/{version}/thumbnail/{{server}}/{{media_id}}"), get(legacy_thumbnail));
    }
    router
}

impl From<MediaError> for ApiError {
    fn from(e: MediaError) -> Self {
        use ruma::api::error::ErrorKind;
        let message = e.to_string();
        match e {
            MediaError::TooLarge(_) => ApiError::too_large(message),
            MediaError::NotFound(_) => ApiError::not_found(message),
            MediaError::NotYetUploaded => {
                ApiError::new(StatusCode::GATEWAY_TIMEOUT, ErrorKind::NotYetUploaded, message)
            }
            MediaError::CannotOverwrite => {
                ApiError::new(StatusCode::CONFLICT, ErrorKind::CannotOverwriteMedia, message)
            }
            MediaError::Forbidden(_) => ApiError::forbidden(message),
            MediaError::InvalidParam(_) => ApiError::invalid_param(message),
            MediaError::LimitExceeded(_) => ApiError::limit_exceeded(std::time::Duration::from_secs(60)),
            // As Synapse answers when another server's file cannot be had.
            MediaError::RemoteTooLarge(_) => ApiError::new(StatusCode::BAD_GATEWAY, ErrorKind::TooLarge, message),
            MediaError::RemoteUnavailable(_) => ApiError::new(StatusCode::BAD_GATEWAY, ErrorKind::Unknown, message),
            MediaError::Upload(_) => ApiError::new(StatusCode::BAD_REQUEST, ErrorKind::Unknown, message),
            MediaError::Io(e) => ApiError::internal_with(e),
            MediaError::Storage(e) => e.into(),
        }
    }
}

/// The caller; a guest may download and thumbnail, not upload or preview
/// URLs (`http::guest`).
async fn authenticate(state: &AppState, parts: &Parts) -> Result<Session, ApiError> {
    require_session(state, parts).await
}

#[derive(Deserialize, Default)]
struct UploadQuery {
    filename: Option<String>,
}

fn content_type(parts: &Parts) -> Option<String> {
    parts.headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).map(str::to_owned)
}

/// Refuses an upload whose declared length is already too large.
fn check_declared_length(state: &AppState, parts: &Parts) -> Result<(), ApiError> {
    let limit = state.config.media.max_upload_bytes;
    let declared =
        parts.headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(MediaError::TooLarge(limit).into());
    }
    Ok(())
}

async fn upload(
    State(state): State<AppState>,
    Query(query): Query<UploadQuery>,
    request: Request,
) -> Result<Response, ApiError> {
    let (parts, body) = request.into_parts();
    let session = authenticate(&state, &parts).await?;
    state.rate_limits.media_upload.check(&session.user_id)?;
    check_declared_length(&state, &parts)?;
    let uri =
        state.media.upload(&session.user_id, content_type(&parts), query.filename, body.into_data_stream()).await?;
    Ok(axum::Json(json!({"content_uri": uri})).into_response())
}

async fn upload_reserved(
    State(state): State<AppState>,
    Path((server, media_id)): Path<(String, String)>,
    Query(query): Query<UploadQuery>,
    request: Request,
) -> Result<Response, ApiError> {
    let (parts, body) = request.into_parts();
    let session = authenticate(&state, &parts).await?;
    state.rate_limits.media_upload.check(&session.user_id)?;
    check_declared_length(&state, &parts)?;
    state
        .media
        .upload_reserved(
            &session.user_id,
            &server,
            &media_id,
            content_type(&parts),
            query.filename,
            body.into_data_stream(),
        )
        .await?;
    Ok(axum::Json(json!({})).into_response())
}

async fn create_mxc(
    state: AppState,
    req: Ruma<media::create_mxc_uri::v1::Request>,
) -> Result<media::create_mxc_uri::v1::Response, ApiError> {
    let user = req.session().user_id.clone();
    state.rate_limits.media_upload.check(&user)?;
    let (uri, expires) = state.media.reserve(&user).await?;
    let mut response = media::create_mxc_uri::v1::Response::new(uri);
    response.unused_expires_at = UInt::try_from(expires.max(0) as u64).ok().map(MilliSecondsSinceUnixEpoch);
    Ok(response)
}

async fn config_v1(
    state: AppState,
    _: Ruma<authenticated_media::get_media_config::v1::Request>,
) -> Result<authenticated_media::get_media_config::v1::Response, ApiError> {
    Ok(authenticated_media::get_media_config::v1::Response::new(
        UInt::try_from(state.config.media.max_upload_bytes).unwrap_or_default(),
    ))
}

// The legacy endpoint stays for clients that predate authenticated media.
#[allow(deprecated)]
async fn config_legacy(
    state: AppState,
    _: Ruma<media::get_media_config::v3::Request>,
) -> Result<media::get_media_config::v3::Response, ApiError> {
    Ok(media::get_media_config::v3::Response::new(
        UInt::try_from(state.config.media.max_upload_bytes).unwrap_or_default(),
    ))
}

/// Streams a stored file with the safe-serving headers.
pub(crate) async fn serve_file(
    path: &std::path::Path,
    content_type: Option<&str>,
    filename: Option<&str>,
    size: Option<i64>,
) -> Result<Response, ApiError> {
    let file = tokio::fs::File::open(path).await.map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => ApiError::not_found("media file missing"),
        _ => ApiError::internal_with(e),
    })?;
    let headers = served_headers(content_type, filename);
    let body = Body::from_stream(tokio_util::io::ReaderStream::new(file));
    let mut response = Response::new(body);
    let h = response.headers_mut();
    let value =
        |s: &str| HeaderValue::from_str(s).unwrap_or_else(|_| HeaderValue::from_static("application/octet-stream"));
    h.insert(header::CONTENT_TYPE, value(&headers.content_type));
    if let Ok(v) = HeaderValue::from_str(&headers.content_disposition) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(crate::media::serve::CONTENT_SECURITY_POLICY));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert("cross-origin-resource-policy", HeaderValue::from_static("cross-origin"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("private, max-age=86400"));
    if let Some(size) = size {
        h.insert(header::CONTENT_LENGTH, HeaderValue::from(size.max(0) as u64));
    }
    Ok(response)
}

async fn download_impl(
    state: &AppState,
    server: &str,
    media_id: &str,
    name: Option<&str>,
    legacy: bool,
) -> Result<Response, ApiError> {
    let stored = state.media.open(server, media_id, legacy).await?;
    let filename = name.or(stored.filename.as_deref());
    serve_file(&stored.path, stored.content_type.as_deref(), filename, stored.size).await
}

async fn download(
    State(state): State<AppState>,
    Path((server, media_id)): Path<(String, String)>,
    parts: Parts,
) -> Result<Response, ApiError> {
    authenticate(&state, &parts).await?;
    download_impl(&state, &server, &media_id, None, false).await
}

async fn download_named(
    State(state): State<AppState>,
    Path((server, media_id, name)): Path<(String, String, String)>,
    parts: Parts,
) -> Result<Response, ApiError> {
    authenticate(&state, &parts).await?;
    download_impl(&state, &server, &media_id, Some(&name), false).await
}

async fn legacy_download(
    State(state): State<AppState>,
    Path((server, media_id)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    download_impl(&state, &server, &media_id, None, true).await
}

async fn legacy_download_named(
    State(state): State<AppState>,
    Path((server, media_id, name)): Path<(String, String, String)>,
) -> Result<Response, ApiError> {
    download_impl(&state, &server, &media_id, Some(&name), true).await
}

#[derive(Deserialize)]
struct PreviewQuery {
    url: String,
}

async fn preview_url(
    State(state): State<AppState>,
    query: Result<Query<PreviewQuery>, axum::extract::rejection::QueryRejection>,
    parts: Parts,
) -> Result<Response, ApiError> {
    let session = authenticate(&state, &parts).await?;
    let Query(query) = query.map_err(|e| {
        ApiError::new(StatusCode::BAD_REQUEST, ruma::api::error::ErrorKind::MissingParam, e.body_text())
    })?;
    state.rate_limits.media_upload.check(&session.user_id)?;
    let preview = state.media.preview_url(&session.user_id, &query.url).await?;
    Ok(axum::Json(preview).into_response())
}

#[derive(Deserialize)]
struct ThumbnailQuery {
    width: Option<u32>,
    height: Option<u32>,
    method: Option<String>,
}

async fn thumbnail_impl(
    state: &AppState,
    server: &str,
    media_id: &str,
    query: ThumbnailQuery,
    legacy: bool,
) -> Result<Response, ApiError> {
    let (Some(width), Some(height)) = (query.width, query.height) else {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            ruma::api::error::ErrorKind::MissingParam,
            "width and height are required",
        ));
    };
    let method = match query.method.as_deref() {
        None | Some("scale") => Method::Scale,
        Some("crop") => Method::Crop,
        Some(other) => return Err(ApiError::invalid_param(format!("unknown thumbnail method {other}"))),
    };
    let (content_type, path) = state.media.thumbnail(server, media_id, width, height, method, legacy).await?;
    serve_file(&path, Some(&content_type), None, None).await
}

async fn thumbnail(
    State(state): State<AppState>,
    Path((server, media_id)): Path<(String, String)>,
    query: Result<Query<ThumbnailQuery>, axum::extract::rejection::QueryRejection>,
    parts: Parts,
) -> Result<Response, ApiError> {
    authenticate(&state, &parts).await?;
    let Query(query) = query.map_err(|e| ApiError::invalid_param(e.body_text()))?;
    thumbnail_impl(&state, &server, &media_id, query, false).await
}

async fn legacy_thumbnail(
    State(state): State<AppState>,
    Path((server, media_id)): Path<(String, String)>,
    query: Result<Query<ThumbnailQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::invalid_param(e.body_text()))?;
    thumbnail_impl(&state, &server, &media_id, query, true).await
}
