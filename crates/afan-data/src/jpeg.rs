//! JPEG decoding that gives Pillow's pixels.
//!
//! torchvision reads images with Pillow, and Pillow decodes JPEG with libjpeg-turbo (its
//! accurate integer IDCT, "fancy" triangular chroma upsampling, integer YCbCr→RGB tables). The
//! `image` crate's decoder (zune-jpeg) uses another IDCT and another upsampler: on ordinary
//! photographs 1-17% of the values differ, by up to 6 levels, which moves a ResNet-50's
//! probabilities by ~1e-3. No pure-Rust decoder reproduces libjpeg-turbo bit for bit
//! (jpeg-decoder is no closer), so with the default `libjpeg` feature JPEG goes through the
//! `mozjpeg` crate, whose decoder *is* libjpeg-turbo's (bundled C, no SIMD assembly: its C and SIMD
//! paths give the same pixels). Measured equal to Pillow 11 on baseline and progressive files,
//! 4:4:4, 4:2:2 and 4:2:0 (tests/fixtures/jpeg, `xtask/reference/jpeg_fixtures.py`).
//!
//! libjpeg does not fail on a truncated file: it warns, pads the missing rows with gray and
//! goes on. Pillow refuses such a file ("image file is truncated"), and so does afan: the
//! premature-end warning is turned into an error. Other libjpeg warnings (e.g. stray bytes
//! before a marker) are ignored, as Pillow ignores them. Colour spaces libjpeg cannot turn into
//! RGB (CMYK, YCCK) are left to the `image` crate's decoder.

use image::RgbImage;
use mozjpeg_sys::{J_COLOR_SPACE, JWRN_JPEG_EOF, jpeg_common_struct, jpeg_error_mgr};
use std::os::raw::c_int;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};

/// Why libjpeg could not give RGB pixels.
pub(crate) enum JpegError {
    /// A colour space libjpeg does not convert to RGB: decode it another way.
    Unsupported,
    /// A corrupt or truncated file; the message is libjpeg's (text, never raw bytes).
    Corrupt(String),
}

/// Decodes JPEG `bytes` to RGB exactly as Pillow's `Image.open(..).convert("RGB")` does
/// (grayscale is replicated to three channels, as Pillow's conversion does).
pub(crate) fn decode(bytes: &[u8]) -> Result<RgbImage, JpegError> {
    // libjpeg reports fatal errors through `error_exit`, which must not return: ours unwinds
    // (mozjpeg-sys is built with `unwinding`), and the unwind is caught here.
    let result = catch_unwind(AssertUnwindSafe(|| -> Result<RgbImage, JpegError> {
        let decoder = mozjpeg::Decompress::with_err(error_manager())
            .from_mem(bytes)
            .map_err(|e| JpegError::Corrupt(e.to_string()))?;
        match decoder.color_space() {
            J_COLOR_SPACE::JCS_YCbCr | J_COLOR_SPACE::JCS_GRAYSCALE | J_COLOR_SPACE::JCS_RGB => {}
            _ => return Err(JpegError::Unsupported),
        }
        let mut started = decoder
            .rgb()
            .map_err(|e| JpegError::Corrupt(e.to_string()))?;
        let (width, height) = (started.width() as u32, started.height() as u32);
        let pixels = started
            .read_scanlines::<u8>()
            .map_err(|e| JpegError::Corrupt(e.to_string()))?;
        started
            .finish()
            .map_err(|e| JpegError::Corrupt(e.to_string()))?;
        RgbImage::from_raw(width, height, pixels).ok_or_else(|| {
            JpegError::Corrupt(format!(
                "libjpeg returned too few rows for {width}x{height}"
            ))
        })
    }));
    match result {
        Ok(decoded) => decoded,
        Err(payload) => Err(JpegError::Corrupt(panic_message(payload))),
    }
}

/// libjpeg's standard error manager with our two callbacks.
fn error_manager() -> jpeg_error_mgr {
    // SAFETY: jpeg_error_mgr is a plain C struct of integers and nullable function pointers, for
    // which all-zero is valid; jpeg_std_error then fills every field.
    let mut err: jpeg_error_mgr = unsafe { std::mem::zeroed() };
    unsafe { mozjpeg_sys::jpeg_std_error(&mut err) };
    err.error_exit = Some(error_exit);
    err.emit_message = Some(emit_message);
    err
}

/// libjpeg's text for the current message (its own `format_message`).
fn message(cinfo: &mut jpeg_common_struct) -> String {
    let mut buffer = [0u8; 200]; // JMSG_LENGTH_MAX
    // SAFETY: `err` is the manager installed above, alive for the whole decode; format_message
    // writes a NUL-terminated string of at most JMSG_LENGTH_MAX bytes into the buffer.
    unsafe {
        if let Some(format) = (*cinfo.err).format_message {
            let format: unsafe extern "C-unwind" fn(&mut jpeg_common_struct, *mut u8) =
                std::mem::transmute(format);
            format(cinfo, buffer.as_mut_ptr());
        }
    }
    let end = buffer.iter().position(|&b| b == 0).unwrap_or(buffer.len());
    String::from_utf8_lossy(&buffer[..end]).into_owned()
}

extern "C-unwind" fn error_exit(cinfo: &mut jpeg_common_struct) {
    resume_unwind(Box::new(message(cinfo)));
}

extern "C-unwind" fn emit_message(cinfo: &mut jpeg_common_struct, level: c_int) {
    // SAFETY: as in `message`.
    let code = unsafe { (*cinfo.err).msg_code };
    if level < 0 && code == JWRN_JPEG_EOF as c_int {
        resume_unwind(Box::new(
            "the file is truncated (libjpeg reached its end before the last row)".to_string(),
        ));
    }
}

fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    match payload.downcast::<String>() {
        Ok(text) => *text,
        Err(payload) => match payload.downcast::<&str>() {
            Ok(text) => text.to_string(),
            Err(_) => "libjpeg failed".to_string(),
        },
    }
}

#[cfg(test)]
#[path = "jpeg_tests.rs"]
mod tests;
