//! Media across servers: a file uploaded on one Plexus is downloaded
//! through another (over the federation media endpoint, signed), served
//! from the second server's cache once fetched, thumbnailed there, and
//! evicted when the cache is full; a server that does not know the
//! federation endpoint is asked over the legacy download instead.

mod common;

use std::{
    io::Cursor,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
};

use common::{TestServer, TestUser, assert_error, free_port, make_test_certs};
use serde_json::Value;

type Certs = (std::path::PathBuf, std::path::PathBuf, std::path::PathBuf);

/// A federating server named `localhost:PORT`; returns it and its name.
async fn start_server(certs: &Certs, adjust: impl Fn(&mut plexus::config::Config)) -> (TestServer, String) {
    for _ in 0..20 {
        let port = free_port();
        let (ca, cert, key) = certs.clone();
        let name = format!("localhost:{port}");
        let started = TestServer::try_start_with(|c| {
            c.server.server_name = name.clone().try_into().unwrap();
            c.federation.enabled = true;
            c.federation.listen = vec![format!("127.0.0.1:{port}").parse().unwrap()];
            c.federation.tls_cert = Some(cert);
            c.federation.tls_key = Some(key);
            c.federation.extra_ca_files = vec![ca];
            c.federation.allow_loopback = true;
            adjust(c);
        })
        .await;
        match started {
            Ok(server) => return (server, name),
            Err(plexus::StartError::Listen { .. }) => continue,
            Err(e) => panic!("server starts: {e}"),
        }
    }
    panic!("no free port for a federation listener");
}

async fn upload(server: &TestServer, user: &TestUser, content_type: &str, name: &str, bytes: Vec<u8>) -> String {
    let resp = server
        .http
        .post(server.url(&format!("/_matrix/media/v3/upload?filename={name}")))
        .bearer_auth(&user.access_token)
        .header("content-type", content_type)
        .body(bytes)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let body: Value = resp.json().await.unwrap();
    let uri = body["content_uri"].as_str().expect("content_uri");
    uri.rsplit('/').next().unwrap().to_owned()
}

