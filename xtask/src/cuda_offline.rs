//! `cargo xtask cuda-offline`: installs a pre-fetched LLVM bundle where Burn's CUDA backend looks
//! for it, so `cargo build --features cuda` works on a machine without internet.
//!
//! Why this is needed: `burn/cuda` pulls `cubecl-cuda`, whose build-dependency `cubecl-llvm`
//! links LLVM 23.1 from `tracel-llvm-bundler` 23.1.0-4. That crate's `build.rs` downloads the
//! bundle from GitHub unless it is already installed. Its rules (build.rs and src/config.rs of
//! tracel-llvm-bundler-23.1.0-4), mirrored by the constants below:
//! - installed means the sentinel `<llvm_path>/.tracel-llvm-installed` exists; then nothing runs;
//! - `llvm_path()` = `dirs::data_local_dir()/tracel/tracel-llvm-23.1.0-4`, and on Linux
//!   `data_local_dir()` is `$XDG_DATA_HOME` (if absolute) or `$HOME/.local/share`;
//! - otherwise it reads `$HOME/.cache/tracel/tracel-llvm-23.1.0-4-linux-x64.checksums.json`
//!   (downloading it first unless `TRACEL_LLVM_BUNDLER_SKIP_CHECKSUM_DOWNLOAD` is set), uses
//!   `$HOME/.cache/tracel/tracel-llvm-23.1.0-4-linux-x64.tar.xz` if its sha256 equals the
//!   sidecar's `archive_sha256` (downloading it otherwise), extracts it next to `llvm_path`,
//!   checks `content_sha256` of the tree and writes the sentinel.
//!
//! So two offline routes exist, both implemented here: place the two release files in the cache
//! and build with the environment variable set (the build script then extracts and verifies), or
//! copy an already-extracted bundle (with its sentinel) from another machine to `llvm_path`.

use anyhow::{Context, Result, bail};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

/// `TRACEL_LLVM_FULL_VERSION` of tracel-llvm-bundler 23.1.0-4.
pub const LLVM_FULL_VERSION: &str = "23.1.0-4";
/// Release base URL (`TRACEL_LLVM_ARTIFACT_BASE_URL`).
const BASE_URL: &str = "https://github.com/tracel-ai/tracel-llvm/releases/download";
/// The environment variable that stops the build script from downloading the checksum file.
pub const SKIP_ENV: &str = "TRACEL_LLVM_BUNDLER_SKIP_CHECKSUM_DOWNLOAD";
/// Written by the build script after a verified extraction; its presence skips everything.
pub const SENTINEL: &str = ".tracel-llvm-installed";

/// The release file names for this machine (`Environment::filename()`).
pub fn release_names() -> Result<(&'static str, &'static str)> {
    match (std::env::consts::OS, std::env::consts::ARCH) {
        ("linux", "x86_64") => Ok(("linux-x64.tar.xz", "linux-x64.checksums.json")),
        ("linux", "aarch64") => Ok(("linux-AArch64.tar.xz", "linux-AArch64.checksums.json")),
        ("macos", "x86_64") => Ok(("macos-x64.tar.xz", "macos-x64.checksums.json")),
        ("macos", "aarch64") => Ok(("macos-AArch64.tar.xz", "macos-AArch64.checksums.json")),
        (os, arch) => bail!("tracel-llvm-bundler has no LLVM bundle for {os}/{arch}"),
    }
}

/// Where the build script looks, from the environment it will see.
#[derive(Debug, Clone, PartialEq)]
pub struct Layout {
    /// `$HOME/.cache/tracel`.
    pub cache_dir: PathBuf,
    /// The extracted bundle, `<data_local_dir>/tracel/tracel-llvm-23.1.0-4`.
    pub llvm_path: PathBuf,
}

impl Layout {
    /// The paths for a given `$HOME` and `$XDG_DATA_HOME` (`dirs` ignores a relative one).
    pub fn new(home: &Path, xdg_data_home: Option<&Path>) -> Self {
        let data = xdg_data_home
            .filter(|p| p.is_absolute())
            .map(Path::to_path_buf)
            .unwrap_or_else(|| home.join(".local/share"));
        Self {
            cache_dir: home.join(".cache").join("tracel"),
            llvm_path: data
                .join("tracel")
                .join(format!("tracel-llvm-{LLVM_FULL_VERSION}")),
        }
    }

