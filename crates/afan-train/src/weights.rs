//! Initial weights from the files users bring: what a lenient load says about what did not fit.

use crate::error::{Result, TrainError};
use afan_models::ImportReport;

/// The account of a lenient load: an error when nothing fitted (almost surely the wrong file or
/// architecture), a one-line note naming what stayed initialised when the load was partial.
pub fn partial_note(report: &ImportReport, source: &str, target: &str) -> Result<Option<String>> {
    if report.loaded.is_empty() {
        return Err(TrainError::Model(format!(
            "no tensor of {source} fits {target}: {}",
            report.problems()
        )));
    }
    Ok((!report.is_complete()).then(|| {
        format!(
            "loaded {} tensors of {source}; kept initialised or ignored: {}",
            report.loaded.len(),
            report.problems()
        )
    }))
}
