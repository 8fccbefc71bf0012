//! Runtime choice of the instruction set for afan's own element loops: the batch-norm plane loops
//! of `norm::kernel` and `norm::backward` (norm_bench: 4% faster on AVX-512 than
//! on SSE2, same bits), the depthwise convolution, and `afan-train`'s fused SGD update (public
//! for it). im2col / col2im in `conv` were tried and gained nothing measurable (their
//! time is `memcpy`, already AVX-512 in glibc, and stride-2 moves), so they stay baseline code.
//!
//! Why: the workspace builds for the portable x86-64 target (SSE2 only), so plain loops vectorise
//! four floats at a time without FMA or masked tails, while the machines it runs on mostly have
//! AVX2 or AVX-512. [`Isa::run`] hands a closure to `pulp`'s (gemm's own dispatcher's) `vectorize`,
//! which calls it from a function compiled with `#[target_feature]`: an `#[inline(always)]` loop
//! inside is then vectorised for the detected instruction set, with no intrinsics written here.
//!
//! Determinism: Rust never contracts `a * b + c` into an FMA and never reassociates float sums,
//! so the wider code computes exactly what the baseline code does, operation for operation; the
//! kernels' tests check that every path gives bit-identical results.

/// The instruction set a loop is compiled for.
#[derive(Clone, Copy, Debug)]
pub enum Isa {
    /// What the build targets (SSE2 on the baseline x86-64 target).
    Baseline,
    /// AVX2 + FMA (pulp's `V3`: x86-64-v3).
    #[cfg(target_arch = "x86_64")]
    Avx2(pulp::x86::V3),
    /// AVX-512 F/BW/CD/DQ/VL (pulp's `V4`: x86-64-v4).
    #[cfg(target_arch = "x86_64")]
    Avx512(pulp::x86::V4),
}

impl Isa {
    /// The widest instruction set this CPU has (each check is one cached atomic load), capped by
    /// the environment variable `AFAN_ISA` if it is `baseline` or `avx2`: one binary can then
    /// time each path against the others (results are the same bits on all of them).
    #[inline]
    pub fn detect() -> Self {
        static CAP: std::sync::OnceLock<u8> = std::sync::OnceLock::new();
        let cap = *CAP.get_or_init(|| match std::env::var("AFAN_ISA").as_deref() {
            Ok("baseline") => 0,
            Ok("avx2") => 1,
            Err(std::env::VarError::NotPresent) => 2,
            // Read once, deep inside a kernel, where there is no error to return: reported
            // rather than ignored (as the convolution's knobs).
            Ok(other) => {
                eprintln!("warning: AFAN_ISA={other:?} is not baseline or avx2; ignoring it");
                2
            }
            Err(e) => {
                eprintln!("warning: AFAN_ISA: {e}; ignoring it");
                2
            }
        });
        if cap == 0 {
            return Isa::Baseline;
        }
        #[cfg(target_arch = "x86_64")]
        {
            if let Some(v4) = pulp::x86::V4::try_new().filter(|_| cap >= 2) {
                return Isa::Avx512(v4);
            }
            if let Some(v3) = pulp::x86::V3::try_new() {
                return Isa::Avx2(v3);
            }
        }
        Isa::Baseline
    }

    /// Every instruction set this CPU has, baseline first: what the tests compare (here and in
    /// `afan-train`'s SGD update).
    pub fn all_available() -> Vec<Self> {
        let mut all = vec![Isa::Baseline];
        #[cfg(target_arch = "x86_64")]
        {
            all.extend(pulp::x86::V3::try_new().map(Isa::Avx2));
            all.extend(pulp::x86::V4::try_new().map(Isa::Avx512));
        }
        all
    }

    /// Runs `f` compiled for this instruction set. Only code inlined into `f` is: pass a closure
    /// marked `#[inline(always)]` (each is called from three places here, so LLVM would otherwise
    /// keep it a baseline function and call it) that runs `#[inline(always)]` loop helpers.
    #[inline(always)]
    pub fn run<R>(self, f: impl FnOnce() -> R) -> R {
        match self {
            Isa::Baseline => f(),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2(v3) => v3.vectorize(f),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512(v4) => v4.vectorize(f),
        }
    }
}
