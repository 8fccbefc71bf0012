//! Memory the kernels write before they read: per-thread scratch matrices and uninitialised
//! outputs.
//!
//! Every buffer here is handed out uninitialised (`MaybeUninit`): im2col and gemm overwrite all
//! of it, so zero-filling first would only add a pass over memory (a memset of every output was
//! a measurable share of the small layers). The scratch matrices are reused across images and
//! layers so that a step does not allocate one per image; those grown past
//! [`SCRATCH_KEEP_BYTES`] are released when the convolution that needed them is done, so memory
//! does not stay at the largest layer's peak for the rest of the process.

use std::cell::RefCell;
use std::mem::MaybeUninit;

/// Scratch buffers larger than this (per thread) are freed after the convolution that grew them.
/// 16 MiB holds every patch matrix of the CIFAR ResNets and of a 224x224 ImageNet ResNet-50 image,
/// so training those reuses them; only larger images (detection, segmentation) give theirs back.
pub const SCRATCH_KEEP_BYTES: usize = 16 << 20;

/// The per-thread scratch matrices.
#[derive(Clone, Copy, Debug)]
pub(super) enum Scratch {
    /// A patch matrix (of the input, or of the output gradient for the input-gradient
    /// convolution).
    Col = 0,
    /// The patch-matrix gradient that col2im scatters back.
    Dcol = 1,
    /// A block's product before its images' rows move to their place, or a block's output
    /// gradient side by side.
    Out = 2,
}

type Buffer = RefCell<Vec<MaybeUninit<f32>>>;

thread_local! {
    static BUFFERS: [Buffer; 3] =
        const { [RefCell::new(Vec::new()), RefCell::new(Vec::new()), RefCell::new(Vec::new())] };
}

/// Runs `f` on this thread's `which` buffer, `len` elements long, with unspecified contents.
pub(super) fn with_scratch<R>(
    which: Scratch,
    len: usize,
    f: impl FnOnce(&mut [MaybeUninit<f32>]) -> R,
) -> R {
    BUFFERS.with(|buffers| {
        let mut buf = buffers[which as usize].borrow_mut();
        if buf.len() < len {
            buf.resize(len, MaybeUninit::uninit());
        }
        f(&mut buf[..len])
    })
}

/// After a convolution whose scratch matrices took `bytes` per thread: frees every pool thread's
/// buffers that are over [`SCRATCH_KEEP_BYTES`]. Call it outside the parallel loop, on the thread
/// that ran it (the loop ran on this thread's pool).
pub(super) fn release_large(bytes: usize) {
    if bytes > SCRATCH_KEEP_BYTES {
        rayon::broadcast(|_| release_here());
    }
}

fn release_here() {
    BUFFERS.with(|buffers| {
        for cell in buffers {
            // A buffer in use (never the case between convolutions) is left alone.
            if let Ok(mut buf) = cell.try_borrow_mut()
                && buf.capacity() * size_of::<f32>() > SCRATCH_KEEP_BYTES
            {
                *buf = Vec::new();
            }
        }
    });
}

/// The largest scratch capacity, in bytes, held by a thread of the current pool.
pub fn held_bytes() -> usize {
    rayon::broadcast(|_| {
        BUFFERS.with(|buffers| {
            buffers
                .iter()
                .map(|b| b.borrow().capacity() * size_of::<f32>())
                .sum::<usize>()
        })
    })
    .into_iter()
    .max()
    .unwrap_or(0)
}

/// Fills every thread's scratch buffers, grown to at least `len`, with `value`: tests poison
/// them with NaN so that an element a kernel reads before writing shows in its result.
#[cfg(test)]
pub(super) fn poison(len: usize, value: f32) {
    rayon::broadcast(|_| {
        BUFFERS.with(|buffers| {
            for cell in buffers {
                let mut buf = cell.borrow_mut();
                let len = len.max(buf.len());
                buf.clear();
                buf.resize(len, MaybeUninit::new(value));
            }
        })
    });
}

/// `len` uninitialised elements, for an output every element of which a kernel writes.
pub(crate) fn uninit_vec(len: usize) -> Vec<MaybeUninit<f32>> {
    let mut v = Vec::with_capacity(len);
    v.resize(len, MaybeUninit::uninit());
    v
}

/// The output `v` once written.
///
/// # Safety
///
/// Every element of `v` must have been written.
pub(crate) unsafe fn assume_init(v: Vec<MaybeUninit<f32>>) -> Vec<f32> {
    let mut v = std::mem::ManuallyDrop::new(v);
    let (ptr, len, cap) = (v.as_mut_ptr(), v.len(), v.capacity());
    // SAFETY: `MaybeUninit<f32>` and `f32` have the same size and alignment, the allocation is
    // handed over whole (`v` is not dropped), and the caller guarantees every element is written.
    unsafe { Vec::from_raw_parts(ptr.cast::<f32>(), len, cap) }
}
