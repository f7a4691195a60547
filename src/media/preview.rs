//! URL previews (client-server API, "`GET /preview_url`"): off unless the
//! operator turns them on, and even then the server refuses to fetch from
//! loopback, private, link-local and other internal addresses (unless an
//! allowed range says otherwise), so clients cannot use it to probe the
//! server's network. Each hop's resolved addresses are checked and the
//! connection is pinned to them; redirects are followed by hand.

use std::{
    net::{IpAddr, SocketAddr},
    time::{Duration, Instant},
};

use futures_util::StreamExt;
use ruma::UserId;
use serde_json::{Map, Value, json};

use super::{Media, MediaError, Result};
use crate::address_policy::{AddressPolicy, parse_ranges};

const MAX_REDIRECTS: usize = 3;
const MAX_BODY: usize = 2 * 1024 * 1024;
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);
const CACHE_FOR: Duration = Duration::from_secs(3600);

impl Media {
    fn address_allowed(&self, ip: IpAddr) -> bool {
        let allowed_ranges = parse_ranges(&self.config.media.url_preview_allowed_ranges).unwrap_or_default();
        AddressPolicy { allowed_ranges, allow_loopback: false }.allows(ip)
    }

    /// Previews `url` for `user`: Open Graph data of an HTML page, or an
    /// image stored as media.
    pub async fn preview_url(&self, user: &UserId, url: &str) -> Result<Value> {
        if !self.config.media.url_preview {
            return Err(MediaError::Forbidden("URL previews are disabled on this server".into()));
        }
        if let Some((at, value)) = self.previews.get(url)
            && at.elapsed() < CACHE_FOR
        {
            return Ok(value);
        }
        let mut current =
            reqwest::Url::parse(url).map_err(|e| MediaError::InvalidParam(format!("invalid URL: {e}")))?;
        for _ in 0..=MAX_REDIRECTS {
            if !matches!(current.scheme(), "http" | "https") {
                return Err(MediaError::InvalidParam("only http and https URLs can be previewed".into()));
            }
            let host =
                current.host_str().ok_or_else(|| MediaError::InvalidParam("the URL has no host".into()))?.to_owned();
            let port = current.port_or_known_default().unwrap_or(80);
            let bare = host.trim_start_matches('[').trim_end_matches(']').to_owned();
            let addrs: Vec<SocketAddr> = match bare.parse::<IpAddr>() {
                Ok(ip) => vec![SocketAddr::new(ip, port)],
                Err(_) => tokio::net::lookup_host((bare.as_str(), port))
                    .await
                    .map_err(|e| MediaError::NotFound(format!("cannot resolve {bare}: {e}")))?
                    .collect(),
            };
            if addrs.is_empty() || addrs.iter().any(|a| !self.address_allowed(a.ip())) {
                return Err(MediaError::Forbidden("the URL points to an address this server may not fetch".into()));
            }
            let client = reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .timeout(FETCH_TIMEOUT)
                .resolve_to_addrs(&bare, &addrs)
                .user_agent("Plexus URL preview")
                .build()
                .map_err(|e| MediaError::Upload(e.to_string()))?;
            let response = client
                .get(current.clone())
                .send()
                .await
                .map_err(|e| MediaError::NotFound(format!("cannot fetch: {e}")))?;
            if response.status().is_redirection() {
                let location = response
                    .headers()
                    .get(reqwest::header::LOCATION)
                    .and_then(|l| l.to_str().ok())
                    .ok_or_else(|| MediaError::NotFound("a redirect without a location".into()))?;
                current = current.join(location).map_err(|e| MediaError::NotFound(format!("bad redirect: {e}")))?;
                continue;
            }
            if !response.status().is_success() {
                return Err(MediaError::NotFound(format!("the page answered {}", response.status())));
            }
            let content_type = response
                .headers()
                .get(reqwest::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_ascii_lowercase();
            let body = read_capped(response).await?;
            let value = if content_type.starts_with("image/") {
                let size = body.len();
                let chunk: std::result::Result<bytes::Bytes, std::io::Error> = Ok(bytes::Bytes::from(body));
                let uri =
                    self.upload(user, Some(content_type.clone()), None, futures_util::stream::iter([chunk])).await?;
                json!({"og:image": uri, "og:image:type": content_type, "matrix:image:size": size})
            } else if content_type.starts_with("text/html") {
                open_graph(&String::from_utf8_lossy(&body), &current)
            } else {
                json!({})
            };
            self.previews.insert(url.to_owned(), (Instant::now(), value.clone()));
            return Ok(value);
        }
        Err(MediaError::NotFound("too many redirects".into()))
    }
}

async fn read_capped(response: reqwest::Response) -> Result<Vec<u8>> {
    let mut body = Vec::new();
    let mut stream = response.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| MediaError::NotFound(format!("cannot read the page: {e}")))?;
        body.extend_from_slice(&chunk);
        if body.len() > MAX_BODY {
            return Err(MediaError::TooLarge(MAX_BODY as u64));
        }
    }
    Ok(body)
}

/// `og:*` properties of a page, with `<title>` and the meta description as
/// fallbacks (parsed with `scraper`).
fn open_graph(html: &str, base: &reqwest::Url) -> Value {
    let doc = scraper::Html::parse_document(html);
    let mut out = Map::new();
    let meta = scraper::Selector::parse("meta").expect("a valid selector");
    for element in doc.select(&meta) {
        let attrs = element.value();
        let key = attrs.attr("property").or_else(|| attrs.attr("name")).unwrap_or("");
        let Some(content) = attrs.attr("content") else { continue };
        if key.starts_with("og:") && !out.contains_key(key) {
            let value = if key == "og:image" || key == "og:url" {
                base.join(content).map(|u| u.to_string()).unwrap_or_else(|_| content.to_owned())
            } else {
                content.to_owned()
            };
            out.insert(key.to_owned(), Value::String(value));
        } else if key == "description" && !out.contains_key("og:description") {
            out.insert("og:description".into(), Value::String(content.to_owned()));
        }
    }
    if !out.contains_key("og:title") {
        let title = scraper::Selector::parse("title").expect("a valid selector");
        if let Some(t) = doc.select(&title).next() {
            let text = t.text().collect::<String>().trim().to_owned();
            if !text.is_empty() {
                out.insert("og:title".into(), Value::String(text));
            }
        }
    }
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_graph_reads_meta_and_falls_back_to_title() {
        let base = reqwest::Url::parse("https://example.org/post/1").unwrap();
        let html = r#"<html><head><title> Fallback </title><meta property="og:description" content="About it">
            <meta property="og:image" content="/img.png"></head></html>"#;
        let og = open_graph(html, &base);
        assert_eq!(og["og:title"], "Fallback");
        assert_eq!(og["og:description"], "About it");
        assert_eq!(og["og:image"], "https://example.org/img.png");
    }
}
