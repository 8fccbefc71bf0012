//! Pillow's resampling of 8-bit images, the one torchvision's `transforms.Resize` runs on PIL
//! images and the release's data pipelines use: `BILINEAR` for pictures (classification
//! `Resize`/`RandomResizedCrop`, `Detection/dataset/base.py` `preprocess`, the segmentation
//! `ExtResize`/`ExtRandomScale`) and `NEAREST` for label maps (the segmentation transforms).
//!
//! Pillow's `BILINEAR` is not textbook bilinear interpolation: it is a separable convolution
//! with a triangle filter whose support grows with the downscale factor (antialiasing), each
//! output pixel's weights normalised to sum to one, converted to 22-bit fixed point and
//! accumulated in integers, the horizontal pass rounded to 8 bits before the vertical one
//! (`src/libImaging/Resample.c`: `precompute_coeffs`, `normalize_coeffs_8bpc`,
//! `ImagingResample{Horizontal,Vertical}_8bpc`, `ImagingResampleInner`). `NEAREST` takes
//! source pixel `floor((x + 0.5) * in / out)`, accumulated in f64 as `ImagingScaleAffine`
//! (`src/libImaging/Geometry.c`) does.
//!
//! Written out here rather than taken from a crate: the `image` crate's `Triangle` filter
//! samples its kernel differently and works in floats (up to several levels off Pillow, and
//! `afan infer`'s probabilities up to 5.6e-3 off PyTorch's); `fast_image_resize`, the crate
//! closest to Pillow (its convolution descends from Pillow-SIMD), stores the weights as i16
//! with at most 15 fractional bits instead of Pillow's 22, which rounds some pixels to the next
//! level. The rules below are Pillow's own, so the output is Pillow's bit for bit, which the
//! fixture test checks (`xtask/reference/pil_resize_fixtures.py`).

/// Fractional bits of Pillow's fixed-point weights (`PRECISION_BITS`: 32 - 8 - 2).
const PRECISION_BITS: u32 = 22;

/// One output pixel's window: first source index and weights (fixed point).
struct Window {
    start: usize,
    weights: Vec<i32>,
}

/// `precompute_coeffs` with the triangle filter (support 1) and `normalize_coeffs_8bpc`, for
/// `out` pixels from `len` source pixels (the whole image as the box).
fn windows(len: usize, out: usize) -> Vec<Window> {
    let scale = len as f64 / out as f64;
    let filterscale = scale.max(1.0);
    let support = filterscale;
    let ss = 1.0 / filterscale;
    (0..out)
        .map(|xx| {
            let center = (xx as f64 + 0.5) * scale;
            // C's `(int)` truncates toward zero, as `as` does.
            let xmin = ((center - support + 0.5) as i64).max(0) as usize;
            let xmax = ((center + support + 0.5) as i64).min(len as i64) as usize;
            let raw: Vec<f64> = (xmin..xmax)
                .map(|x| triangle((x as f64 - center + 0.5) * ss))
                .collect();
            let total: f64 = raw.iter().sum();
            let weights = raw
                .into_iter()
                .map(|w| {
                    let w = if total != 0.0 { w / total } else { w };
                    let fixed = w * f64::from(1u32 << PRECISION_BITS);
                    (if w < 0.0 { fixed - 0.5 } else { fixed + 0.5 }) as i32
                })
                .collect();
            Window {
                start: xmin,
                weights,
            }
        })
        .collect()
}

fn triangle(x: f64) -> f64 {
    let x = x.abs();
    if x < 1.0 { 1.0 - x } else { 0.0 }
}

/// `clip8`: the accumulator (which starts at half a unit) shifted down and clipped to 0..=255.
fn clip8(acc: i32) -> u8 {
    (acc >> PRECISION_BITS).clamp(0, 255) as u8
}

/// Pillow's `Image.resize(size, BILINEAR)` of an interleaved 8-bit image with `channels`
/// components per pixel (3 for RGB, 1 for L), `(width, height)` to `(out_w, out_h)`.
///
/// The two passes run in Pillow's order: horizontal first, except when the height shrinks by
/// more than twice what the width shrinks by (`ImagingResampleInner` since Pillow 13,
/// python-pillow/Pillow#9549; Pillow 12 and older always went horizontal first). Each pass
/// rounds to 8 bits, so the order can move a pixel by one level.
///
/// # Panics
/// If `pixels` is not `width * height * channels` long or a size is zero.
pub fn pil_bilinear(
    pixels: &[u8],
    (width, height): (usize, usize),
    channels: usize,
    (out_w, out_h): (usize, usize),
) -> Vec<u8> {
    assert_eq!(pixels.len(), width * height * channels, "pixel buffer size");
    assert!(
        width > 0 && height > 0 && out_w > 0 && out_h > 0,
        "empty image"
    );
    let shrink_h = height as i64 - out_h as i64;
    let shrink_w = width as i64 - out_w as i64;
    if out_h < height && shrink_h > 2 * shrink_w {
        let tmp = vertical_pass(pixels, (width, height), channels, out_h);
        horizontal_pass(&tmp, (width, out_h), channels, out_w)
    } else {
        let tmp = horizontal_pass(pixels, (width, height), channels, out_w);
        vertical_pass(&tmp, (out_w, height), channels, out_h)
    }
}

