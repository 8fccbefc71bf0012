//! JPEG decoding against Pillow's pixels (`tests/fixtures/jpeg`, written by
//! `xtask/reference/jpeg_fixtures.py`).

use crate::image_input::decode_image;
use std::path::{Path, PathBuf};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/jpeg")
}

const CASES: [&str; 6] = [
    "astronaut_420_q90",
    "chelsea_422_q75",
    "coffee_444_q95",
    "coffee_420_progressive",
    "astronaut_420_restarts",
    "camera_gray",
];

#[test]
fn jpeg_pixels_equal_pillows() {
    let mut zune_differs = 0;
    for name in CASES {
        let dir = fixtures();
        let want = image::open(dir.join(format!("{name}.png")))
            .unwrap()
            .to_rgb8();
        let jpeg = dir.join(format!("{name}.jpg"));
        let got = decode_image(&jpeg).unwrap();
        assert_eq!(got.dimensions(), want.dimensions(), "{name}");
        let differing = got.iter().zip(want.iter()).filter(|(a, b)| a != b).count();
        assert_eq!(
            differing, 0,
            "{name}: {differing} values differ from Pillow's"
        );
        // The image crate's own decoder, for contrast: this is what the test guards against.
        let zune = image::open(&jpeg).unwrap().to_rgb8();
        zune_differs += usize::from(zune.as_raw() != want.as_raw());
    }
    assert!(
        zune_differs >= CASES.len() / 2,
        "the pure-Rust decoder now matches Pillow on {} of {} files: reconsider src/jpeg.rs",
        CASES.len() - zune_differs,
        CASES.len()
    );
}

#[test]
fn a_truncated_jpeg_is_refused_naming_the_file() {
    let err = decode_image(&fixtures().join("truncated.jpg"))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("truncated.jpg") && err.contains("truncated ("),
        "{err}"
    );
}

#[test]
fn a_corrupt_jpeg_is_refused_with_libjpegs_words_not_its_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("noise.jpg");
    let mut bytes = vec![0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x02];
    bytes.extend((0..200u32).map(|i| (i * 7919 % 251) as u8));
    std::fs::write(&path, &bytes).unwrap();
    let err = decode_image(&path).unwrap_err().to_string();
    assert!(err.contains("noise.jpg") && err.is_ascii(), "{err}");
    assert!(err.len() < 400, "{err}");
}
