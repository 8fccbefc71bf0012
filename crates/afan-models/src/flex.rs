//! What afan's own CPU kernels (convolution, batch norm, ReLU6, max pool, resize, cross-entropy)
//! share about Burn's `flex` backend: whether a device is flex, the benchmarks' switch back to
//! Burn's op, and moving contiguous `f32` data in and out of `FlexTensor`s.

use burn::tensor::{DType, Device, Tensor};
use std::sync::atomic::{AtomicBool, Ordering};

/// Whether `device` is the `flex` backend (with or without autodiff), where afan's kernels run.
#[cfg(feature = "flex")]
pub(crate) fn is_flex(device: &Device) -> bool {
    use burn::backend::DispatchDevice;
    matches!(
        device.clone().inner().as_dispatch(),
        DispatchDevice::Flex(_)
    )
}

/// Without the `flex` feature no device runs afan's kernels.
#[cfg(not(feature = "flex"))]
pub(crate) fn is_flex(_: &Device) -> bool {
    false
}

/// Benchmarks only: one op's switch back to Burn's own implementation on flex (the path before
/// afan's kernel), so that one binary times both (`afan bench` with `AFAN_BENCH_<OP>=burn`).
pub(crate) struct BurnOnFlex(AtomicBool);

impl BurnOnFlex {
    pub(crate) const fn new() -> Self {
        Self(AtomicBool::new(false))
    }

    pub(crate) fn set(&self, on: bool) {
        self.0.store(on, Ordering::Relaxed);
    }

    /// Whether the switch is on (Burn's op chosen on flex).
    pub(crate) fn is_set(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }

    /// Whether afan's `f32` kernel takes `x`: an `f32` tensor on flex, the switch off.
    pub(crate) fn kernel_takes<const D: usize>(&self, x: &Tensor<D>) -> bool {
        is_flex(&x.device()) && x.dtype() == DType::F32 && !self.is_set()
    }
}

/// The number in the environment variable `name`, else `default` (the kernels' numeric benchmark
/// knobs: `AFAN_CONV_BLOCK_COLUMNS`, `AFAN_CONV_BAND_BYTES`, ...; the on/off ones go through
/// [`env_switch`]). A value that is not a number is reported on
/// stderr, not ignored silently: these are read once, deep inside a kernel, where there is no
/// error to return.
pub(crate) fn env_or(name: &str, default: usize) -> usize {
    let Ok(v) = std::env::var(name) else {
        return default;
    };
    v.parse().unwrap_or_else(|_| {
        eprintln!("warning: {name}={v:?} is not a whole number; using {default}");
        default
    })
}

/// The on/off switch in the environment variable `name` (`0` or `1`), else `default` (the
/// kernels' A/B switches: `AFAN_DEPTHWISE_ROWS`, `AFAN_CONV_WEIGHT_CACHE`, `AFAN_NORM_RELU6`,
/// `AFAN_RESIZE_SEPARABLE`). Any other value is reported on stderr, naming the variable, and the
/// default kept, as [`env_or`] does for a non-number.
pub(crate) fn env_switch(name: &str, default: bool) -> bool {
    match env_or(name, usize::from(default)) {
        0 => false,
        1 => true,
        v => {
            eprintln!(
                "warning: {name}={v} is neither 0 nor 1; using {}",
                u8::from(default)
            );
            default
        }
    }
}

#[cfg(feature = "flex")]
pub(crate) use tensors::*;

#[cfg(feature = "flex")]
mod tensors {
    use burn::backend::TensorMetadata;
    use burn::backend::flex::FlexTensor;
    use burn::tensor::{Shape, TensorData};

    /// The four dimensions of an NCHW (or `[K, C, kh, kw]`) tensor.
    pub(crate) fn dims4(t: &FlexTensor) -> [usize; 4] {
        let shape = t.shape();
        [shape[0], shape[1], shape[2], shape[3]]
    }

    /// A contiguous `f32` tensor of `shape` owning `values` (no copy).
    pub(crate) fn flex_tensor<const D: usize>(values: Vec<f32>, shape: [usize; D]) -> FlexTensor {
        FlexTensor::from_data(TensorData::new(values, Shape::from(shape)))
    }

    /// Plain contiguous storage, which the kernels index directly (views are copied once).
    pub(crate) fn contiguous(t: FlexTensor) -> FlexTensor {
        if t.is_contiguous() && t.layout().start_offset() == 0 {
            t
        } else {
            t.to_contiguous()
        }
    }
}

/// Runs `f` on a thread of rayon's current pool (on this thread when it is one already) and
/// returns its result.
///
/// Why: a training step, or an evaluation, is hundreds of small parallel operations. Called from
/// a thread outside the pool, each one is handed to the pool and the caller sleeps until it is
/// done: at 2 threads MobileNetV2's A-FAN step spent 11% of its samples in the kernel's scheduler
/// (waking workers, futex waits). From a worker, the caller takes part in each operation instead
/// (the engine's step -8%, `afan eval` of DeepLabV3+ -13 to -18%: docs/benchmarks.md, stop 29).
/// What a kernel decided by "called from outside the pool" it now decides otherwise
/// (`conv::patches::split_channels`), and what Burn keeps per thread was made not to matter
/// (`norm`'s running statistics).
pub fn on_pool<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    if rayon::current_thread_index().is_some() {
        return f();
    }
    // `rayon::scope` runs its body on a worker of the current pool when called from outside it.
    rayon::scope(|_| f())
}
