//! What sealing learns from a frame image: its format, size and a 64-bit
//! perceptual difference hash (dHash), and the keyframe rule built on that
//! hash. Decoding proves the file is a usable PNG or JPEG; the bytes
//! themselves are stored unchanged.

use image::imageops::FilterType;

/// Frames whose dHash differs from the previous frame's in more than this many
/// of its 64 bits count as a material screen change, hence a keyframe
/// (SPEC §4 `keyframes_only`), unless the bundle sets `keyframe` itself.
pub const KEYFRAME_HASH_DISTANCE: u32 = 5;

/// Image container format of a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ImageFormat {
    /// Portable Network Graphics.
    Png,
    /// JPEG/JFIF.
    Jpeg,
}

impl ImageFormat {
    /// `png` or `jpeg`, as stored in `frames.image_format`.
    pub fn as_str(self) -> &'static str {
        match self {
            ImageFormat::Png => "png",
            ImageFormat::Jpeg => "jpeg",
        }
    }

    /// File extension used in WebDataset shards (`png` / `jpg`).
    pub fn extension(self) -> &'static str {
        match self {
            ImageFormat::Png => "png",
            ImageFormat::Jpeg => "jpg",
        }
    }

    /// The format a `frames.image_format` value names (`png`, `jpeg`).
    pub fn from_name(name: &str) -> Option<Self> {
        [ImageFormat::Png, ImageFormat::Jpeg]
            .into_iter()
            .find(|f| f.as_str() == name)
    }

    /// The format of a stored `image_format` value: `jpeg` is JPEG, any
    /// other value PNG (sealing writes only these two).
    pub fn of_column(name: &str) -> Self {
        Self::from_name(name).unwrap_or(ImageFormat::Png)
    }

    /// `image/png` or `image/jpeg`.
    pub fn mime(self) -> &'static str {
        match self {
            ImageFormat::Png => "image/png",
            ImageFormat::Jpeg => "image/jpeg",
        }
    }

    /// The `image` crate's codec for it.
    pub(crate) fn codec(self) -> image::ImageFormat {
        match self {
            ImageFormat::Png => image::ImageFormat::Png,
            ImageFormat::Jpeg => image::ImageFormat::Jpeg,
        }
    }
}

/// Facts about one decoded frame image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrameImage {
    /// PNG or JPEG, from the file's magic bytes.
    pub format: ImageFormat,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// 64-bit difference hash of a 9×8 grayscale thumbnail.
    pub dhash: u64,
}

impl FrameImage {
    /// Decodes `bytes` fully (so a truncated or corrupt file is refused) and
    /// measures it.
    ///
    /// ```
    /// use nusomi_export::store::FrameImage;
    /// assert!(FrameImage::probe(b"not an image").is_err());
    /// ```
    pub fn probe(bytes: &[u8]) -> Result<FrameImage, String> {
        Self::probe_within(bytes, u32::MAX)
    }

    /// [`FrameImage::probe`], refusing an image wider or taller than
    /// `max_side` from its header, before anything is decoded.
    pub fn probe_within(bytes: &[u8], max_side: u32) -> Result<FrameImage, String> {
        let format = sniff_format(bytes)
            .ok_or_else(|| "is neither a PNG nor a JPEG (unknown magic bytes)".to_string())?;
        let (w, h) = image::ImageReader::with_format(std::io::Cursor::new(bytes), format.codec())
            .into_dimensions()
            .map_err(|e| format!("is not a decodable {}: {e}", format.as_str().to_uppercase()))?;
        if w > max_side || h > max_side {
            return Err(format!(
                "is {w}×{h} pixels; at most {max_side}×{max_side} are accepted"
            ));
        }
        let img = image::load_from_memory_with_format(bytes, format.codec())
            .map_err(|e| format!("is not a decodable {}: {e}", format.as_str().to_uppercase()))?;
        Ok(FrameImage {
            format,
            width: img.width(),
            height: img.height(),
            dhash: dhash(&img),
        })
    }
}

/// Difference hash: shrink to 9×8 grayscale, one bit per horizontally
/// adjacent pair (left brighter than right).
pub fn dhash(img: &image::DynamicImage) -> u64 {
    let small = img.resize_exact(9, 8, FilterType::Triangle).to_luma8();
    let mut bits = 0u64;
    for y in 0..8 {
        for x in 0..8 {
            let left = small.get_pixel(x, y)[0];
            let right = small.get_pixel(x + 1, y)[0];
            bits = (bits << 1) | u64::from(left > right);
        }
    }
    bits
}

/// Number of differing bits between two hashes.
pub fn hash_distance(a: u64, b: u64) -> u32 {
    (a ^ b).count_ones()
}

/// The keyframe rule: the bundle's own flag when present; otherwise the first
/// frame, or a hash distance to the previous frame over
/// [`KEYFRAME_HASH_DISTANCE`].
pub(super) fn is_keyframe(hint: Option<bool>, distance_to_previous: Option<u32>) -> bool {
    match (hint, distance_to_previous) {
        (Some(flag), _) => flag,
        (None, None) => true,
        (None, Some(d)) => d > KEYFRAME_HASH_DISTANCE,
    }
}

/// The format of an image file, from its bytes.
pub(super) fn sniff_format(bytes: &[u8]) -> Option<ImageFormat> {
    if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        Some(ImageFormat::Png)
    } else if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        Some(ImageFormat::Jpeg)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{ImageBuffer, Rgb};

    fn png(f: impl Fn(u32, u32) -> [u8; 3]) -> Vec<u8> {
        let img = ImageBuffer::from_fn(64, 48, |x, y| Rgb(f(x, y)));
        let mut out = std::io::Cursor::new(Vec::new());
        img.write_to(&mut out, image::ImageFormat::Png).unwrap();
        out.into_inner()
    }

    #[test]
    fn probe_measures_png() {
        let bytes = png(|x, _| [x as u8 * 4, 0, 0]);
        let info = FrameImage::probe(&bytes).unwrap();
        assert_eq!(
            (info.format, info.width, info.height),
            (ImageFormat::Png, 64, 48)
        );
    }

    #[test]
    fn truncated_png_is_refused() {
        let bytes = png(|x, y| [x as u8, y as u8, 7]);
        let err = FrameImage::probe(&bytes[..bytes.len() / 2]).unwrap_err();
        assert!(err.contains("not a decodable PNG"), "{err}");
    }

    #[test]
    fn hash_sees_material_change_only() {
        let a = FrameImage::probe(&png(|x, _| [(x * 4) as u8; 3])).unwrap();
        let b = FrameImage::probe(&png(|x, y| {
            if (x, y) == (3, 3) {
                [255, 0, 0]
            } else {
                [(x * 4) as u8; 3]
            }
        }))
        .unwrap();
        let c = FrameImage::probe(&png(|x, _| [255 - (x * 4) as u8; 3])).unwrap();
        assert!(hash_distance(a.dhash, b.dhash) <= KEYFRAME_HASH_DISTANCE);
        assert!(hash_distance(a.dhash, c.dhash) > KEYFRAME_HASH_DISTANCE);
        assert!(is_keyframe(None, None));
        assert!(!is_keyframe(Some(false), None));
        assert!(is_keyframe(Some(true), Some(0)));
    }
}
