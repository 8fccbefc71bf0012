//! Comparison of afan's f32 results with PyTorch's float64 references, shared by the golden tests.

/// Every element within `rel * (|want| + 0.1 * max|want|)`: relative for the elements of the size
/// of the tensor, absolute (relative to the tensor's scale) for those near zero, where f32
/// against PyTorch's f64 can only agree absolutely.
pub fn assert_close(what: &str, got: &[f32], want: &[f32], rel: f32) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let floor = 0.1 * want.iter().fold(0f32, |m, v| m.max(v.abs())) + f32::MIN_POSITIVE;
    let (mut worst, mut at) = (0.0f32, 0);
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        let e = (g - w).abs() / (w.abs() + floor);
        if e > worst {
            (worst, at) = (e, i);
        }
    }
    if std::env::var_os("GOLDEN_VERBOSE").is_some() {
        eprintln!("{what}: worst relative error {worst:e}");
    }
    assert!(
        worst <= rel,
        "{what}: element {at} is {} but PyTorch has {} (relative error {worst:e} > {rel:e})",
        got[at],
        want[at]
    );
}
