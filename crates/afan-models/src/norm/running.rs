//! The running statistics' updates: PyTorch's rule, stored at once whichever thread runs the
//! pass, recorded for replay (A-FAN's segmentation step), or kept per replica and averaged.
//!
//! Burn's `RunningState` keeps an update pending under the updating thread's id and folds the
//! pending values of *all* threads together (their mean) only when a thread that has one reads or
//! updates again. afan's passes move between threads (a step runs on whichever rayon worker takes
//! it, `crate::on_pool`; data-parallel replicas run in threads made for each step), so that
//! bookkeeping made the running statistics depend on which thread ran what, and when: a step
//! read the value from before the previous one, and values were averaged as timing fell. Here
//! every update is stored at once (`store`), and replicas chain their updates privately
//! ([`defer_running_updates`]) for the engine to store their mean in replica order
//! ([`DeferredRunningStats::store_mean`]).

use burn::module::{Module, ModuleVisitor, Param, ParamId, RunningState};
use burn::tensor::Tensor;
use std::cell::RefCell;
use std::collections::HashMap;
use std::collections::hash_map::Entry;

/// One batch's move of one layer's running statistics: the layer's (shared) running state and
/// the batch statistics it was normalized with.
#[derive(Clone)]
pub(super) struct RunningUpdate {
    pub(super) running_mean: RunningState<Tensor<1>>,
    pub(super) running_var: RunningState<Tensor<1>>,
    pub(super) momentum: f64,
    pub(super) mean: Tensor<1>,
    pub(super) var: Tensor<1>,
    pub(super) n: usize,
}

impl RunningUpdate {
    /// PyTorch's rule: `running = (1 - m) running + m batch`, with the unbiased variance
    /// (`n / (n - 1)` times the biased one the batch was normalized with) over `n` elements.
    pub(super) fn apply(&self) {
        let device = self.mean.device();
        let n = self.n as f64;
        let unbiased = if n > 1.0 { n / (n - 1.0) } else { 1.0 };
        let m = self.momentum;
        let old_mean = read(&self.running_mean).to_device(&device);
        let old_var = read(&self.running_var).to_device(&device);
        let mean = old_mean.mul_scalar(1.0 - m) + self.mean.clone().mul_scalar(m);
        let var = old_var.mul_scalar(1.0 - m) + self.var.clone().mul_scalar(m * unbiased);
        write(&self.running_mean, mean.detach());
        write(&self.running_var, var.detach());
    }
}

/// The running-statistics updates that a forward made, to be made again later.
///
/// Why: A-FAN's segmentation step shares one head pass among what the release computes in
/// three (two head passes and the clean pass, identical values in training-mode batch norm); the
/// release moves the running statistics once per pass, so the shared pass replays its updates
/// where the skipped passes would have made theirs: the running statistics come out as the
/// release's, without the convolutions.
#[derive(Clone, Default)]
pub struct RunningUpdates(Vec<RunningUpdate>);

impl RunningUpdates {
    /// Moves every recorded layer's running statistics again by its recorded batch, in the
    /// recorded order.
    pub fn replay(&self) {
        for u in &self.0 {
            u.apply();
        }
    }

