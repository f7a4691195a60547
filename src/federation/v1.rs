//! The v1 forms of `send_join`, `send_leave` and `invite` (server-server
//! API, "Joining Rooms", "Leaving Rooms", "Inviting to a Room": deprecated
//! in favour of v2, still what older servers speak), as the asking server:
//! asked when the other server does not know the v2 endpoint. Their
//! answers come as `[200, body]`; the resident side is in
//! `api/federation/resident.rs`.

use std::fmt::Debug;

use bytes::Bytes;
use http::StatusCode;
use ruma::{
    ServerName,
    api::{
        OutgoingRequest,
        auth_scheme::AuthScheme,
        error::ErrorKind,
        federation::authentication::{ServerSignatures, ServerSignaturesInput},
        path_builder::SinglePath,
    },
};
use serde_json::value::RawValue;

use super::{FedError, Federation, parse_response, remote_error};

/// The body of the v1 form of a request.
pub(super) enum V1Body {
    /// The same as the v2 form's (`send_join`, `send_leave`).
    SameAsV2,
    /// Another one (`invite`: the bare event).
    Replaced(Vec<u8>),
}

impl Federation {
    /// Sends a v2 membership request and, when `destination` does not know
    /// the v2 endpoint, its v1 form (the same path under `v1`), whose
    /// `[200, body]` answer is read as the v2 answer.
    pub(super) async fn request_with_v1_fallback<R>(
        &self,
        destination: &ServerName,
        request: R,
        v1_body: V1Body,
    ) -> Result<R::IncomingResponse, FedError>
    where
        R: OutgoingRequest<PathBuilder = SinglePath, Authentication = ServerSignatures> + Debug,
    {
        let (dest, v2) = self.build_request(destination, request).await?;
        let path = v2.uri().path().to_owned();
        let mut v1 = v1_form(&v2, v1_body)?;
        let response = self.send_http(destination, &dest, v2, super::MAX_RESPONSE_BYTES).await?;
        if !endpoint_unknown(&response) {
            return parse_response::<R>(destination, &path, response);
        }
        tracing::info!(%destination, %path, "the v2 endpoint is unknown there; asking its v1 form");
        let input =
            ServerSignaturesInput::new(self.server_name().to_owned(), destination.to_owned(), &self.key.keypair);
        ServerSignatures::add_authentication(&mut v1, input)
            .map_err(|e| FedError::Internal(format!("cannot sign the request: {e}")))?;
        let v1_path = v1.uri().path().to_owned();
        let response = self.send_http(destination, &dest, v1, super::MAX_RESPONSE_BYTES).await?;
        parse_response::<R>(destination, &v1_path, unwrap_v1_answer(destination, response)?)
    }
}

/// The v1 form of a built v2 request, unsigned: `/_matrix/federation/v1/`
/// for `/v2/`, the same method and content type, and `body`.
fn v1_form(v2: &http::Request<Vec<u8>>, body: V1Body) -> Result<http::Request<Vec<u8>>, FedError> {
    let uri = v2.uri().to_string().replacen("/_matrix/federation/v2/", "/_matrix/federation/v1/", 1);
    let body = match body {
        V1Body::SameAsV2 => v2.body().clone(),
        V1Body::Replaced(body) => body,
    };
    let mut request = http::Request::builder().method(v2.method().clone()).uri(uri);
    if let Some(content_type) = v2.headers().get(http::header::CONTENT_TYPE) {
        request = request.header(http::header::CONTENT_TYPE, content_type);
    }
    request.body(body).map_err(|e| FedError::Internal(format!("cannot build the v1 request: {e}")))
}

/// Whether an answer says the server does not know the endpoint asked.
/// There is no one way: Synapse answers 400 `M_UNRECOGNIZED`, older
/// servers 404 (with `M_UNRECOGNIZED`, another body or none) or 405. A 404
/// `M_NOT_FOUND` is about the room, not the endpoint.
fn endpoint_unknown(response: &http::Response<Bytes>) -> bool {
    let status = response.status();
    if !matches!(status, StatusCode::BAD_REQUEST | StatusCode::NOT_FOUND | StatusCode::METHOD_NOT_ALLOWED) {
        return false;
    }
    let kind = match remote_error(status, response.body()) {
        FedError::Remote { kind, .. } => kind,
        _ => ErrorKind::Unknown,
    };
    match status {
        StatusCode::BAD_REQUEST => matches!(kind, ErrorKind::Unrecognized),
        _ => !matches!(kind, ErrorKind::NotFound),
    }
}

/// A v1 answer `[200, body]` as a response with `body`; error answers
/// are left as they are.
fn unwrap_v1_answer(
    destination: &ServerName,
    response: http::Response<Bytes>,
) -> Result<http::Response<Bytes>, FedError> {
    if !response.status().is_success() {
        return Ok(response);
    }
    let (parts, body) = response.into_parts();
    let (_, inner): (serde::de::IgnoredAny, Box<RawValue>) = serde_json::from_slice(&body)
        .map_err(|e| FedError::BadResponse(format!("{destination}: not a v1 answer [200, {{...}}]: {e}")))?;
    Ok(http::Response::from_parts(parts, Bytes::from(inner.get().to_owned())))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(status: u16, body: &str) -> http::Response<Bytes> {
        http::Response::builder().status(status).body(Bytes::from(body.to_owned())).expect("response")
    }

    #[test]
    fn unknown_endpoints_are_told_from_unknown_rooms() {
        assert!(endpoint_unknown(&answer(400, r#"{"errcode":"M_UNRECOGNIZED","error":"no"}"#)));
        assert!(endpoint_unknown(&answer(404, r#"{"errcode":"M_UNRECOGNIZED","error":"no"}"#)));
        assert!(endpoint_unknown(&answer(404, "404 page not found")));
        assert!(endpoint_unknown(&answer(405, "")));
        assert!(!endpoint_unknown(&answer(404, r#"{"errcode":"M_NOT_FOUND","error":"unknown room"}"#)));
        assert!(!endpoint_unknown(&answer(400, r#"{"errcode":"M_BAD_JSON","error":"bad"}"#)));
        assert!(!endpoint_unknown(&answer(403, r#"{"errcode":"M_FORBIDDEN","error":"no"}"#)));
        assert!(!endpoint_unknown(&answer(200, "{}")));
    }

    #[test]
    fn v1_answers_are_unwrapped() {
        let server: &ServerName = "remote.test".try_into().expect("server name");
        let got = unwrap_v1_answer(server, answer(200, r#"[200, {"state": []}]"#)).expect("unwrapped");
        assert_eq!(got.body().as_ref(), br#"{"state": []}"#);
        assert!(unwrap_v1_answer(server, answer(200, r#"{"state": []}"#)).is_err());
        let error = unwrap_v1_answer(server, answer(403, r#"{"errcode":"M_FORBIDDEN"}"#)).expect("left as is");
        assert_eq!(error.status(), 403);
    }
}
