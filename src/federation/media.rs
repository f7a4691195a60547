//! Fetching other servers' media (server-server API, "Content
//! repository"): the signed `/_matrix/federation/v1/media/download`, its
//! `multipart/mixed` answer parsed by ruma (a `Location` part followed), and
//! for servers that do not know that endpoint the legacy unauthenticated
//! `/_matrix/media/v3/download` (then `r0`). The media service caches what
//! this returns.

use async_trait::async_trait;
use bytes::Bytes;
use http::{HeaderMap, StatusCode, header};
use ruma::{
    ServerName,
    api::{
        IncomingResponse,
        error::ErrorKind,
        federation::authenticated_media::{FileOrLocation, get_content},
    },
    http_headers::ContentDisposition,
};

use super::{FedError, Federation, remote_error};
use crate::media::{RemoteFetchError, RemoteFile, RemoteMediaSource};

/// Room for the `multipart/mixed` framing around a file.
const MULTIPART_OVERHEAD: usize = 64 * 1024;

/// How long the other server may wait for an upload still in progress.
const DOWNLOAD_TIMEOUT_MS: u64 = 20_000;

#[async_trait]
impl RemoteMediaSource for Federation {
    async fn fetch_media(
        &self,
        origin: &ServerName,
        media_id: &str,
        max_bytes: u64,
    ) -> Result<RemoteFile, RemoteFetchError> {
        let limit = usize::try_from(max_bytes).unwrap_or(usize::MAX);
        let fetched = match self.download_federation(origin, media_id, limit).await {
            Err(e) if unknown_endpoint(&e) => {
                tracing::debug!(%origin, media_id, "no federation media endpoint; trying the legacy download");
                self.download_legacy(origin, media_id, limit).await
            }
            other => other,
        };
        fetched.map_err(|e| {
            tracing::info!(%origin, media_id, error = %e, "cannot fetch remote media");
            fetch_error(e, max_bytes)
        })
    }
}

impl Federation {
    /// `GET /_matrix/federation/v1/media/download/{mediaId}`, signed.
    async fn download_federation(
        &self,
        origin: &ServerName,
        media_id: &str,
        limit: usize,
    ) -> Result<RemoteFile, FedError> {
        let mut request = get_content::v1::Request::new(media_id.to_owned());
        request.timeout_ms = std::time::Duration::from_millis(DOWNLOAD_TIMEOUT_MS);
        let response = self.send(origin, request, limit.saturating_add(MULTIPART_OVERHEAD)).await?;
        let status = response.status();
        if !status.is_success() {
            return Err(remote_error(status, response.body()));
        }
        let parsed = get_content::v1::Response::try_from_http_response(response)
            .map_err(|e| FedError::BadResponse(format!("{origin}: the media answer does not parse: {e}")))?;
        match parsed.content {
            FileOrLocation::File(content) => {
                if content.file.len() > limit {
                    return Err(FedError::ResponseTooLarge(format!("{origin} sent a file over the size limit")));
                }
                Ok(RemoteFile {
                    content_type: content.content_type,
                    filename: content.content_disposition.and_then(|d| d.filename),
                    bytes: Bytes::from(content.file),
                })
            }
            FileOrLocation::Location(url) => self.download_location(origin, &url, limit).await,
            other => Err(FedError::BadResponse(format!("{origin}: an unknown kind of media answer: {other:?}"))),
        }
    }

    /// The file a `Location` part points to: a plain `GET` (no signature:
    /// it is usually a CDN), through the same address policy.
    async fn download_location(&self, origin: &ServerName, url: &str, limit: usize) -> Result<RemoteFile, FedError> {
        let parsed = reqwest::Url::parse(url)
            .map_err(|e| FedError::BadResponse(format!("{origin} redirected to a bad URL: {e}")))?;
        if !matches!(parsed.scheme(), "https" | "http") {
            return Err(FedError::BadResponse(format!("{origin} redirected to a {} URL", parsed.scheme())));
        }
        let host = parsed.host_str().unwrap_or_default().to_owned();
        self.resolver.check_host(&host).await.map_err(|e| FedError::Unreachable(format!("{host}: {e}")))?;
        let response = self.http.get(parsed).send().await.map_err(|e| FedError::Unreachable(format!("{host}: {e}")))?;
        let response = super::read_response(&host, response, limit).await?;
        file_of(response)
    }

