//! The twin of `xtask/reference/hash_weights.py`: the same values, bit for bit, from a key name
//! and an element index, so golden fixtures need not carry the weights of large models.

fn fnv1a(key: &str) -> u64 {
    key.bytes().fold(0xCBF2_9CE4_8422_2325, |h, b| {
        (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01B3)
    })
}

/// `n` values in [0, 1), multiples of 2^-24.
pub fn uniform(key: &str, n: usize) -> Vec<f64> {
    let h = fnv1a(key);
    (0..n as u64)
        .map(|i| {
            let mut z = h.wrapping_add(i).wrapping_add(0x9E37_79B9_7F4A_7C15);
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            (z >> 40) as f64 / (1u64 << 24) as f64
        })
        .collect()
}

/// The tensor `key` of `shape`, by what kind of parameter its name says it is.
pub fn value(key: &str, shape: &[usize]) -> Vec<f32> {
    let n = shape.iter().product();
    let fan_in: usize = shape.iter().skip(1).product();
    uniform(key, n)
        .into_iter()
        .map(|u| {
            let v = if key.ends_with("running_var") {
                0.5 + u
            } else if key.ends_with("running_mean") || key.ends_with("bias") {
                0.2 * (2.0 * u - 1.0)
            } else if shape.len() == 1 {
                0.5 + 0.5 * u
            } else {
                (2.0 * u - 1.0) * (3.0 / fan_in as f64).sqrt()
            };
            v as f32
        })
        .collect()
}
