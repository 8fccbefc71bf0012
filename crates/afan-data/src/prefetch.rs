//! Background preparation of the next batches.
//!
//! Decoding and augmenting a batch takes CPU time that would otherwise stall
//! the accelerator between steps. These wrappers run the batch iterator on a
//! separate thread, a bounded channel (`depth` batches) ahead of the
//! consumer. The order of batches is unchanged, so reproducibility is kept.

use std::sync::mpsc::{Receiver, sync_channel};
use std::thread::JoinHandle;

use crate::loader::Batch;

/// An iterator whose items are produced on a background thread.
///
/// Dropping it early stops the producer after the batch it is working on.
/// A panic in the producer is re-raised in the consumer's thread.
pub struct Prefetch {
    rx: Option<Receiver<Batch>>,
    handle: Option<JoinHandle<()>>,
    remaining: usize,
}

impl Prefetch {
    /// Starts producing `iter`'s batches, at most `depth` (at least 1) ahead.
    /// For a borrowed dataset use [`with_prefetch`], or build `iter` with
    /// [`crate::loader::shared_batches`].
    pub fn new<I>(iter: I, depth: usize) -> Self
    where
        I: ExactSizeIterator<Item = Batch> + Send + 'static,
    {
        let remaining = iter.len();
        let (tx, rx) = sync_channel(depth.max(1));
        let handle = std::thread::Builder::new()
            .name("afan-prefetch".into())
            .spawn(move || {
                for batch in iter {
                    if tx.send(batch).is_err() {
                        break; // consumer gone
                    }
                }
            })
            .expect("cannot spawn the prefetch thread");
        Prefetch {
            rx: Some(rx),
            handle: Some(handle),
            remaining,
        }
    }
}

impl Iterator for Prefetch {
    type Item = Batch;

    fn next(&mut self) -> Option<Batch> {
        match self.rx.as_ref()?.recv() {
            Ok(batch) => {
                self.remaining = self.remaining.saturating_sub(1);
                Some(batch)
            }
            Err(_) => {
                // The producer finished or panicked: surface a panic here.
                self.rx = None;
                self.remaining = 0;
                if let Some(Err(panic)) = self.handle.take().map(JoinHandle::join) {
                    std::panic::resume_unwind(panic);
                }
                None
            }
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.remaining, Some(self.remaining))
    }
}

impl ExactSizeIterator for Prefetch {}

impl Drop for Prefetch {
    fn drop(&mut self) {
        // Closing the channel first makes the producer's next send fail.
        self.rx = None;
        if let Some(handle) = self.handle.take() {
            let _ = handle.join();
        }
    }
}

/// Runs `f` on the batches of `iter`, which are produced on a scoped
/// background thread at most `depth` ahead. Unlike [`Prefetch`], `iter` may
/// borrow (e.g. `batches(&dataset, ..)`). A panic of the producer propagates
/// when `f` returns.
pub fn with_prefetch<I, R>(
    iter: I,
    depth: usize,
    f: impl FnOnce(&mut dyn Iterator<Item = Batch>) -> R,
) -> R
where
    I: Iterator<Item = Batch> + Send,
{
    let (tx, rx) = sync_channel(depth.max(1));
    std::thread::scope(|s| {
        s.spawn(move || {
            for batch in iter {
                if tx.send(batch).is_err() {
                    break;
                }
            }
        });
        let mut it = rx.into_iter();
        let result = f(&mut it);
        drop(it); // unblock the producer before the scope joins it
        result
    })
}
