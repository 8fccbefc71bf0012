//! `exp` of a softmax's shifted logits (`x - max` or `x - logsumexp`: at most 0) in a form the
//! compiler vectorises: Cephes' `expf` (range reduction by `ln 2` in two parts, a degree-5
//! polynomial, the power of two built from its exponent bits), written with plain arithmetic
//! and selects, no calls.
//!
//! Why hand-written: `f32::exp` is a call to libm's `expf` per element, which no loop around it
//! vectorises; the loss computes one `exp` per logit each way (2 x 700k in the benchmark's
//! segmentation step), and as calls they were most of its time (PyTorch's is Sleef's vectorised
//! `exp`). No crate in the workspace provides a vectorisable `exp` for `f32` (flex's SIMD
//! crates, macerator and pulp, have none: flex's own softmax calls the scalar one).
//!
//! Accuracy: within 2 ulp of `f32::exp` on `[-87.3, 0]` (tested); below that the result is 0
//! (`exp(-87.3)` is ~1.2e-38, the smallest normal `f32`); NaN stays NaN. Only plain `f32`
//! arithmetic (no fused multiply-add: Rust does not contract), so the bits are the same on every
//! instruction set.

const LOG2E: f32 = std::f32::consts::LOG2_E;
/// `ln 2` split in two: `C1` has few significant bits, so `n * C1` is exact.
const C1: f32 = 0.693_359_4;
const C2: f32 = -2.121_944_4e-4;
/// Below this, `exp` is under the smallest normal `f32`: 0.
const LOWEST: f32 = -87.3;

/// `exp(x)` for `x <= 0` (or NaN); see the module doc.
#[inline(always)]
pub(super) fn exp_nonpositive(x: f32) -> f32 {
    // `if` rather than `max`/`min`: a NaN fails both comparisons and goes through as NaN.
    let xc = if x < LOWEST { LOWEST } else { x };
    let xc = if xc > 0.0 { 0.0 } else { xc };
    let n = (xc * LOG2E + 0.5).floor();
    let r = xc - n * C1 - n * C2;
    let p = ((((1.987_569_2e-4 * r + 1.398_2e-3) * r + 8.333_452e-3) * r + 4.166_579_6e-2) * r
        + 1.666_666_5e-1)
        * r
        + 0.5;
    let p = p * r * r + r + 1.0;
    // `n` is in [-126, 0] here (NaN casts to 0): `2^n` from its biased exponent.
    let two_n = f32::from_bits(((n as i32 + 127) as u32) << 23);
    if x < LOWEST { 0.0 } else { p * two_n }
}

#[cfg(test)]
mod tests {
    use super::exp_nonpositive;

    fn ulps(a: f32, b: f32) -> u32 {
        (a.to_bits() as i64 - b.to_bits() as i64).unsigned_abs() as u32
    }

    #[test]
    fn within_two_ulp_of_expf_on_the_range() {
        let mut worst = (0u32, 0f32);
        for i in 0..=2_000_000u32 {
            let x = -87.3 * i as f32 / 2_000_000.0;
            let u = ulps(exp_nonpositive(x), x.exp());
            if u > worst.0 {
                worst = (u, x);
            }
        }
        assert!(worst.0 <= 2, "{} ulp at x = {}", worst.0, worst.1);
    }

    /// The same bits whatever instruction set the loop is compiled for (the kernels run it under
    /// `Isa::run`).
    #[test]
    fn the_same_bits_on_every_instruction_set() {
        use crate::simd::Isa;
        let xs: Vec<f32> = (0..100_000).map(|i| -90.0 * i as f32 / 100_000.0).collect();
        #[inline(always)]
        fn all(xs: &[f32]) -> Vec<u32> {
            xs.iter().map(|&x| exp_nonpositive(x).to_bits()).collect()
        }
        let runs: Vec<Vec<u32>> = Isa::all_available()
            .into_iter()
            .map(|isa| {
                isa.run(
                    #[inline(always)]
                    || all(&xs),
                )
            })
            .collect();
        assert!(
            runs.windows(2).all(|w| w[0] == w[1]),
            "{} instruction sets",
            runs.len()
        );
    }

    #[test]
    fn edges() {
        assert_eq!(exp_nonpositive(0.0), 1.0);
        assert_eq!(exp_nonpositive(-0.0), 1.0);
        assert_eq!(exp_nonpositive(-88.0), 0.0);
        assert_eq!(exp_nonpositive(f32::NEG_INFINITY), 0.0);
        assert!(exp_nonpositive(f32::NAN).is_nan());
    }
}
