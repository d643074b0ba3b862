//! Image records over bytes: the format from the magic bytes (PNG or JPEG only), the declared
//! dimensions checked against limits before any pixel is decoded (a decompression bomb is
//! refused by its header), then a full decode under the same limits, so a truncated or corrupt
//! image is found at ingest and not at training.

use std::io::Cursor;

use image::{ImageFormat, ImageReader, Limits};

use crate::error::Problem;

/// Limits on one image, checked on the declared dimensions and again while decoding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ImageLimits {
    /// The largest width or height.
    pub max_side: u32,
    /// The largest width × height.
    pub max_pixels: u64,
    /// The most memory the decoder may allocate, in bytes.
    pub max_alloc: u64,
}

impl Default for ImageLimits {
    /// 16384 pixels a side, 40 megapixels, 256 MiB for the decoder.
    fn default() -> Self {
        Self { max_side: 16_384, max_pixels: 40_000_000, max_alloc: 256 << 20 }
    }
}

/// What ingest records of an image.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ImageInfo {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Colour channels (1 grey, 2 grey and alpha, 3 RGB, 4 RGBA).
    pub channels: u8,
}

fn unreadable(error: impl std::fmt::Display) -> Problem {
    Problem::Image(error.to_string())
}

/// Checks and decodes a PNG or JPEG image under `limits`.
pub fn inspect_image(bytes: &[u8], limits: &ImageLimits) -> Result<ImageInfo, Problem> {
    let mut reader =
        ImageReader::new(Cursor::new(bytes)).with_guessed_format().map_err(unreadable)?;
    let format = reader.format();
    if !matches!(format, Some(ImageFormat::Png | ImageFormat::Jpeg)) {
        return Err(Problem::Image(match format {
            Some(other) => format!("{other:?} is not taken (PNG or JPEG)"),
            None => "not a PNG or JPEG file".into(),
        }));
    }
    // Reading the header allocates nothing of the pixels: the limits apply to the decode below,
    // after the declared size was checked here.
    reader.no_limits();
    let (width, height) = reader.into_dimensions().map_err(unreadable)?;
    let pixels = u64::from(width) * u64::from(height);
    if width > limits.max_side || height > limits.max_side || pixels > limits.max_pixels {
        return Err(Problem::ImageTooLarge {
            width,
            height,
            max_pixels: limits.max_pixels,
            max_side: limits.max_side,
        });
    }
    let mut reader =
        ImageReader::new(Cursor::new(bytes)).with_guessed_format().map_err(unreadable)?;
    let mut decoder_limits = Limits::default();
    decoder_limits.max_image_width = Some(limits.max_side);
    decoder_limits.max_image_height = Some(limits.max_side);
    decoder_limits.max_alloc = Some(limits.max_alloc);
    reader.limits(decoder_limits);
    let image = reader.decode().map_err(unreadable)?;
    Ok(ImageInfo { width, height, channels: image.color().channel_count() })
}
