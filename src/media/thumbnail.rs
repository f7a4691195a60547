//! Thumbnails (client-server API, "Thumbnails"): `scale` fits the image
//! inside the requested box keeping its aspect ratio, `crop` fills the box
//! exactly and cuts the overflow. Generated once with the `image` crate on
//! the blocking pool, then served from the cache directory.

use std::path::{Path, PathBuf};

use image::{DynamicImage, ImageFormat, ImageReader, Limits, imageops::FilterType};

use super::{Media, MediaError, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Crop,
    Scale,
}

/// The largest thumbnail edge served.
const MAX_EDGE: u32 = 2048;

/// Image types thumbnails can be made of.
const THUMBNAILABLE: &[&str] = &["image/png", "image/jpeg", "image/gif", "image/webp"];

impl Media {
    /// A thumbnail of `(server, media_id)`: `(content type, file)`.
    pub async fn thumbnail(
        &self,
        server: &str,
        media_id: &str,
        width: u32,
        height: u32,
        method: Method,
        legacy: bool,
    ) -> Result<(String, PathBuf)> {
        if width == 0 || height == 0 {
            return Err(MediaError::InvalidParam("width and height must be positive".into()));
        }
        let (width, height) = (width.min(MAX_EDGE), height.min(MAX_EDGE));
        let stored = self.open(server, media_id, legacy).await?;
        let content_type = stored.content_type.clone().unwrap_or_default();
        let essence = content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
        if !THUMBNAILABLE.contains(&essence.as_str()) {
            return Err(MediaError::InvalidParam("this media cannot be thumbnailed".into()));
        }
        let (format, ext, out_type) = match essence.as_str() {
            "image/jpeg" => (ImageFormat::Jpeg, "jpg", "image/jpeg"),
            _ => (ImageFormat::Png, "png", "image/png"),
        };
        let sha = &stored.sha256;
        let method_name = if method == Method::Crop { "crop" } else { "scale" };
        // Thumbnails of another server's file live with its cached copy
        // and count in the remote cache's size.
        let dir = match &stored.remote {
            Some(_) => self.remote_thumbnail_dir(sha),
            None => self.thumbnail_dir(),
        };
        let cached = dir.join(format!("{sha}-{width}x{height}-{method_name}.{ext}"));
        if tokio::fs::try_exists(&cached).await.unwrap_or(false) {
            return Ok((out_type.to_owned(), cached));
        }
        tokio::fs::create_dir_all(&dir).await?;
        let (source, target) = (stored.path.clone(), cached.clone());
        let made = tokio::task::spawn_blocking(move || render(&source, &target, width, height, method, format))
            .await
            .map_err(|e| MediaError::Upload(format!("thumbnail task failed: {e}")))??;
        if let Some((origin, media_id)) = &stored.remote {
            self.remote_thumbnail_made(origin, media_id, made).await?;
        }
        Ok((out_type.to_owned(), cached))
    }
}

fn decode(source: &Path) -> Result<DynamicImage> {
    let mut reader = ImageReader::open(source)?.with_guessed_format()?;
    // Refuse decompression bombs.
    let mut limits = Limits::default();
    limits.max_image_width = Some(16_384);
    limits.max_image_height = Some(16_384);
    limits.max_alloc = Some(512 * 1024 * 1024);
    reader.limits(limits);
    reader.decode().map_err(|e| MediaError::InvalidParam(format!("cannot decode the image: {e}")))
}

/// Makes the thumbnail; returns its size in bytes.
fn render(source: &Path, target: &Path, width: u32, height: u32, method: Method, format: ImageFormat) -> Result<u64> {
    let image = decode(source)?;
    let thumb = match method {
        // Never upscale: a box larger than the image keeps the image size.
        Method::Scale if width >= image.width() && height >= image.height() => image,
        Method::Scale => image.resize(width, height, FilterType::Triangle),
        Method::Crop => image.resize_to_fill(width, height, FilterType::Triangle),
    };
    let thumb = if format == ImageFormat::Jpeg { DynamicImage::ImageRgb8(thumb.to_rgb8()) } else { thumb };
    let tmp = target.with_extension("tmp");
    thumb
        .save_with_format(&tmp, format)
        .map_err(|e| MediaError::Upload(format!("cannot encode the thumbnail: {e}")))?;
    let size = std::fs::metadata(&tmp)?.len();
    std::fs::rename(&tmp, target)?;
    Ok(size)
}
