//! The afan training engine: one loop for every task, usable from a Rust program.
//!
//! A task — [`classification`], [`detection`], [`segmentation`], or one of your own —
//! implements [`Task`]: its configuration section, its data, its model and the loss of one step
//! for each method (baseline, A-FAN, pixel PGD). [`train()`] does the rest, the same way for
//! every task: iterations with epochs derived, per-step seeding, the learning-rate schedule,
//! evaluation and checkpoint cadences, one run directory (an OS lock, never overwritten
//! unasked) with `config.toml`, `metrics.jsonl`, `curves.png`, `last.ckpt` and `best.ckpt` in
//! one checkpoint format with checksums, exact resumption, a NaN guard, data-parallel
//! replicas over a device list and f16/bf16 mixed precision.
//!
//! ```no_run
//! use afan_train::classification::{ClassificationTask, config};
//! use afan_train::{Purpose, Task, TrainOptions, train};
//!
//! let mut run = config::quickstart();
//! run.common.epochs = Some(1);
//! let task = ClassificationTask::open(run, Purpose::Train)?;
//! let device = afan_core::device::parse_device("cpu")?;
//! let summary = train(&task, &TrainOptions::new("runs/example", device))?;
//! println!("top-1 {:?}", summary.last);
//! # Ok::<(), afan_train::TrainError>(())
//! ```
//!
//! Like `afan-core`, the crate compiles no backend unless asked: its `flex` (default), `wgpu`
//! and `cuda` features decide which devices [`afan_core::device::parse_device`] can build.

pub mod checkpoint;
pub mod classification;
pub mod config;
pub mod detection;
mod error;
pub mod fault;
mod fsutil;
pub mod optim;
pub mod parallel;
pub mod plot;
pub mod precision;
pub mod progress;
pub mod records;
pub mod run_dir;
pub mod schedule;
pub mod segmentation;
mod sgd;
mod task;
mod task_kind;
pub mod tensors;
#[cfg(test)]
mod test_lock;
mod train;
pub mod weights;

pub use checkpoint::Checkpoint;
pub use config::{CommonConfig, RunConfig, TaskSection};
pub use error::{Context, Result, TrainError};
pub use fsutil::write_atomic;
pub use run_dir::OpenMode;
pub use task::{Evaluation, Measure, Purpose, StepContext, StepOutput, Task, Value};
pub use task_kind::{Method, TaskKind};
pub use train::{Summary, TrainOptions, train};