    /// The layout for this process's environment.
    pub fn from_env() -> Result<Self> {
        let home = std::env::var_os("HOME")
            .filter(|h| !h.is_empty())
            .context("HOME is not set; the LLVM bundler resolves its cache from $HOME")?;
        let xdg = std::env::var_os("XDG_DATA_HOME").map(PathBuf::from);
        Ok(Self::new(Path::new(&home), xdg.as_deref()))
    }

    /// The cache names of the archive and its checksum sidecar.
    pub fn cache_files(&self) -> Result<(PathBuf, PathBuf)> {
        let (archive, sums) = release_names()?;
        let name = |f: &str| format!("tracel-llvm-{LLVM_FULL_VERSION}-{f}");
        Ok((
            self.cache_dir.join(name(archive)),
            self.cache_dir.join(name(sums)),
        ))
    }

    /// The build script's "already installed" test.
    pub fn sentinel(&self) -> PathBuf {
        self.llvm_path.join(SENTINEL)
    }
}

/// The two URLs to fetch on a networked machine.
pub fn urls() -> Result<[String; 2]> {
    let (archive, sums) = release_names()?;
    let url = |f: &str| format!("{BASE_URL}/v{LLVM_FULL_VERSION}/{f}");
    Ok([url(archive), url(sums)])
}

/// Lowercase hex sha256 of a file.
pub(crate) fn sha256_file(path: &Path) -> Result<String> {
    let mut file =
        std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut hasher = Sha256::new();
    std::io::copy(&mut file, &mut hasher)
        .with_context(|| format!("cannot read {}", path.display()))?;
    Ok(format!("{:x}", hasher.finalize()))
}

/// The sidecar's `archive_sha256`, as the build script parses it (a UTF-8 BOM is allowed).
fn expected_sha256(sums: &Path) -> Result<String> {
    let text =
        std::fs::read_to_string(sums).with_context(|| format!("cannot read {}", sums.display()))?;
    let json: serde_json::Value = serde_json::from_str(text.trim_start_matches('\u{FEFF}'))
        .with_context(|| format!("{}: not JSON", sums.display()))?;
    for field in ["archive_sha256", "content_sha256"] {
        if json.get(field).and_then(|v| v.as_str()).is_none() {
            bail!(
                "{}: no string field `{field}` (expected the tracel-llvm checksums sidecar)",
                sums.display()
            );
        }
    }
    Ok(json["archive_sha256"]
        .as_str()
        .unwrap()
        .to_ascii_lowercase())
}

/// Finds `name` (the release name) or its cache name in `dir`.
fn find(dir: &Path, release: &str) -> Result<PathBuf> {
    let cached = format!("tracel-llvm-{LLVM_FULL_VERSION}-{release}");
    [release, cached.as_str()]
        .iter()
        .map(|n| dir.join(n))
        .find(|p| p.is_file())
        .with_context(|| {
            format!(
                "{}: missing `{release}` (or `{cached}`); fetch it from {BASE_URL}/v{LLVM_FULL_VERSION}/{release}",
                dir.display()
            )
        })
}

/// Copies the archive and its sidecar from `bundle` into the cache, after checking the archive
/// against the sidecar. Returns the lines to report.
pub fn install_archive(bundle: &Path, layout: &Layout) -> Result<Vec<String>> {
    let (archive_name, sums_name) = release_names()?;
    let archive = find(bundle, archive_name)?;
    let sums = find(bundle, sums_name)?;
    let expected = expected_sha256(&sums)?;
    let got = sha256_file(&archive)?;
    if got != expected {
        bail!(
            "{}: sha256 {got} differs from archive_sha256 {expected} in {}; the download is damaged or belongs to another release than v{LLVM_FULL_VERSION}",
            archive.display(),
            sums.display()
        );
    }
    std::fs::create_dir_all(&layout.cache_dir)
        .with_context(|| format!("cannot create {}", layout.cache_dir.display()))?;
    let (archive_dst, sums_dst) = layout.cache_files()?;
    let mut report = vec![format!("archive sha256 {got} matches {}", sums.display())];
    for (src, dst) in [(&archive, &archive_dst), (&sums, &sums_dst)] {
        if src != dst {
            std::fs::copy(src, dst)
                .with_context(|| format!("cannot copy {} to {}", src.display(), dst.display()))?;
        }
        report.push(format!("{} -> {}", src.display(), dst.display()));
    }
    Ok(report)
}

