//! Frame images for the viewer: the stored bytes of one frame, and a
//! thumbnail made here (so a timeline of a long session moves a few KB per
//! frame, not full screenshots). Both are immutable (a sealed frame never
//! changes) and served with a long cache lifetime.

use axum::http::header;
use axum::response::{IntoResponse, Response};
use datafusion::prelude::SessionContext;

use super::page::{checked_id, ViewError};

/// Width of timeline thumbnails, in pixels.
pub(crate) const THUMB_WIDTH: u32 = 200;

/// The stored image of frame `idx` of `session_id` and its MIME type.
pub(crate) async fn frame_image(
    ctx: &SessionContext,
    session_id: &str,
    idx: i64,
) -> Result<(Vec<u8>, &'static str), ViewError> {
    use arrow::array::AsArray;
    let id = checked_id(session_id)?;
    let sql = format!(
        "SELECT image, image_format FROM frames WHERE session_id = '{id}' AND frame_idx = {idx}"
    );
    let batches = ctx.sql(&sql).await?.collect().await?;
    let Some(b) = batches.iter().find(|b| b.num_rows() > 0) else {
        return Err(ViewError::not_found(format!(
            "no frame {idx} in session {id} of this store"
        )));
    };
    let image = b.column(0).as_binary::<i32>().value(0).to_vec();
    let mime = mime_of(b.column(1).as_string::<i32>().value(0));
    Ok((image, mime))
}

/// MIME type of an `image_format` (or a file extension).
pub(crate) fn mime_of(format: &str) -> &'static str {
    match format.to_ascii_lowercase().as_str() {
        "jpeg" | "jpg" => "image/jpeg",
        "webp" => "image/webp",
        _ => "image/png",
    }
}

/// MIME type of image bytes, by their magic number.
pub(crate) fn sniff(bytes: &[u8]) -> &'static str {
    match bytes {
        [0xFF, 0xD8, ..] => "image/jpeg",
        [b'R', b'I', b'F', b'F', _, _, _, _, b'W', b'E', b'B', b'P', ..] => "image/webp",
        _ => "image/png",
    }
}

/// A PNG of `image` scaled to `width` pixels wide.
pub(crate) fn thumbnail(image: &[u8], width: u32) -> Result<Vec<u8>, ViewError> {
    let decoded = image::load_from_memory(image).map_err(|e| ViewError {
        status: axum::http::StatusCode::UNPROCESSABLE_ENTITY,
        message: format!("the frame image does not decode: {e}"),
    })?;
    let height = ((decoded.height() as f64) * width as f64 / decoded.width().max(1) as f64)
        .round()
        .max(1.0) as u32;
    let small = decoded.thumbnail_exact(width, height);
    let mut out = std::io::Cursor::new(Vec::new());
    small
        .write_to(&mut out, image::ImageFormat::Png)
        .map_err(|e| ViewError {
            status: axum::http::StatusCode::INTERNAL_SERVER_ERROR,
            message: format!("thumbnail: {e}"),
        })?;
    Ok(out.into_inner())
}

/// `bytes` as an immutable image response.
pub(crate) fn image_response(bytes: Vec<u8>, mime: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, mime),
            (
                header::CACHE_CONTROL,
                "private, max-age=31536000, immutable",
            ),
        ],
        bytes,
    )
        .into_response()
}
