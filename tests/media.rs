//! The content repository: uploads and downloads round-trip byte for byte,
//! thumbnails have the right size, bad ids and oversized files are
//! refused, and files are served so they cannot attack a browser.

#![recursion_limit = "256"]

mod common;

use std::io::Cursor;

use common::{PASSWORD, TestServer, TestUser, assert_error};
use serde_json::{Value, json};

async fn upload(server: &TestServer, user: &TestUser, content_type: &str, name: &str, bytes: Vec<u8>) -> (u16, Value) {
    let resp = server
        .http
        .post(server.url(&format!("/_matrix/media/v3/upload?filename={name}")))
        .bearer_auth(&user.access_token)
        .header("content-type", content_type)
        .body(bytes)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

fn mxc_parts(uri: &str) -> (String, String) {
    let rest = uri.strip_prefix("mxc://").expect("an mxc uri");
    let (server, id) = rest.split_once('/').unwrap();
    (server.to_owned(), id.to_owned())
}

async fn get(server: &TestServer, user: Option<&TestUser>, path: &str) -> reqwest::Response {
    let mut req = server.http.get(server.url(path));
    if let Some(user) = user {
        req = req.bearer_auth(&user.access_token);
    }
    req.send().await.unwrap()
}

fn png(width: u32, height: u32) -> Vec<u8> {
    let img = image::RgbImage::from_fn(width, height, |x, y| image::Rgb([(x % 256) as u8, (y % 256) as u8, 128]));
    let mut out = Vec::new();
    image::DynamicImage::ImageRgb8(img).write_to(&mut Cursor::new(&mut out), image::ImageFormat::Png).unwrap();
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn uploads_download_identically_with_safe_headers() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    let bytes: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let (status, body) = upload(&server, &alice, "image/png", "cat.png", bytes.clone()).await;
    assert_eq!(status, 200, "{body}");
    let (srv, id) = mxc_parts(body["content_uri"].as_str().unwrap());
    assert_eq!(srv, "plexus.test");

    let resp = get(&server, Some(&alice), &format!("/_matrix/client/v1/media/download/{srv}/{id}")).await;
    assert_eq!(resp.status().as_u16(), 200);
    let h = resp.headers().clone();
    assert_eq!(h["content-type"], "image/png");
    assert_eq!(h["content-disposition"], "inline; filename=cat.png");
    assert!(h["content-security-policy"].to_str().unwrap().starts_with("sandbox;"));
    assert_eq!(h["x-content-type-options"], "nosniff");
    assert_eq!(h["cross-origin-resource-policy"], "cross-origin");
    assert_eq!(resp.bytes().await.unwrap().to_vec(), bytes, "identical bytes");

    // Another user may download it too; the file name in the path wins.
    let bob = server.register("bob").await;
    let resp = get(&server, Some(&bob), &format!("/_matrix/client/v1/media/download/{srv}/{id}/other.png")).await;
    assert_eq!(resp.headers()["content-disposition"], "inline; filename=other.png");
    // Authenticated media needs a token.
    let resp = get(&server, None, &format!("/_matrix/client/v1/media/download/{srv}/{id}")).await;
    assert_eq!(resp.status().as_u16(), 401);

    // HTML is never rendered: attachment, sandboxed.
    let (_, html) = upload(&server, &alice, "text/html", "page.html", b"<script>alert(1)</script>".to_vec()).await;
    let (srv, id) = mxc_parts(html["content_uri"].as_str().unwrap());
    let resp = get(&server, Some(&alice), &format!("/_matrix/client/v1/media/download/{srv}/{id}")).await;
    assert!(resp.headers()["content-disposition"].to_str().unwrap().starts_with("attachment"));
    assert!(resp.headers()["content-security-policy"].to_str().unwrap().contains("sandbox"));
    assert_eq!(resp.headers()["x-content-type-options"], "nosniff");

    let (_, config) = server.get("/_matrix/client/v1/media/config", Some(&alice.access_token)).await;
    assert_eq!(config["m.upload.size"], 50 * 1024 * 1024);
}

#[tokio::test(flavor = "multi_thread")]
async fn thumbnails_have_the_requested_size() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    let (_, body) = upload(&server, &alice, "image/png", "big.png", png(2000, 1500)).await;
    let (srv, id) = mxc_parts(body["content_uri"].as_str().unwrap());
    for (method, w, h, expect) in [
        ("scale", 320, 240, (320, 240)),
        ("crop", 320, 240, (320, 240)),
        ("scale", 320, 320, (320, 240)),
        ("crop", 100, 300, (100, 300)),
    ] {
        let path = format!("/_matrix/client/v1/media/thumbnail/{srv}/{id}?width={w}&height={h}&method={method}");
        let resp = get(&server, Some(&alice), &path).await;
        assert_eq!(resp.status().as_u16(), 200, "{method} {w}x{h}");
        assert_eq!(resp.headers()["content-type"], "image/png");
        let bytes = resp.bytes().await.unwrap();
        let thumb = image::load_from_memory(&bytes).unwrap();
        assert_eq!((thumb.width(), thumb.height()), expect, "{method} {w}x{h}");
    }
    // A second request is served from the cache and is identical.
    let path = format!("/_matrix/client/v1/media/thumbnail/{srv}/{id}?width=320&height=240&method=crop");
    let a = get(&server, Some(&alice), &path).await.bytes().await.unwrap();
    let b = get(&server, Some(&alice), &path).await.bytes().await.unwrap();
    assert_eq!(a, b);
    let (_, text) = upload(&server, &alice, "text/plain", "a.txt", b"hello".to_vec()).await;
    let (srv, id) = mxc_parts(text["content_uri"].as_str().unwrap());
    let resp =
        get(&server, Some(&alice), &format!("/_matrix/client/v1/media/thumbnail/{srv}/{id}?width=32&height=32")).await;
    assert_eq!(resp.status().as_u16(), 400, "text cannot be thumbnailed");
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_ids_unknown_media_and_oversized_uploads_are_refused() {
    let server = TestServer::start_with(|c| c.media.max_upload_bytes = 1024 * 1024).await;
    let alice = server.register("alice").await;
    let missing = get(&server, Some(&alice), "/_matrix/client/v1/media/download/plexus.test/nosuchmedia").await;
    let status = missing.status().as_u16();
    assert_error(&(status, missing.json().await.unwrap()), 404, "M_NOT_FOUND");
    // (`%2E%2E` alone never reaches the server: URL parsers resolve it.)
    for bad in ["..%2F..%2Fsigning.key", "a.b", "x%00y", "%2E%2E%2Fx"] {
        let resp = get(&server, Some(&alice), &format!("/_matrix/client/v1/media/download/plexus.test/{bad}")).await;
        let status = resp.status().as_u16();
        assert_error(&(status, resp.json().await.unwrap()), 400, "M_INVALID_PARAM");
    }
    // A declared length over the limit is refused before any byte is read.
    // (Raw HTTP: a client still sending a body may see the connection close
    // before it reads the early answer, so no body is sent here.)
    let mut tcp = tokio::net::TcpStream::connect(server.base_url.trim_start_matches("http://")).await.unwrap();
    let head = format!(
        "POST /_matrix/media/v3/upload HTTP/1.1\r\nHost: plexus.test\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/octet-stream\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        alice.access_token,
        2 * 1024 * 1024
    );
    tokio::io::AsyncWriteExt::write_all(&mut tcp, head.as_bytes()).await.unwrap();
    let mut answer = String::new();
    tokio::io::AsyncReadExt::read_to_string(&mut tcp, &mut answer).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("M_TOO_LARGE"), "{answer}");
    // Without a Content-Length the limit holds while streaming: the server
    // stops reading at the limit and answers 413, or the client sees the
    // connection cut while it is still sending; either way nothing is kept.
    let chunks: Vec<Result<bytes::Bytes, std::io::Error>> =
        (0..40).map(|_| Ok(bytes::Bytes::from(vec![1u8; 64 * 1024]))).collect();
    let sent = server
        .http
        .post(server.url("/_matrix/media/v3/upload"))
        .bearer_auth(&alice.access_token)
        .body(reqwest::Body::wrap_stream(tokio_stream::iter(chunks)))
        .send()
        .await;
    if let Ok(resp) = sent {
        let status = resp.status().as_u16();
        assert_error(&(status, resp.json().await.unwrap()), 413, "M_TOO_LARGE");
    }
    let tmp = server.dir.path().join("media/tmp");
    let leftovers = std::fs::read_dir(&tmp).map(|d| d.count()).unwrap_or(0);
    assert_eq!(leftovers, 0, "refused uploads leave no temporary files");
    let content = server.dir.path().join("media/content");
    assert!(!content.exists() || std::fs::read_dir(&content).unwrap().count() == 0, "nothing was stored");
}