/// `GET path` with `user`'s token: status, headers, body.
async fn fetch(server: &TestServer, user: Option<&TestUser>, path: &str) -> (u16, reqwest::header::HeaderMap, Vec<u8>) {
    let mut req = server.http.get(server.url(path));
    if let Some(user) = user {
        req = req.bearer_auth(&user.access_token);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    (status, headers, resp.bytes().await.unwrap().to_vec())
}

/// A Matrix error answer: asserts status and errcode.
#[track_caller]
fn assert_matrix_error(got: &(u16, reqwest::header::HeaderMap, Vec<u8>), status: u16, errcode: &str) {
    let body: Value = serde_json::from_slice(&got.2).unwrap_or(Value::Null);
    assert_error(&(got.0, body), status, errcode);
}

fn png(width: u32, height: u32) -> Vec<u8> {
    let img = image::RgbImage::from_fn(width, height, |x, y| image::Rgb([(x % 256) as u8, (y % 256) as u8, 90]));
    let mut out = Vec::new();
    image::DynamicImage::ImageRgb8(img).write_to(&mut Cursor::new(&mut out), image::ImageFormat::Png).unwrap();
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn media_of_another_server_is_fetched_once_and_served_from_the_cache() {
    let certs_dir = tempfile::tempdir().unwrap();
    let certs = make_test_certs(certs_dir.path());
    let (mut a, a_name) = start_server(&certs, |_| {}).await;
    let (b, _) = start_server(&certs, |_| {}).await;
    let alice = a.register("alice").await;
    let bob = b.register("bob").await;

    let text: Vec<u8> = (0..200_000u32).map(|i| b'a' + (i % 26) as u8).collect();
    let text_id = upload(&a, &alice, "text/plain", "notes.txt", text.clone()).await;
    let image = png(120, 80);
    let image_id = upload(&a, &alice, "image/png", "cat.png", image.clone()).await;

    // Through bob's server: the same bytes, type and name, served with the
    // safe headers of local media.
    let got = fetch(&b, Some(&bob), &format!("/_matrix/client/v1/media/download/{a_name}/{text_id}")).await;
    assert_eq!(got.0, 200, "{}", String::from_utf8_lossy(&got.2));
    assert_eq!(got.1["content-type"], "text/plain; charset=utf-8");
    assert_eq!(got.1["content-disposition"], "inline; filename=notes.txt");
    assert_eq!(got.1["x-content-type-options"], "nosniff");
    assert!(got.1["content-security-policy"].to_str().unwrap().starts_with("sandbox;"));
    assert_eq!(got.2, text, "identical bytes");
    let got = fetch(&b, Some(&bob), &format!("/_matrix/client/v1/media/download/{a_name}/{image_id}")).await;
    assert_eq!((got.0, got.1["content-type"].to_str().unwrap()), (200, "image/png"));
    assert_eq!(got.2, image);

    // Media the other server does not have: its 404.
    let missing = fetch(&b, Some(&bob), &format!("/_matrix/client/v1/media/download/{a_name}/nosuchmedia")).await;
    assert_matrix_error(&missing, 404, "M_NOT_FOUND");

    // The other server is gone: what was fetched is still served, from
    // the cache, and so are thumbnails made of it here.
    a.stop().await;
    let got = fetch(&b, Some(&bob), &format!("/_matrix/client/v1/media/download/{a_name}/{text_id}")).await;
    assert_eq!(got.0, 200);
    assert_eq!(got.2, text, "served from the cache");
    let got =
        fetch(&b, Some(&bob), &format!("/_matrix/client/v1/media/download/{a_name}/{image_id}/renamed.png")).await;
    assert_eq!((got.0, got.1["content-disposition"].to_str().unwrap()), (200, "inline; filename=renamed.png"));
    let got = fetch(
        &b,
        Some(&bob),
        &format!("/_matrix/client/v1/media/thumbnail/{a_name}/{image_id}?width=30&height=20&method=scale"),
    )
    .await;
    assert_eq!((got.0, got.1["content-type"].to_str().unwrap()), (200, "image/png"));
    let thumb = image::load_from_memory(&got.2).expect("a decodable thumbnail");
    assert_eq!((thumb.width(), thumb.height()), (30, 20));
    // What was never fetched cannot be had now: a 502, as Synapse answers.
    let gone = fetch(&b, Some(&bob), &format!("/_matrix/client/v1/media/download/{a_name}/neverfetched")).await;
    assert_matrix_error(&gone, 502, "M_UNKNOWN");

    // The copies live apart from local content.
    let remote_dir = b.dir.path().join("media/remote");
    assert!(remote_dir.exists(), "b keeps the copies under media/remote");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_federation_media_endpoints_need_a_signature_and_serve_only_local_media() {
    let certs_dir = tempfile::tempdir().unwrap();
    let certs = make_test_certs(certs_dir.path());
    let (a, a_name) = start_server(&certs, |_| {}).await;
    let alice = a.register("alice").await;
    let id = upload(&a, &alice, "image/png", "cat.png", png(20, 20)).await;
    let ca = reqwest::Certificate::from_pem(&std::fs::read(&certs.0).unwrap()).unwrap();
    let http = reqwest::Client::builder().add_root_certificate(ca).build().unwrap();
    for path in [
        format!("/_matrix/federation/v1/media/download/{id}"),
        format!("/_matrix/federation/v1/media/thumbnail/{id}?width=10&height=10"),
    ] {
        let resp = http.get(format!("https://{a_name}{path}")).send().await.unwrap();
        let status = resp.status().as_u16();
        assert_error(&(status, resp.json().await.unwrap()), 401, "M_UNAUTHORIZED");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn signed_requests_get_multipart_answers_ruma_can_read() {
    use ruma::api::federation::authenticated_media::{FileOrLocation, get_content, get_content_thumbnail};
    let certs_dir = tempfile::tempdir().unwrap();
    let certs = make_test_certs(certs_dir.path());
    let (a, a_name) = start_server(&certs, |_| {}).await;
    let (b, _) = start_server(&certs, |_| {}).await;
    let alice = a.register("alice").await;
    let id = upload(&a, &alice, "image/png", "cat.png", png(60, 40)).await;
    let a_server: ruma::OwnedServerName = a_name.clone().try_into().unwrap();
    let federation = &b.services().federation;

    let got = federation.request(&a_server, get_content::v1::Request::new(id.clone())).await.expect("a file");
    let FileOrLocation::File(file) = got.content else { panic!("the bytes, not a location") };
    assert_eq!(file.file, png(60, 40));
    assert_eq!(file.content_type.as_deref(), Some("image/png"));
    assert_eq!(file.content_disposition.and_then(|d| d.filename).as_deref(), Some("cat.png"));

    let request = get_content_thumbnail::v1::Request::new(id.clone(), 30u32.into(), 20u32.into());
    let got = federation.request(&a_server, request).await.expect("a thumbnail");
    let FileOrLocation::File(file) = got.content else { panic!("the bytes, not a location") };
    assert_eq!(file.content_type.as_deref(), Some("image/png"));
    let thumb = image::load_from_memory(&file.file).unwrap();
    assert_eq!((thumb.width(), thumb.height()), (30, 20));

    // Not found is the spec's 404.
    let missing = federation.request(&a_server, get_content::v1::Request::new("nosuchmedia".into())).await;
    assert!(
        matches!(&missing, Err(plexus::federation::FedError::Remote { status, kind, .. })
            if status.as_u16() == 404 && *kind == ruma::api::error::ErrorKind::NotFound),
        "{missing:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_remote_cache_evicts_the_least_recently_used_beyond_its_size() {
    let certs_dir = tempfile::tempdir().unwrap();
    let certs = make_test_certs(certs_dir.path());
    let (mut a, a_name) = start_server(&certs, |_| {}).await;
    // Room for two of the three files.
    let (b, _) = start_server(&certs, |c| c.media.remote_cache_max_bytes = 25_000).await;
    let alice = a.register("alice").await;
    let bob = b.register("bob").await;
    let mut ids = Vec::new();
    for n in 0..3u8 {
        ids.push(upload(&a, &alice, "application/octet-stream", "blob", vec![n; 10_000]).await);
    }
    for id in &ids {
        let got = fetch(&b, Some(&bob), &format!("/_matrix/client/v1/media/download/{a_name}/{id}")).await;
        assert_eq!(got.0, 200);
    }
    a.stop().await;
    let oldest = fetch(&b, Some(&bob), &format!("/_matrix/client/v1/media/download/{a_name}/{}", ids[0])).await;
    assert_matrix_error(&oldest, 502, "M_UNKNOWN");
    for (n, id) in ids.iter().enumerate().skip(1) {
        let got = fetch(&b, Some(&bob), &format!("/_matrix/client/v1/media/download/{a_name}/{id}")).await;
        assert_eq!((got.0, got.2), (200, vec![n as u8; 10_000]), "file {n} is still cached");
    }
    let files = walk_files(&b.dir.path().join("media/remote"));
    assert_eq!(files, 2, "the evicted file is deleted");
}

fn walk_files(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir)
        .map(|entries| entries.flatten().map(|e| if e.path().is_dir() { walk_files(&e.path()) } else { 1 }).sum())
        .unwrap_or(0)
}

/// A server that predates the federation media endpoint: 404
/// `M_UNRECOGNIZED` there, the file over `/_matrix/media/v3/download`;
/// except for two ids, which it answers on the federation endpoint with a
/// `Location`: `redirected` to its own `/cdn/cat.png`, `internal` to a
/// private address.
async fn legacy_server(certs: &Certs, requests: Arc<AtomicUsize>) -> String {
    use axum::{Router, extract::Path, http::StatusCode, response::IntoResponse, routing::get};
    plexus::federation::tls::install_crypto_provider();
    let tls = axum_server::tls_rustls::RustlsConfig::from_pem_file(&certs.1, &certs.2).await.unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let legacy = move |Path((server, id)): Path<(String, String)>| {
        let requests = requests.clone();
        async move {
            requests.fetch_add(1, Ordering::SeqCst);
            if id != "oldmedia" || !server.starts_with("localhost:") {
                let body = axum::Json(serde_json::json!({"errcode": "M_NOT_FOUND", "error": "no such media"}));
                return (StatusCode::NOT_FOUND, body).into_response();
            }
            ([("content-type", "image/png"), ("content-disposition", "attachment; filename=\"old.png\"")], png(40, 40))
                .into_response()
        }
    };
    let located = move |Path(id): Path<String>| async move {
        let location = match id.as_str() {
            "redirected" => format!("https://localhost:{port}/cdn/cat.png"),
            "internal" => "http://10.0.0.1/cat.png".to_owned(),
            _ => {
                let body = axum::Json(serde_json::json!({"errcode": "M_UNRECOGNIZED", "error": "Unrecognized"}));
                return (StatusCode::NOT_FOUND, body).into_response();
            }
        };
        let body = format!(
            "\r\n--xyz\r\nContent-Type: application/json\r\n\r\n{{}}\r\n--xyz\r\nLocation: {location}\r\n\r\n\r\n--xyz--\r\n"
        );
        ([("content-type", "multipart/mixed; boundary=xyz")], body).into_response()
    };
    let app = Router::new()
        .route("/_matrix/media/v3/download/{server}/{id}", get(legacy))
        .route("/_matrix/federation/v1/media/download/{id}", get(located))
        .route("/cdn/cat.png", get(|| async { ([("content-type", "image/png")], png(24, 24)) }))
        .fallback(|| async {
            let body = axum::Json(serde_json::json!({"errcode": "M_UNRECOGNIZED", "error": "Unrecognized request"}));
            (StatusCode::NOT_FOUND, body)
        });
    let server = axum_server::from_tcp_rustls(listener, tls).unwrap();
    tokio::spawn(async move { server.serve(app.into_make_service()).await });
    format!("localhost:{port}")
}

#[tokio::test(flavor = "multi_thread")]
async fn servers_without_the_federation_endpoint_are_asked_over_the_legacy_download() {
    let certs_dir = tempfile::tempdir().unwrap();
    let certs = make_test_certs(certs_dir.path());
    let requests = Arc::new(AtomicUsize::new(0));
    let old_name = legacy_server(&certs, requests.clone()).await;
    let (b, _) = start_server(&certs, |c| c.media.legacy_unauthenticated_before_ms = i64::MAX).await;
    let bob = b.register("bob").await;

    let got = fetch(&b, Some(&bob), &format!("/_matrix/client/v1/media/download/{old_name}/oldmedia")).await;
    assert_eq!(got.0, 200, "{}", String::from_utf8_lossy(&got.2));
    assert_eq!(got.1["content-type"], "image/png");
    assert_eq!(got.1["content-disposition"], "inline; filename=old.png");
    assert_eq!(got.2, png(40, 40));
    assert_eq!(requests.load(Ordering::SeqCst), 1, "one legacy download");

    // Cached: neither the download again nor a thumbnail asks the server.
    let again = fetch(&b, Some(&bob), &format!("/_matrix/client/v1/media/download/{old_name}/oldmedia")).await;
    assert_eq!((again.0, again.2), (200, png(40, 40)));
    let thumb =
        fetch(&b, Some(&bob), &format!("/_matrix/client/v1/media/thumbnail/{old_name}/oldmedia?width=16&height=16"))
            .await;
    assert_eq!(thumb.0, 200);
    let thumb = image::load_from_memory(&thumb.2).unwrap();
    assert_eq!((thumb.width(), thumb.height()), (16, 16));
    // The legacy client routes serve other servers' media too (the freeze
    // is lifted on this server).
    let legacy = fetch(&b, None, &format!("/_matrix/media/v3/download/{old_name}/oldmedia")).await;
    assert_eq!((legacy.0, legacy.2), (200, png(40, 40)));
    assert_eq!(requests.load(Ordering::SeqCst), 1, "everything after the first came from the cache");

    // Its 404 for unknown media is a 404 here.
    let missing = fetch(&b, Some(&bob), &format!("/_matrix/client/v1/media/download/{old_name}/unknown")).await;
    assert_matrix_error(&missing, 404, "M_NOT_FOUND");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_location_answer_is_followed_unless_it_points_inside() {
    let certs_dir = tempfile::tempdir().unwrap();
    let certs = make_test_certs(certs_dir.path());
    let requests = Arc::new(AtomicUsize::new(0));
    let remote = legacy_server(&certs, requests.clone()).await;
    let (b, _) = start_server(&certs, |_| {}).await;
    let bob = b.register("bob").await;
    let got = fetch(&b, Some(&bob), &format!("/_matrix/client/v1/media/download/{remote}/redirected")).await;
    assert_eq!(got.0, 200, "{}", String::from_utf8_lossy(&got.2));
    assert_eq!((got.1["content-type"].to_str().unwrap(), got.2), ("image/png", png(24, 24)));
    // A private address is not this server's to fetch from (only loopback
    // is allowed here): a 502, and no fallback to the legacy download.
    let refused = fetch(&b, Some(&bob), &format!("/_matrix/client/v1/media/download/{remote}/internal")).await;
    assert_matrix_error(&refused, 502, "M_UNKNOWN");
    let message = String::from_utf8_lossy(&refused.2).into_owned();
    assert!(message.contains("not an address this server may contact"), "refused before connecting: {message}");
    assert_eq!(requests.load(Ordering::SeqCst), 0, "the legacy download was never asked");
}

#[tokio::test(flavor = "multi_thread")]
async fn legacy_routes_do_not_fetch_remote_media_after_the_freeze() {
    let certs_dir = tempfile::tempdir().unwrap();
    let certs = make_test_certs(certs_dir.path());
    let requests = Arc::new(AtomicUsize::new(0));
    let old_name = legacy_server(&certs, requests.clone()).await;
    let (b, _) = start_server(&certs, |_| {}).await;
    let frozen = fetch(&b, None, &format!("/_matrix/media/v3/download/{old_name}/oldmedia")).await;
    assert_matrix_error(&frozen, 404, "M_NOT_FOUND");
    assert_eq!(requests.load(Ordering::SeqCst), 0, "nothing was fetched");
}