/// Half a unit of the fixed-point accumulator: the rounding of `clip8`.
const HALF: i32 = 1 << (PRECISION_BITS - 1);

/// `ImagingResampleHorizontal_8bpc` (a copy when the width does not change).
fn horizontal_pass(
    pixels: &[u8],
    (width, height): (usize, usize),
    channels: usize,
    out_w: usize,
) -> Vec<u8> {
    if out_w == width {
        return pixels.to_vec();
    }
    let win = windows(width, out_w);
    let mut out = vec![0u8; out_w * height * channels];
    for y in 0..height {
        let row = &pixels[y * width * channels..(y + 1) * width * channels];
        for (xx, w) in win.iter().enumerate() {
            for c in 0..channels {
                let acc = w.weights.iter().enumerate().fold(HALF, |acc, (k, &wk)| {
                    acc + i32::from(row[(w.start + k) * channels + c]) * wk
                });
                out[(y * out_w + xx) * channels + c] = clip8(acc);
            }
        }
    }
    out
}

/// `ImagingResampleVertical_8bpc` (a copy when the height does not change).
fn vertical_pass(
    pixels: &[u8],
    (width, height): (usize, usize),
    channels: usize,
    out_h: usize,
) -> Vec<u8> {
    if out_h == height {
        return pixels.to_vec();
    }
    let win = windows(height, out_h);
    let stride = width * channels;
    let mut out = vec![0u8; out_h * stride];
    for (yy, w) in win.iter().enumerate() {
        for i in 0..stride {
            let acc = w.weights.iter().enumerate().fold(HALF, |acc, (k, &wk)| {
                acc + i32::from(pixels[(w.start + k) * stride + i]) * wk
            });
            out[yy * stride + i] = clip8(acc);
        }
    }
    out
}

/// Source index of each output pixel for Pillow's `NEAREST` (`ImagingScaleAffine`: start at
/// half a step, add the step in f64, truncate).
fn nearest_indices(len: usize, out: usize) -> Vec<usize> {
    let step = len as f64 / out as f64;
    let mut at = step * 0.5;
    (0..out)
        .map(|_| {
            let i = (at as usize).min(len - 1);
            at += step;
            i
        })
        .collect()
}

/// Pillow's `Image.resize(size, NEAREST)` (label maps, palette images) of an interleaved 8-bit
/// image with `channels` components per pixel.
///
/// # Panics
/// If `pixels` is not `width * height * channels` long or a size is zero.
pub fn pil_nearest(
    pixels: &[u8],
    (width, height): (usize, usize),
    channels: usize,
    (out_w, out_h): (usize, usize),
) -> Vec<u8> {
    assert_eq!(pixels.len(), width * height * channels, "pixel buffer size");
    assert!(
        width > 0 && height > 0 && out_w > 0 && out_h > 0,
        "empty image"
    );
    let xs = nearest_indices(width, out_w);
    let mut out = Vec::with_capacity(out_w * out_h * channels);
    for y in nearest_indices(height, out_h) {
        let row = &pixels[y * width * channels..(y + 1) * width * channels];
        for &x in &xs {
            out.extend_from_slice(&row[x * channels..(x + 1) * channels]);
        }
    }
    out
}

/// [`pil_bilinear`] of an RGB image.
pub fn resize_rgb(image: &image::RgbImage, width: u32, height: u32) -> image::RgbImage {
    let (w, h) = image.dimensions();
    let out = pil_bilinear(
        image.as_raw(),
        (w as usize, h as usize),
        3,
        (width as usize, height as usize),
    );
    image::RgbImage::from_raw(width, height, out).expect("the output has the requested size")
}

/// [`pil_nearest`] of a one-channel image (a label map).
pub fn resize_labels(image: &image::GrayImage, width: u32, height: u32) -> image::GrayImage {
    let (w, h) = image.dimensions();
    let out = pil_nearest(
        image.as_raw(),
        (w as usize, h as usize),
        1,
        (width as usize, height as usize),
    );
    image::GrayImage::from_raw(width, height, out).expect("the output has the requested size")
}

#[cfg(test)]
#[path = "resize_tests.rs"]
mod tests;