#[tokio::test(flavor = "multi_thread")]
async fn asynchronous_uploads_fill_a_reserved_id_once() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    let bob = server.register("bob").await;
    let (status, created) = server.post("/_matrix/media/v1/create", Some(&alice.access_token), json!({})).await;
    assert_eq!(status, 200, "{created}");
    assert!(created["unused_expires_at"].as_u64().is_some());
    let (srv, id) = mxc_parts(created["content_uri"].as_str().unwrap());
    let early = get(&server, Some(&alice), &format!("/_matrix/client/v1/media/download/{srv}/{id}")).await;
    let status = early.status().as_u16();
    assert_error(&(status, early.json().await.unwrap()), 504, "M_NOT_YET_UPLOADED");

    let put = |user: &TestUser, bytes: &'static [u8]| {
        server
            .http
            .put(server.url(&format!("/_matrix/media/v3/upload/{srv}/{id}?filename=notes.txt")))
            .bearer_auth(user.access_token.clone())
            .header("content-type", "text/plain")
            .body(bytes)
            .send()
    };
    assert_eq!(put(&bob, b"not yours").await.unwrap().status().as_u16(), 403);
    assert_eq!(put(&alice, b"the notes").await.unwrap().status().as_u16(), 200);
    let again = put(&alice, b"overwrite").await.unwrap();
    let status = again.status().as_u16();
    assert_error(&(status, again.json().await.unwrap()), 409, "M_CANNOT_OVERWRITE_MEDIA");
    let resp = get(&server, Some(&bob), &format!("/_matrix/client/v1/media/download/{srv}/{id}")).await;
    assert_eq!(resp.headers()["content-type"], "text/plain; charset=utf-8");
    assert_eq!(resp.text().await.unwrap(), "the notes");
}

