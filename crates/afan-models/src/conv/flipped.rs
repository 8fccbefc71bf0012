//! The flipped, transposed weights of the input gradient's convolution ([`super::kernel`]'s
//! `InputRoute::Conv`), kept for the length of a scope instead of rebuilt by every backward pass.
//!
//! Why: an A-FAN step runs up to six backward passes (the attack's PGD/FGSM steps, then the final
//! loss over clean and augmented features) with the same weights, and each rebuilt every flipped
//! weight: `layout.rs`'s `reverse_cells` alone was 2.9-4.8% of the DeepLabV3+ ResNet-50 step
//! (docs/benchmarks.md, stop 26). Why a scope: a cache that outlives the step holds the weights'
//! buffers, so afan's SGD, which updates a uniquely held weight in place, would copy every cached
//! weight (and the cache would keep the old ones alive). The training engine enters a scope around
//! one step's forward and backward passes and leaves it (every entry dropped, buffers released)
//! before the optimizer step; outside any scope nothing is cached, as before.
//!
//! Safe by construction, whatever the caller does inside the scope: an entry holds a clone of the
//! weight's tensor (its shared buffer), so that buffer can be neither freed (its address reused by
//! another tensor) nor written (flex's `storage_mut` copies a shared buffer first) while cached; an
//! entry's key (the buffer's address, the slice within it, the weight's shape) then names exactly
//! one weight's values. A weight changed inside a scope is a new buffer, hence a miss.
//!
//! Per thread: each thread has its own scopes and cache (data-parallel replicas run their passes on
//! their own threads, each in its own scope); a lookup never holds the cache borrowed while a flip
//! runs (rayon may run other work on this thread meanwhile). Scopes nest (the cache is dropped when
//! the outermost one ends) and end on panic too (the guard's `Drop`). Memory: the flipped weights
//! of every convolution that takes this route, about the size of those weights (DeepLabV3+
//! ResNet-50: see docs/benchmarks.md), held until the scope ends instead of one at a time.
//! `AFAN_CONV_WEIGHT_CACHE=0` turns the cache off (scopes then cache nothing), to time both with
//! one binary.

use crate::flex::env_switch;
use std::any::Any;
use std::cell::RefCell;
use std::collections::HashMap;
use std::marker::PhantomData;
use std::sync::{Arc, OnceLock};

/// What names one weight's values while its buffer is held: the buffer's address, the weight's
/// elements within it, its shape.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(super) struct Key {
    /// Address of the start of the buffer holding the weight.
    pub addr: usize,
    /// The weight's elements within the buffer.
    pub range: (usize, usize),
    /// `[K, C / groups, kh, kw]`.
    pub dims: [usize; 4],
}

struct Entry {
    /// Holds the weight's buffer (see the module doc); never read.
    _owner: Box<dyn Any>,
    flipped: Arc<Vec<f32>>,
}

#[derive(Default)]
struct Cache {
    /// Scopes entered and not yet left on this thread.
    depth: usize,
    entries: HashMap<Key, Entry>,
    hits: usize,
    misses: usize,
}

thread_local! {
    static CACHE: RefCell<Cache> = RefCell::new(Cache::default());
}

/// Whether scopes cache (`AFAN_CONV_WEIGHT_CACHE`, 1 by default; 0 turns it off).
fn enabled() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| env_switch("AFAN_CONV_WEIGHT_CACHE", true))
}

/// A scope during which this thread's convolutions keep their flipped weights (see the module
/// doc): entered by [`FlippedWeights::enter`], left when the guard drops (also on panic). The
/// caller promises nothing; a weight changed inside the scope is simply a miss. Leave it before
/// updating weights in place, so that the cache no longer shares their buffers.
#[must_use = "the scope ends when the guard drops"]
pub struct FlippedWeights {
    /// Tied to this thread's cache: not `Send`.
    _thread: PhantomData<*const ()>,
}

impl FlippedWeights {
    /// Enters a scope on this thread.
    pub fn enter() -> Self {
        CACHE.with(|c| c.borrow_mut().depth += 1);
        Self {
            _thread: PhantomData,
        }
    }

    /// This thread's cache: entries, their flipped floats' bytes, hits and misses since the
    /// thread started (for tests and reports).
    pub fn counts() -> CacheCounts {
        CACHE.with(|c| {
            let c = c.borrow();
            CacheCounts {
                entries: c.entries.len(),
                bytes: c
                    .entries
                    .values()
                    .map(|e| e.flipped.len() * size_of::<f32>())
                    .sum(),
                hits: c.hits,
                misses: c.misses,
            }
        })
    }
}

impl Drop for FlippedWeights {
    fn drop(&mut self) {
        // `try_with`: a guard dropped while the thread's locals are torn down has nothing left.
        let dropped = CACHE.try_with(|c| {
            let mut c = c.borrow_mut();
            c.depth -= 1;
            if c.depth == 0 {
                std::mem::take(&mut c.entries)
            } else {
                HashMap::new()
            }
        });
        // Dropped outside the borrow (a weight's drop runs no afan code, but cheaply safe).
        drop(dropped);
    }
}

/// A scope's counts ([`FlippedWeights::counts`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CacheCounts {
    /// Weights cached now.
    pub entries: usize,
    /// Bytes of their flipped copies.
    pub bytes: usize,
    /// Lookups answered from the cache.
    pub hits: usize,
    /// Lookups inside a scope that flipped the weight.
    pub misses: usize,
}

/// `f` inside a [`FlippedWeights`] scope.
pub fn with_flipped_weights<R>(f: impl FnOnce() -> R) -> R {
    let _scope = FlippedWeights::enter();
    f()
}

/// The flipped weight named by `key`: this thread's cached one inside a scope, else `flip()`
/// (cached, with `owner()` holding the weight's buffer, when inside a scope). `owner` must hold
/// the buffer `key` names (see the module doc).
#[cfg_attr(not(feature = "flex"), allow(dead_code))]
pub(super) fn flipped_or(
    key: Key,
    owner: impl FnOnce() -> Box<dyn Any>,
    flip: impl FnOnce() -> Vec<f32>,
) -> Arc<Vec<f32>> {
    let in_scope = |c: &Cache| enabled() && c.depth > 0;
    let hit = CACHE.with(|c| {
        let mut c = c.borrow_mut();
        if !in_scope(&c) {
            return None;
        }
        let hit = c.entries.get(&key).map(|e| Arc::clone(&e.flipped));
        match hit {
            Some(_) => c.hits += 1,
            None => c.misses += 1,
        }
        Some(hit)
    });
    let Some(hit) = hit else {
        return Arc::new(flip());
    };
    if let Some(flipped) = hit {
        return flipped;
    }
    // Not borrowed while flipping: rayon may run other convolutions on this thread meanwhile.
    let flipped = Arc::new(flip());
    CACHE.with(|c| {
        let mut c = c.borrow_mut();
        // Still inside a scope: one entered meanwhile on this thread has also been left.
        if in_scope(&c) {
            let entry = Entry {
                _owner: owner(),
                flipped: Arc::clone(&flipped),
            };
            c.entries.insert(key, entry);
        }
    });
    flipped
}