    /// `GET /_matrix/media/v3/download/{serverName}/{mediaId}` (then `r0`),
    /// unauthenticated, for servers older than the federation endpoint.
    async fn download_legacy(&self, origin: &ServerName, media_id: &str, limit: usize) -> Result<RemoteFile, FedError> {
        let dest = self.destination(origin).await?;
        let id: String = form_urlencoded::byte_serialize(media_id.as_bytes()).collect();
        let server: String = form_urlencoded::byte_serialize(origin.as_bytes()).collect();
        let mut last = None;
        for version in ["v3", "r0"] {
            let url = format!(
                "{}/_matrix/media/{version}/download/{server}/{id}?allow_remote=false&allow_redirect=true&timeout_ms={DOWNLOAD_TIMEOUT_MS}",
                dest.base_url
            );
            let request = http::Request::get(url)
                .body(Vec::new())
                .map_err(|e| FedError::Internal(format!("cannot build the request: {e}")))?;
            let response = self.send_http(origin, &dest, request, limit).await?;
            match file_of(response) {
                Err(e) if unknown_endpoint(&e) => last = Some(e),
                other => return other,
            }
        }
        Err(last.unwrap_or_else(|| FedError::NotFound("media not found".into())))
    }
}

/// A plain download's answer as a file: its body, type and name.
fn file_of(response: http::Response<Bytes>) -> Result<RemoteFile, FedError> {
    let status = response.status();
    if status != StatusCode::OK {
        return Err(remote_error(status, response.body()));
    }
    let headers = response.headers();
    Ok(RemoteFile {
        content_type: header_text(headers, header::CONTENT_TYPE),
        filename: headers
            .get(header::CONTENT_DISPOSITION)
            .and_then(|v| ContentDisposition::try_from(v.as_bytes()).ok())
            .and_then(|d| d.filename),
        bytes: response.into_body(),
    })
}

fn header_text(headers: &HeaderMap, name: header::HeaderName) -> Option<String> {
    headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned)
}

/// Whether the other server does not know the endpoint (Spec: 404 or 405
/// `M_UNRECOGNIZED`; older servers answer 404 with no JSON, or 400
/// `M_UNRECOGNIZED`), as opposed to not knowing the media.
fn unknown_endpoint(e: &FedError) -> bool {
    match e {
        FedError::Remote { status, kind, .. } => match status.as_u16() {
            404 | 405 => matches!(kind, ErrorKind::Unrecognized | ErrorKind::Unknown),
            400 => matches!(kind, ErrorKind::Unrecognized),
            _ => false,
        },
        _ => false,
    }
}

/// What the media service is told, in the terms Synapse answers clients
/// with: the other server's 404 is a 404, anything else a 502.
fn fetch_error(e: FedError, max_bytes: u64) -> RemoteFetchError {
    match e {
        FedError::Disabled | FedError::Forbidden(_) => RemoteFetchError::NotAllowed(e.to_string()),
        FedError::Remote { status: StatusCode::NOT_FOUND, message, .. } => {
            RemoteFetchError::NotFound(if message.is_empty() { "media not found".into() } else { message })
        }
        FedError::ResponseTooLarge(_) => RemoteFetchError::TooLarge(max_bytes),
        other => RemoteFetchError::Unavailable(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn remote(status: u16, errcode: &str) -> FedError {
        FedError::Remote {
            status: StatusCode::from_u16(status).expect("a status"),
            kind: serde_json::from_value(serde_json::json!({"errcode": errcode})).expect("an errcode"),
            message: String::new(),
        }
    }

    #[test]
    fn only_an_unknown_endpoint_falls_back_to_the_legacy_download() {
        assert!(unknown_endpoint(&remote(404, "M_UNRECOGNIZED")));
        assert!(unknown_endpoint(&remote(405, "M_UNRECOGNIZED")));
        assert!(unknown_endpoint(&remote(400, "M_UNRECOGNIZED")));
        // A 404 without a Matrix error (no JSON) is an old server's.
        assert!(unknown_endpoint(&remote(404, "M_UNKNOWN")));
        assert!(!unknown_endpoint(&remote(404, "M_NOT_FOUND")), "the media is missing, not the endpoint");
        assert!(!unknown_endpoint(&remote(502, "M_UNRECOGNIZED")));
        assert!(!unknown_endpoint(&FedError::Unreachable("down".into())));
    }

    #[test]
    fn a_remote_404_is_not_found_and_the_rest_unavailable() {
        assert!(matches!(fetch_error(remote(404, "M_NOT_FOUND"), 10), RemoteFetchError::NotFound(_)));
        assert!(matches!(fetch_error(remote(500, "M_UNKNOWN"), 10), RemoteFetchError::Unavailable(_)));
        assert!(matches!(fetch_error(FedError::Unreachable("down".into()), 10), RemoteFetchError::Unavailable(_)));
        assert!(matches!(fetch_error(FedError::Disabled, 10), RemoteFetchError::NotAllowed(_)));
        assert!(matches!(fetch_error(FedError::ResponseTooLarge("big".into()), 10), RemoteFetchError::TooLarge(10)));
    }
}