    /// How many layer updates were recorded.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether none was.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Runs `f`, recording every running-statistics update that batch norms in training mode make on
/// this thread meanwhile (nested recordings see only their own).
pub fn record_running_updates<R>(f: impl FnOnce() -> R) -> (R, RunningUpdates) {
    let outer = RECORDER.with_borrow_mut(|r| r.replace(Vec::new()));
    let out = f();
    let log = RECORDER.with_borrow_mut(|r| std::mem::replace(r, outer));
    (out, RunningUpdates(log.unwrap_or_default()))
}

/// Adds `update` to this thread's recording, if one is active.
pub(super) fn record(update: RunningUpdate) {
    RECORDER.with_borrow_mut(|r| {
        if let Some(log) = r {
            log.push(update);
        }
    });
}

/// A running state's value on this thread: its deferred one inside [`defer_running_updates`],
/// else the stored one.
fn read(state: &RunningState<Tensor<1>>) -> Tensor<1> {
    let deferred = DEFERRED.with_borrow(|d| {
        let (_, value) = d.as_ref()?.get(&id_of(state)?)?;
        Some(value.clone())
    });
    deferred.unwrap_or_else(|| state.value_sync())
}

/// Makes `value` the running state's value on this thread: kept to the thread inside
/// [`defer_running_updates`], else stored.
fn write(state: &RunningState<Tensor<1>>, value: Tensor<1>) {
    let value = DEFERRED.with_borrow_mut(|d| {
        let Some(d) = d.as_mut() else {
            return Some(value);
        };
        let Some(id) = id_of(state) else {
            return Some(value);
        };
        d.insert(id, (state.clone(), value));
        None
    });
    if let Some(value) = value {
        store(state, value);
    }
}

/// Makes `value` the running state's value now, whichever thread reads it next: Burn's
/// `update` leaves it pending under this thread, `value_sync` from this thread folds it in (the
/// only value pending: every update is stored this way).
fn store(state: &RunningState<Tensor<1>>, value: Tensor<1>) {
    state.update(value);
    let _ = state.value_sync();
}

/// The running state's parameter id (what names it across clones of the module), read through
/// its `Module::visit`, the only public access to it.
fn id_of(state: &RunningState<Tensor<1>>) -> Option<ParamId> {
    struct Id(Option<ParamId>);
    impl ModuleVisitor for Id {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            self.0 = Some(param.id);
        }
    }
    let mut id = Id(None);
    state.visit(&mut id);
    id.0
}

/// Each running state a thread moved inside [`defer_running_updates`], with its last value there.
type Values = HashMap<ParamId, (RunningState<Tensor<1>>, Tensor<1>)>;

std::thread_local! {
    static RECORDER: RefCell<Option<Vec<RunningUpdate>>> = const { RefCell::new(None) };
    static DEFERRED: RefCell<Option<Values>> = const { RefCell::new(None) };
}

/// The running-statistics values that one thread kept to itself ([`defer_running_updates`]).
#[derive(Default)]
pub struct DeferredRunningStats(Values);

impl DeferredRunningStats {
    /// Stores, for every running state that any of `parts` moved, the mean of their values,
    /// added in the order of `parts` (a state moved by only some of them: the mean of those).
    /// The engine's replicas pass theirs in replica order, so the result does not depend on
    /// which replica finished first.
    pub fn store_mean(parts: Vec<DeferredRunningStats>) {
        let mut sums: HashMap<ParamId, (RunningState<Tensor<1>>, Tensor<1>, usize)> =
            HashMap::new();
        for part in parts {
            for (id, (state, value)) in part.0 {
                match sums.entry(id) {
                    Entry::Occupied(mut e) => {
                        let (_, sum, n) = e.get_mut();
                        *sum = sum.clone() + value.to_device(&sum.device());
                        *n += 1;
                    }
                    Entry::Vacant(e) => {
                        e.insert((state, value, 1));
                    }
                }
            }
        }
        for (state, sum, n) in sums.into_values() {
            let device = state.value().device();
            store(&state, sum.div_scalar(n as f64).to_device(&device));
        }
    }

    /// How many running states were moved.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether none was.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Runs `f` with this thread's batch-norm updates kept to the thread: each layer's update
/// chains from the value this thread gave it last (the stored one at first), and the stored
/// value is not touched; returns the values for [`DeferredRunningStats::store_mean`].
///
/// Why: data-parallel replicas share their running states (clones of one module) and run at
/// once; each should move them as one device would over its shard, and the run keep their
/// mean (PyTorch's DDP without SyncBN keeps rank 0's). A nested call keeps its own values,
/// starting from the stored ones.
pub fn defer_running_updates<R>(f: impl FnOnce() -> R) -> (R, DeferredRunningStats) {
    let outer = DEFERRED.with_borrow_mut(|d| d.replace(HashMap::new()));
    let out = f();
    let values = DEFERRED.with_borrow_mut(|d| std::mem::replace(d, outer));
    (out, DeferredRunningStats(values.unwrap_or_default()))
}
