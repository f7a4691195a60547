//! Serving uploaded files without letting them attack a browser: only a
//! fixed list of harmless types may render inline, everything else is an
//! attachment; a sandboxing Content-Security-Policy and `nosniff` always;
//! file names sanitised by ruma's `Content-Disposition` encoder.

use ruma::http_headers::{ContentDisposition, ContentDispositionType};

/// Types a browser may show in place: images, audio, video, plain text.
/// Everything else (HTML, SVG, JavaScript, PDF...) is downloaded.
const INLINE_TYPES: &[&str] = &[
    "text/plain",
    "text/csv",
    "image/jpeg",
    "image/png",
    "image/gif",
    "image/webp",
    "image/apng",
    "image/avif",
    "video/mp4",
    "video/webm",
    "video/ogg",
    "video/quicktime",
    "audio/mp4",
    "audio/webm",
    "audio/aac",
    "audio/mpeg",
    "audio/ogg",
    "audio/wav",
    "audio/x-wav",
    "audio/flac",
];

/// Spec: "Security considerations" of the content repository.
pub const CONTENT_SECURITY_POLICY: &str = "sandbox; default-src 'none'; script-src 'none'; plugin-types application/pdf; style-src 'unsafe-inline'; media-src 'self'; object-src 'self';";

/// The headers a downloaded file is served with.
#[derive(Debug, Clone)]
pub struct ServedHeaders {
    pub content_type: String,
    pub content_disposition: String,
}

/// Headers for a file of `content_type` named `filename`.
pub fn served_headers(content_type: Option<&str>, filename: Option<&str>) -> ServedHeaders {
    let content_type = content_type
        .filter(|ct| !ct.is_empty() && ct.is_ascii() && !ct.contains(['\r', '\n']))
        .unwrap_or("application/octet-stream")
        .to_owned();
    let essence = content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    let inline = INLINE_TYPES.contains(&essence.as_str());
    let kind = if inline { ContentDispositionType::Inline } else { ContentDispositionType::Attachment };
    let filename = filename.map(sanitise_filename).filter(|f| !f.is_empty());
    let disposition = ContentDisposition::new(kind).with_filename(filename).to_string();
    // Text is served as UTF-8 plain text whatever the uploader claimed.
    let content_type =
        if essence.starts_with("text/") && inline { format!("{essence}; charset=utf-8") } else { content_type };
    ServedHeaders { content_type, content_disposition: disposition }
}

/// Drops path separators and control characters from a file name.
fn sanitise_filename(name: &str) -> String {
    let name = name.rsplit(['/', '\\']).next().unwrap_or("");
    name.chars().filter(|c| !c.is_control()).take(255).collect::<String>().trim().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_is_an_attachment_and_images_are_inline() {
        let html = served_headers(Some("text/html"), Some("evil.html"));
        assert!(html.content_disposition.starts_with("attachment"), "{html:?}");
        let png = served_headers(Some("image/png"), Some("cat.png"));
        assert!(png.content_disposition.starts_with("inline"), "{png:?}");
        assert_eq!(served_headers(None, None).content_type, "application/octet-stream");
        let svg = served_headers(Some("image/svg+xml"), None);
        assert!(svg.content_disposition.starts_with("attachment"));
    }

    #[test]
    fn filenames_lose_paths_and_control_characters() {
        assert_eq!(sanitise_filename("../../etc/passwd"), "passwd");
        assert_eq!(sanitise_filename("a\r\nb.txt"), "ab.txt");
        let h = served_headers(Some("text/plain"), Some("na\"me\r\n.txt"));
        assert!(!h.content_disposition.contains('\n'), "{h:?}");
    }
}
