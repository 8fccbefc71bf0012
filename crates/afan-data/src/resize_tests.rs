//! Pillow's resampling, by hand on tiny cases and against Pillow itself on the fixture images
//! (`tests/fixtures/pil_resize`, written by `xtask/reference/pil_resize_fixtures.py`).

use super::*;
use std::path::{Path, PathBuf};

#[test]
fn halving_two_pixels_is_their_rounded_mean() {
    // 2 -> 1: centre 1, support 2, weights triangle(-0.25) = triangle(0.25) = 0.75 each,
    // normalised to 2^21 each: 2^21 + 255 * 2^21 = 128 * 2^22, so 128 (the mean 127.5 rounded
    // up by the half unit the accumulator starts with).
    assert_eq!(pil_bilinear(&[0, 255], (2, 1), 1, (1, 1)), [128]);
    assert_eq!(pil_bilinear(&[0, 254], (2, 1), 1, (1, 1)), [127]);
}

#[test]
fn doubling_weighs_neighbours_three_to_one() {
    // 2 -> 4: scale 1/2, support 1; output 1 sits at source 0.75: weights 0.75 / 0.25 of
    // pixels 0 and 1 (after normalising triangle(0.25) = 0.75 and triangle(0.75) = 0.25).
    let out = pil_bilinear(&[0, 200], (2, 1), 1, (4, 1));
    assert_eq!(out, [0, 50, 150, 200]);
}

#[test]
fn nearest_takes_the_pixel_under_each_output_centre() {
    // 5 -> 2: centres at 1.25 and 3.75 -> pixels 1 and 3; 2 -> 5: 0.2, 0.6, 1.0, 1.4, 1.8.
    assert_eq!(
        pil_nearest(&[10, 11, 12, 13, 14], (5, 1), 1, (2, 1)),
        [11, 13]
    );
    assert_eq!(pil_nearest(&[7, 9], (2, 1), 1, (5, 1)), [7, 7, 9, 9, 9]);
    // Channels move together.
    assert_eq!(
        pil_nearest(&[1, 2, 3, 4, 5, 6], (2, 1), 3, (1, 1)),
        [4, 5, 6]
    );
}

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/pil_resize")
}

/// Every case of the manifest, pixel for pixel: the bar is one 8-bit level (what torchvision's
/// preprocessing allows to be called equal), and the rules are Pillow's own, so all of them are
/// met exactly.
#[test]
fn matches_pillow_on_every_fixture_case() {
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(fixture_dir().join("manifest.json")).unwrap())
            .unwrap();
    let cases = manifest["cases"].as_array().unwrap();
    assert!(cases.len() >= 20, "the fixture has its cases");
    let (mut exact, mut pixels) = (0usize, 0usize);
    for case in cases {
        let name = |k: &str| case[k].as_str().unwrap().to_string();
        let source = image::open(fixture_dir().join(name("source"))).unwrap();
        let expected = image::open(fixture_dir().join(name("expected"))).unwrap();
        let size = case["size"].as_array().unwrap();
        let (w, h) = (
            size[0].as_u64().unwrap() as usize,
            size[1].as_u64().unwrap() as usize,
        );
        let channels = source.color().channel_count() as usize;
        let (src, want) = if channels == 3 {
            (source.to_rgb8().into_raw(), expected.to_rgb8().into_raw())
        } else {
            (source.to_luma8().into_raw(), expected.to_luma8().into_raw())
        };
        let dims = (source.width() as usize, source.height() as usize);
        let got = match name("filter").as_str() {
            "bilinear" => pil_bilinear(&src, dims, channels, (w, h)),
            "nearest" => pil_nearest(&src, dims, channels, (w, h)),
            other => panic!("unknown filter {other}"),
        };
        assert_eq!(got.len(), want.len(), "{}", name("expected"));
        let worst = got
            .iter()
            .zip(&want)
            .map(|(a, b)| a.abs_diff(*b))
            .max()
            .unwrap();
        assert!(worst <= 1, "{}: off by {worst} levels", name("expected"));
        exact += got.iter().zip(&want).filter(|(a, b)| a == b).count();
        pixels += want.len();
    }
    assert_eq!(
        exact,
        pixels,
        "{} of {pixels} values differ by one level",
        pixels - exact
    );
}

#[test]
fn rgb_and_label_wrappers_keep_sizes() {
    let rgb = image::RgbImage::from_fn(5, 3, |x, y| image::Rgb([x as u8, y as u8, 7]));
    let out = resize_rgb(&rgb, 9, 2);
    assert_eq!(out.dimensions(), (9, 2));
    assert!(
        out.pixels().all(|p| p[2] == 7),
        "a constant channel stays constant"
    );
    let labels = image::GrayImage::from_fn(4, 4, |x, _| image::Luma([x as u8 * 50]));
    let out = resize_labels(&labels, 2, 8);
    assert_eq!(out.dimensions(), (2, 8));
    assert!(
        out.pixels().all(|p| [50, 150].contains(&p[0])),
        "labels are only copied"
    );
}
