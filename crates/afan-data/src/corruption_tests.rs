//! The corruptions against scikit-image/NumPy values (`tests/fixtures/corruption.json`, written
//! by `xtask/reference/corruption_fixtures.py`) and the noise's statistics.

use super::Corruption;

type Hwc = Vec<Vec<Vec<f64>>>;

fn fixture() -> serde_json::Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/fixtures/corruption.json"
    );
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// `[H][W][C]` (NumPy's layout in the fixture) to afan's `[C, H, W]`.
fn to_chw(hwc: &Hwc) -> (Vec<f32>, usize, usize, usize) {
    let (h, w, c) = (hwc.len(), hwc[0].len(), hwc[0][0].len());
    let mut out = vec![0f32; c * h * w];
    for (y, row) in hwc.iter().enumerate() {
        for (x, px) in row.iter().enumerate() {
            for (ch, v) in px.iter().enumerate() {
                out[ch * h * w + y * w + x] = *v as f32;
            }
        }
    }
    (out, c, h, w)
}

fn field(f: &serde_json::Value, key: &str) -> Hwc {
    serde_json::from_value(f[key].clone()).unwrap()
}

#[test]
fn blur_and_contrast_equal_the_cifar_c_formulas() {
    let f = fixture();
    let (image, c, h, w) = to_chw(&field(&f, "image_hwc"));
    for (key, corruption) in [
        ("blur_0.7", Corruption::Blur(0.7)),
        ("blur_1.5", Corruption::Blur(1.5)),
        ("contrast_0.4", Corruption::Contrast(0.4)),
        ("contrast_1.7", Corruption::Contrast(1.7)),
    ] {
        let (want, ..) = to_chw(&field(&f, key));
        let mut got = image.clone();
        corruption.apply(&mut got, c, h, w, 0);
        let err = got
            .iter()
            .zip(&want)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(err < 2e-6, "{key}: max |afan - skimage| = {err}");
        assert!(got != image, "{key} changed nothing");
    }
}

#[test]
fn noise_has_its_standard_deviation_is_seeded_and_clipped() {
    let (c, h, w) = (3, 64, 64);
    let mut a = vec![0.5f32; c * h * w];
    Corruption::Noise(0.08).apply(&mut a, c, h, w, 7);
    let n = a.len() as f64;
    let mean = a.iter().map(|&v| v as f64).sum::<f64>() / n;
    let std = (a.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n).sqrt();
    assert!(
        (mean - 0.5).abs() < 0.005 && (std - 0.08).abs() < 0.004,
        "{mean} {std}"
    );
    let mut b = vec![0.5f32; c * h * w];
    Corruption::Noise(0.08).apply(&mut b, c, h, w, 7);
    assert_eq!(a, b, "same seed, same copy");
    Corruption::Noise(0.08).apply(&mut b, c, h, w, 8);
    assert_ne!(a, b);
    let mut bright = vec![0.99f32; 12];
    Corruption::Noise(0.5).apply(&mut bright, 3, 2, 2, 1);
    assert!(bright.iter().all(|v| (0.0..=1.0).contains(v)));
}

#[test]
fn names_parse_with_the_severity_three_defaults() {
    assert_eq!(Corruption::parse("noise"), Ok(Corruption::Noise(0.08)));
    assert_eq!(Corruption::parse("blur"), Ok(Corruption::Blur(0.7)));
    assert_eq!(
        Corruption::parse("contrast:0.3"),
        Ok(Corruption::Contrast(0.3))
    );
    let err = Corruption::parse("fog").unwrap_err();
    assert!(
        err.contains("fog") && err.contains("noise, blur, contrast"),
        "{err}"
    );
    assert!(Corruption::parse("blur:-1").is_err() && Corruption::parse("blur:x").is_err());
    assert_eq!(Corruption::Blur(0.7).to_string(), "blur:0.7");
}

#[test]
fn a_batch_is_corrupted_image_by_image_seeded_by_the_image_index() {
    let shape = (3, 8, 8);
    let n = 3 * 8 * 8;
    let image =
        |k: usize| -> Vec<f32> { (0..n).map(|i| ((i * 7 + k) % 97) as f32 / 97.0).collect() };
    // Images 5 and 9 of a set, batched in that order and in the other.
    let mut ab: Vec<f32> = [image(5), image(9)].concat();
    let mut ba: Vec<f32> = [image(9), image(5)].concat();
    let noise = Corruption::Noise(0.08);
    noise.apply_to_batch(&mut ab, shape, &[5, 9]);
    noise.apply_to_batch(&mut ba, shape, &[9, 5]);
    // An image's copy depends on its index, not on its batch or place in it.
    assert_eq!(ab[..n], ba[n..]);
    assert_eq!(ab[n..], ba[..n]);
    let mut alone = image(5);
    noise.apply_to_image(&mut alone, shape, 5);
    assert_eq!(alone[..], ab[..n]);
    // Two images draw different noise.
    let mut same = [image(5), image(5)].concat();
    noise.apply_to_batch(&mut same, shape, &[5, 6]);
    assert_ne!(same[..n], same[n..]);
}
