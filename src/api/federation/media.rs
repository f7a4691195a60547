//! The content repository for other servers (server-server API, "Content
//! repository"): `/media/download/{mediaId}` and `/media/thumbnail/{mediaId}`,
//! signed requests answered with `multipart/mixed` (a JSON part, then the
//! bytes, streamed from disk). Only this server's media is served here.

use axum::{
    Router,
    body::Body,
    extract::State,
    response::{IntoResponse, Response},
    routing::get,
};
use bytes::Bytes;
use futures_util::StreamExt;
use http::{HeaderValue, header};
use rand::{Rng, distributions::Alphanumeric};
use ruma::{
    api::federation::authenticated_media::{get_content, get_content_thumbnail},
    media::Method as ThumbnailMethod,
};

use super::Fed;
use crate::{
    http::ApiError,
    media::{served_headers, thumbnail::Method},
    services::AppState,
};

pub(super) fn routes(router: Router<AppState>) -> Router<AppState> {
    router
        .route("/_matrix/federation/v1/media/download/{media_id}", get(download))
        .route("/_matrix/federation/v1/media/thumbnail/{media_id}", get(thumbnail))
}

async fn download(State(state): State<AppState>, req: Fed<get_content::v1::Request>) -> Result<Response, ApiError> {
    let stored = state.media.open_local(&req.body.media_id, false).await?;
    multipart_file(&stored.path, stored.content_type.as_deref(), stored.filename.as_deref()).await
}

async fn thumbnail(
    State(state): State<AppState>,
    req: Fed<get_content_thumbnail::v1::Request>,
) -> Result<Response, ApiError> {
    let request = req.body;
    let method = match request.method {
        Some(ThumbnailMethod::Crop) => Method::Crop,
        _ => Method::Scale,
    };
    let width = u32::try_from(request.width).unwrap_or(u32::MAX);
    let height = u32::try_from(request.height).unwrap_or(u32::MAX);
    let server = state.config.server.server_name.as_str();
    let (content_type, path) = state.media.thumbnail(server, &request.media_id, width, height, method, false).await?;
    multipart_file(&path, Some(&content_type), None).await
}

/// A `multipart/mixed` answer: the (empty) metadata object, then the file
/// with the safe-serving type and disposition. The file is streamed.
async fn multipart_file(
    path: &std::path::Path,
    content_type: Option<&str>,
    filename: Option<&str>,
) -> Result<Response, ApiError> {
    let file = tokio::fs::File::open(path).await.map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => ApiError::not_found("media file missing"),
        _ => ApiError::internal_with(e),
    })?;
    let served = served_headers(content_type, filename);
    let boundary: String = rand::thread_rng().sample_iter(&Alphanumeric).take(32).map(char::from).collect();
    let head = format!(
        "\r\n--{boundary}\r\nContent-Type: application/json\r\n\r\n{{}}\r\n--{boundary}\r\nContent-Type: {}\r\nContent-Disposition: {}\r\n\r\n",
        served.content_type, served.content_disposition
    );
    let tail = format!("\r\n--{boundary}--\r\n");
    let body = futures_util::stream::once(async move { Ok::<_, std::io::Error>(Bytes::from(head)) })
        .chain(tokio_util::io::ReaderStream::new(file))
        .chain(futures_util::stream::once(async move { Ok(Bytes::from(tail)) }));
    let mut response = Body::from_stream(body).into_response();
    let value =
        HeaderValue::from_str(&format!("multipart/mixed; boundary={boundary}")).map_err(ApiError::internal_with)?;
    response.headers_mut().insert(header::CONTENT_TYPE, value);
    Ok(response)
}
