//! Progress bars on stderr, hidden with `quiet` (and by indicatif when stderr is no terminal).

use indicatif::{ProgressBar, ProgressStyle};

/// A bar over `steps` items with `prefix`.
pub fn bar(steps: usize, prefix: impl Into<String>, quiet: bool) -> ProgressBar {
    if quiet {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(steps as u64);
    bar.set_style(
        ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} {msg} ({eta})")
            .expect("valid template")
            .progress_chars("=> "),
    );
    bar.set_prefix(prefix.into());
    bar
}
