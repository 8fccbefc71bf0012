//! Image files as model inputs: decode (JPEG, PNG), resize the shorter side, take the centre
//! crop, scale to [0, 1] — torchvision's `Resize(s)`, `CenterCrop(c)`, `ToTensor()` evaluation
//! transform, with the same size and offset arithmetic. Normalization by mean/std belongs to the
//! model (see afan-models' `InputNorm`), so it is not applied here.
//!
//! Both steps give Pillow's pixels, as torchvision's PIL path does: JPEG through libjpeg-turbo's
//! decoder (`crate::jpeg`, the default `libjpeg` feature) and the resize through Pillow's
//! antialiased bilinear convolution ([`crate::resize`]).

use crate::error::DataError;
use std::path::Path;

/// The evaluation transform.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ImageTransform {
    /// Length of the shorter side after resizing (aspect ratio kept); 0 keeps the image size.
    pub resize: u32,
    /// Side of the square centre crop (must not exceed the resized image).
    pub crop: u32,
}

impl ImageTransform {
    /// ImageNet's evaluation transform: resize 256, centre crop 224.
    pub const IMAGENET: ImageTransform = ImageTransform {
        resize: 256,
        crop: 224,
    };

    /// Output size of torchvision's `Resize(resize)` for a `w x h` image: the shorter side
    /// becomes `resize`, the longer one is scaled and truncated.
    pub fn resized_size(&self, w: u32, h: u32) -> (u32, u32) {
        if self.resize == 0 {
            return (w, h);
        }
        let long = |l: u32, s: u32| (self.resize as u64 * l as u64 / s as u64) as u32;
        if w <= h {
            (self.resize, long(h, w))
        } else {
            (long(w, h), self.resize)
        }
    }

    /// Top-left corner of torchvision's `CenterCrop(crop)` in a `w x h` image (Python's `round`,
    /// which rounds halves to even).
    pub fn crop_origin(&self, w: u32, h: u32) -> (u32, u32) {
        let at = |side: u32| ((side - self.crop) as f64 / 2.0).round_ties_even() as u32;
        (at(w), at(h))
    }

    /// Reads `path` and returns `[3, crop, crop]` values in [0, 1], channel-major (RGB).
    pub fn load(&self, path: &Path) -> Result<Vec<f32>, DataError> {
        self.apply(&decode_image(path)?, path)
    }

    /// The transform of a decoded image; `path` only names it in errors.
    pub fn apply(&self, image: &image::RgbImage, path: &Path) -> Result<Vec<f32>, DataError> {
        let (w, h) = self.resized_size(image.width(), image.height());
        if w < self.crop || h < self.crop || self.crop == 0 {
            return Err(DataError::Image {
                path: path.to_path_buf(),
                reason: format!(
                    "a {}x{} image resized to {w}x{h} cannot give a {c}x{c} centre crop",
                    image.width(),
                    image.height(),
                    c = self.crop
                ),
            });
        }
        // torchvision's `Resize` on a PIL image: Pillow's antialiased bilinear.
        let resized = if (w, h) == image.dimensions() {
            image.clone()
        } else {
            crate::resize::resize_rgb(image, w, h)
        };
        let (x0, y0) = self.crop_origin(w, h);
        let crop = image::imageops::crop_imm(&resized, x0, y0, self.crop, self.crop).to_image();
        Ok(to_chw(&crop))
    }
}

/// Decodes a JPEG or PNG file to 8-bit RGB: the one decoder every loader uses, so a file that
/// cannot be read or decoded gets the same message whatever task reads it.
pub fn decode_image(path: &Path) -> Result<image::RgbImage, DataError> {
    let bytes = std::fs::read(path).map_err(|error| DataError::Io {
        path: path.to_path_buf(),
        error,
    })?;
    let decode_error = |message: String| DataError::Decode {
        path: path.to_path_buf(),
        what: "a JPEG/PNG image",
        message,
    };
    #[cfg(feature = "libjpeg")]
    if bytes.starts_with(&[0xFF, 0xD8]) {
        match crate::jpeg::decode(&bytes) {
            Ok(image) => return Ok(image),
            Err(crate::jpeg::JpegError::Corrupt(message)) => return Err(decode_error(message)),
            Err(crate::jpeg::JpegError::Unsupported) => {} // CMYK/YCCK: the image crate's turn
        }
    }
    Ok(image::load_from_memory(&bytes)
        .map_err(|e| decode_error(e.to_string()))?
        .to_rgb8())
}

/// An RGB image as `[3, height, width]` values in [0, 1], channel-major, as the models take it.
pub fn to_chw(image: &image::RgbImage) -> Vec<f32> {
    let plane = (image.width() * image.height()) as usize;
    let mut out = vec![0f32; 3 * plane];
    for (i, p) in image.pixels().enumerate() {
        for c in 0..3 {
            out[c * plane + i] = p[c] as f32 / 255.0;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_follow_torchvision() {
        let t = ImageTransform::IMAGENET;
        // Resize(256) of a 500x375 landscape: short side 256, long int(256*500/375) = 341.
        assert_eq!(t.resized_size(500, 375), (341, 256));
        assert_eq!(t.resized_size(375, 500), (256, 341));
        // CenterCrop(224) of 341x256: left round(117/2) = round(58.5) = 58 (half to even), top 16.
        assert_eq!(t.crop_origin(341, 256), (58, 16));
        assert_eq!(t.crop_origin(343, 256), (60, 16)); // round(59.5) = 60
    }

    #[test]
    fn pixels_land_in_channel_major_order_scaled_to_unit_range() {
        // No resize: a 4x3 image, crop 2 takes columns 1..3 (round(1.0)) and rows 0..2
        // (round(0.5) = 0).
        let img = image::RgbImage::from_fn(4, 3, |x, y| image::Rgb([(10 * x + y) as u8, 255, 0]));
        let t = ImageTransform { resize: 0, crop: 2 };
        let v = t.apply(&img, Path::new("mem.png")).unwrap();
        let red: Vec<f32> = v[..4].iter().map(|r| r * 255.0).collect();
        assert_eq!(red, [10.0, 20.0, 11.0, 21.0]);
        assert_eq!(&v[4..8], &[1.0; 4]);
        assert_eq!(&v[8..], &[0.0; 4]);
    }

    #[test]
    fn bad_images_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let junk = dir.path().join("photo.jpg");
        std::fs::write(&junk, b"\xff\xd8\xff not really a jpeg").unwrap();
        let err = ImageTransform::IMAGENET
            .load(&junk)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("photo.jpg") && err.contains("cannot decode"),
            "{err}"
        );
        // Resizing to 200 cannot leave room for a 224 crop.
        let img = image::RgbImage::new(40, 30);
        let err = ImageTransform {
            resize: 200,
            crop: 224,
        }
        .apply(&img, Path::new("tiny.png"))
        .map(|_| ())
        .unwrap_err();
        assert!(err.to_string().contains("tiny.png"), "{err}");
        let missing = ImageTransform::IMAGENET.load(&dir.path().join("absent.png"));
        assert!(missing.unwrap_err().to_string().contains("absent.png"));
    }
}