#[tokio::test(flavor = "multi_thread")]
async fn legacy_unauthenticated_downloads_follow_the_freeze() {
    let frozen = TestServer::start().await;
    let alice = frozen.register("alice").await;
    let (_, body) = upload(&frozen, &alice, "image/png", "a.png", png(10, 10)).await;
    let (srv, id) = mxc_parts(body["content_uri"].as_str().unwrap());
    let resp = get(&frozen, None, &format!("/_matrix/media/v3/download/{srv}/{id}")).await;
    assert_eq!(resp.status().as_u16(), 404, "new media is frozen out of the legacy endpoints");

    let open = TestServer::start_with(|c| c.media.legacy_unauthenticated_before_ms = i64::MAX).await;
    let alice = open.register("alice").await;
    let (_, body) = upload(&open, &alice, "image/png", "a.png", png(64, 48)).await;
    let (srv, id) = mxc_parts(body["content_uri"].as_str().unwrap());
    let resp = get(&open, None, &format!("/_matrix/media/v3/download/{srv}/{id}")).await;
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(resp.headers()["x-content-type-options"], "nosniff");
    let resp = get(&open, None, &format!("/_matrix/media/r0/thumbnail/{srv}/{id}?width=32&height=24")).await;
    assert_eq!(resp.status().as_u16(), 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn matrix_sdk_uploads_and_downloads_media() {
    use matrix_sdk::media::{MediaFormat, MediaRequestParameters};
    let server = TestServer::start().await;
    server.register("alice").await;
    let client = server.sdk_client().await;
    client.matrix_auth().login_username("alice", PASSWORD).await.unwrap();
    let data = png(40, 30);
    let mime: mime::Mime = "image/png".parse().unwrap();
    let response = client.media().upload(&mime, data.clone(), None).await.expect("sdk upload");
    let request = MediaRequestParameters {
        source: matrix_sdk::ruma::events::room::MediaSource::Plain(response.content_uri),
        format: MediaFormat::File,
    };
    let downloaded = client.media().get_media_content(&request, false).await.expect("sdk download");
    assert_eq!(downloaded, data);
}

/// A tiny web server on loopback for previews to fetch.
async fn web_server() -> String {
    use axum::{Router, response::IntoResponse, routing::get};
    let app = Router::new()
        .route(
            "/page",
            get(|| async {
                (
                    [("content-type", "text/html; charset=utf-8")],
                    r#"<html><head><title>Plain title</title><meta property="og:title" content="A fine page">
                       <meta property="og:description" content="Worth a look"></head><body>hi</body></html>"#,
                )
                    .into_response()
            }),
        )
        .route("/image.png", get(|| async { ([("content-type", "image/png")], png(16, 16)).into_response() }))
        .route("/hop", get(|| async { axum::response::Redirect::temporary("/page") }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}")
}

#[tokio::test(flavor = "multi_thread")]
async fn url_previews_are_off_by_default_and_refuse_internal_addresses() {
    let site = web_server().await;
    let preview = |server: &TestServer, user: &TestUser, url: String| {
        let path = format!("/_matrix/client/v1/media/preview_url?url={}", common::enc(&url));
        let token = user.access_token.clone();
        let http = server.http.clone();
        let full = server.url(&path);
        async move {
            let resp = http.get(full).bearer_auth(token).send().await.unwrap();
            let status = resp.status().as_u16();
            (status, resp.json::<Value>().await.unwrap_or(Value::Null))
        }
    };

    let off = TestServer::start().await;
    let alice = off.register("alice").await;
    assert_error(&preview(&off, &alice, format!("{site}/page")).await, 403, "M_FORBIDDEN");

    let guarded = TestServer::start_with(|c| c.media.url_preview = true).await;
    let alice = guarded.register("alice").await;
    let refused = preview(&guarded, &alice, format!("{site}/page")).await;
    assert_error(&refused, 403, "M_FORBIDDEN");
    assert!(refused.1["error"].as_str().unwrap().contains("address"), "{refused:?}");

    let allowed = TestServer::start_with(|c| {
        c.media.url_preview = true;
        c.media.url_preview_allowed_ranges = vec!["127.0.0.0/8".into()];
    })
    .await;
    let alice = allowed.register("alice").await;
    let (status, page) = preview(&allowed, &alice, format!("{site}/page")).await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["og:title"], "A fine page");
    assert_eq!(page["og:description"], "Worth a look");
    let (_, hopped) = preview(&allowed, &alice, format!("{site}/hop")).await;
    assert_eq!(hopped["og:title"], "A fine page", "redirects are followed");
    let (status, image) = preview(&allowed, &alice, format!("{site}/image.png")).await;
    assert_eq!(status, 200, "{image}");
    let (srv, id) = mxc_parts(image["og:image"].as_str().unwrap());
    let resp = get(&allowed, Some(&alice), &format!("/_matrix/client/v1/media/download/{srv}/{id}")).await;
    assert_eq!(resp.bytes().await.unwrap().to_vec(), png(16, 16), "the previewed image is stored as media");
    let bad = preview(&allowed, &alice, "file:///etc/passwd".into()).await;
    assert_error(&bad, 400, "M_INVALID_PARAM");
}