/// Copies an extracted bundle (a `tracel-llvm-23.1.0-4` folder with `bin/llvm-config` and the
/// sentinel, as the build script leaves it) to `llvm_path`.
pub fn install_extracted(src: &Path, layout: &Layout) -> Result<Vec<String>> {
    let config = src.join("bin").join("llvm-config");
    if !config.is_file() {
        bail!(
            "{}: not an extracted LLVM bundle (no bin/llvm-config)",
            src.display()
        );
    }
    if !src.join(SENTINEL).is_file() {
        bail!(
            "{}: no {SENTINEL}; the build script writes it only after verifying the extracted tree, so copy a bundle that finished installing",
            src.display()
        );
    }
    if layout.llvm_path.exists() {
        bail!(
            "{} already exists; remove it first if it is to be replaced",
            layout.llvm_path.display()
        );
    }
    let files = copy_tree(src, &layout.llvm_path)?;
    Ok(vec![format!(
        "{} -> {} ({files} files)",
        src.display(),
        layout.llvm_path.display()
    )])
}

fn copy_tree(src: &Path, dst: &Path) -> Result<usize> {
    std::fs::create_dir_all(dst).with_context(|| format!("cannot create {}", dst.display()))?;
    let mut n = 0;
    for entry in std::fs::read_dir(src).with_context(|| format!("cannot read {}", src.display()))? {
        let entry = entry?;
        let (from, to) = (entry.path(), dst.join(entry.file_name()));
        let kind = entry.file_type()?;
        if kind.is_dir() {
            n += copy_tree(&from, &to)?;
        } else if kind.is_symlink() {
            #[cfg(unix)]
            std::os::unix::fs::symlink(std::fs::read_link(&from)?, &to)
                .with_context(|| format!("cannot link {}", to.display()))?;
            n += 1;
        } else {
            std::fs::copy(&from, &to)
                .with_context(|| format!("cannot copy {} to {}", from.display(), to.display()))?;
            n += 1;
        }
    }
    Ok(n)
}

const USAGE: &str = "usage: cargo xtask cuda-offline (--urls | --wheels DIR | --bundle DIR | --extracted DIR | --status)";

/// The command line of the task.
pub fn main(args: &[String]) -> Result<()> {
    let layout = Layout::from_env()?;
    let dir = |i: usize| -> Result<PathBuf> {
        args.get(i)
            .map(PathBuf::from)
            .with_context(|| USAGE.to_string())
    };
    let report = match args.first().map(String::as_str) {
        Some("--urls") => {
            let (archive, sums) = layout.cache_files()?;
            println!("fetch on a machine with internet (e.g. curl -LO URL):");
            for u in urls()? {
                println!("  {u}");
            }
            println!(
                "then here: cargo xtask cuda-offline --bundle DIR (they become {} and {})",
                archive.display(),
                sums.display()
            );
            println!("or, from PyPI (LLVM 23.1.1, no GitHub access needed):");
            println!("  {}", crate::cuda_wheels::pip_command());
            println!("then here: cargo xtask cuda-offline --wheels DIR");
            return Ok(());
        }
        Some("--bundle") => install_archive(&dir(1)?, &layout)?,
        Some("--wheels") => {
            crate::cuda_wheels::install_wheels(&dir(1)?, &layout, &crate::cuda_wheels::WHEELS)?
        }
        Some("--extracted") => install_extracted(&dir(1)?, &layout)?,
        Some("--status") => vec![],
        _ => bail!("{USAGE}"),
    };
    for line in report {
        println!("{line}");
    }
    if layout.sentinel().is_file() {
        println!(
            "LLVM {LLVM_FULL_VERSION} is installed at {} (the build script will not download anything)",
            layout.llvm_path.display()
        );
        println!("build: cargo build --release -p afan-cli --features cuda");
    } else {
        let (archive, sums) = layout.cache_files()?;
        let ready = archive.is_file() && sums.is_file();
        println!(
            "{} not installed yet; cache {}: {}",
            layout.llvm_path.display(),
            layout.cache_dir.display(),
            if ready {
                "archive and checksums present"
            } else {
                "incomplete (see --urls)"
            }
        );
        if ready {
            println!(
                "build: {SKIP_ENV}=1 cargo build --release -p afan-cli --features cuda\n(the build script then checks the archive, extracts it to {} and verifies it)",
                layout.llvm_path.display()
            );
        }
    }
    Ok(())
}

#[cfg(test)]
#[path = "cuda_offline_tests.rs"]
mod tests;
