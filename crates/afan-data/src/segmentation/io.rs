//! Image and mask files: JPEG/PNG images through `image`, 8-bit label PNGs through `png`.
//!
//! VOC's `SegmentationClass` masks are palette PNGs whose *indices* are the labels; `image` would
//! expand them to RGB, so masks are read with `png` and its transformations off.

use std::fs::File;
use std::io::{BufReader, BufWriter};
use std::path::Path;

use crate::error::DataError;

/// Decodes an image to RGB bytes (`height * width * 3`, row-major); returns `(rgb, width, height)`.
pub fn read_rgb(path: &Path) -> Result<(Vec<u8>, usize, usize), DataError> {
    if !path.is_file() {
        return Err(DataError::MissingFile {
            path: path.to_path_buf(),
            hint: "listed in the split but not on disk".into(),
        });
    }
    let rgb = crate::image_input::decode_image(path)?;
    let (w, h) = rgb.dimensions();
    Ok((rgb.into_raw(), w as usize, h as usize))
}

/// The image with each labelled pixel tinted by its class's VOC palette colour (`alpha` of the
/// colour; background 0 and ignore 255 left as they are), written as an RGB PNG: a mask a person
/// can check against the photograph.
pub fn write_overlay_png(
    path: &Path,
    rgb: &[u8],
    labels: &[u8],
    width: usize,
    height: usize,
    alpha: f32,
) -> Result<(), DataError> {
    let palette = voc_palette();
    let mut out = rgb.to_vec();
    for (i, &l) in labels.iter().enumerate() {
        if l == 0 || l == 255 {
            continue;
        }
        for c in 0..3 {
            let tint = palette[3 * l as usize + c] as f32;
            let v = out[3 * i + c] as f32;
            out[3 * i + c] = ((1.0 - alpha) * v + alpha * tint).round() as u8;
        }
    }
    image::RgbImage::from_raw(width as u32, height as u32, out)
        .expect("one RGB triple per label")
        .save(path)
        .map_err(|e| DataError::Io {
            path: path.to_path_buf(),
            error: std::io::Error::other(e.to_string()),
        })
}

/// Reads an 8-bit palette or grayscale PNG as raw values; returns `(values, width, height)`.
pub fn read_mask(path: &Path) -> Result<(Vec<u8>, usize, usize), DataError> {
    let file = File::open(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => DataError::MissingFile {
            path: path.to_path_buf(),
            hint: "listed in the split but not on disk".into(),
        },
        _ => DataError::io(path, e),
    })?;
    let bad = |message: String| DataError::Decode {
        path: path.to_path_buf(),
        what: "an 8-bit palette or grayscale PNG mask",
        message,
    };
    let mut decoder = png::Decoder::new(BufReader::new(file));
    decoder.set_transformations(png::Transformations::IDENTITY);
    let mut reader = decoder.read_info().map_err(|e| bad(e.to_string()))?;
    let size = reader
        .output_buffer_size()
        .ok_or_else(|| bad("image too large".into()))?;
    let mut buf = vec![0; size];
    let info = reader
        .next_frame(&mut buf)
        .map_err(|e| bad(e.to_string()))?;
    let ok_colour = matches!(
        info.color_type,
        png::ColorType::Indexed | png::ColorType::Grayscale
    );
    if !ok_colour || info.bit_depth != png::BitDepth::Eight {
        return Err(bad(format!(
            "found {:?} at {:?} bits",
            info.color_type, info.bit_depth
        )));
    }
    let (w, h) = (info.width as usize, info.height as usize);
    buf.truncate(w * h);
    Ok((buf, w, h))
}

/// The 256-colour palette of VOC's `SegmentationClass` PNGs (the devkit's `labelcolormap`: bits
/// of the index spread over the high bits of R, G, B).
pub fn voc_palette() -> Vec<u8> {
    let mut palette = Vec::with_capacity(768);
    for i in 0..256usize {
        let (mut r, mut g, mut b) = (0u8, 0u8, 0u8);
        let mut c = i;
        for j in 0..8 {
            r |= ((c & 1) as u8) << (7 - j);
            g |= (((c >> 1) & 1) as u8) << (7 - j);
            b |= (((c >> 2) & 1) as u8) << (7 - j);
            c >>= 3;
        }
        palette.extend([r, g, b]);
    }
    palette
}

fn write_png(
    path: &Path,
    values: &[u8],
    width: usize,
    height: usize,
    palette: Option<&[u8]>,
) -> Result<(), DataError> {
    let file = File::create(path).map_err(|e| DataError::io(path, e))?;
    let mut enc = png::Encoder::new(BufWriter::new(file), width as u32, height as u32);
    match palette {
        Some(p) => {
            enc.set_color(png::ColorType::Indexed);
            enc.set_palette(p.to_vec());
        }
        None => enc.set_color(png::ColorType::Grayscale),
    }
    enc.set_depth(png::BitDepth::Eight);
    let fail = |e: png::EncodingError| DataError::io(path, std::io::Error::other(e.to_string()));
    let mut writer = enc.write_header().map_err(fail)?;
    writer.write_image_data(values).map_err(fail)?;
    writer.finish().map_err(fail)
}

/// Writes labels as a VOC-style palette PNG (what `afan infer` outputs and VOC ships).
pub fn write_palette_png(
    path: &Path,
    labels: &[u8],
    width: usize,
    height: usize,
) -> Result<(), DataError> {
    write_png(path, labels, width, height, Some(&voc_palette()))
}

/// Writes values as an 8-bit grayscale PNG (SBD-aug and Cityscapes `labelIds` masks).
pub fn write_gray_png(
    path: &Path,
    values: &[u8],
    width: usize,
    height: usize,
) -> Result<(), DataError> {
    write_png(path, values, width, height, None)
}
