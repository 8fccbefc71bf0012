//! `cargo xtask cuda-offline --wheels DIR`: the offline route for the `cuda` feature that needs
//! no GitHub download at all — LLVM 23.1 from PyPI, installed where the bundler looks.
//!
//! Why this works: `cubecl-llvm`'s build script only needs, at the bundler's `llvm_path`, the
//! sentinel plus an LLVM 23.1 tree whose `bin/llvm-config` answers `--link-static --libs`,
//! `--system-libs`, `--libdir`, `--includedir` and `--cxxflags` (tracel-llvm-bundler's
//! `config.rs`), with the NVPTX target built (`nvptx/codegen.rs` calls
//! `LLVMInitializeNVPTXTarget*`). The PyPI wheels `mlc-llvm-static` (LLVM 23.1.1 static
//! libraries, headers and a Python `llvm-config`) and `mlc-llvm-static-extra-targets` (NVPTX,
//! AMDGPU and the other targets) are such a tree; 23.1.1 is a bug-fix release of the 23.1 the
//! bundle ships, with the same C API that `llvm-sys` 231 binds. pip is reachable where crates.io
//! is, so a machine without GitHub access can fetch them (`--urls` prints the command).
//!
//! The wheels are pinned by sha256: the bundler verifies its own archive, and this route must not
//! be weaker.

use crate::cuda_offline::{Layout, SENTINEL};
use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};

/// The pinned PyPI release.
pub const WHEEL_VERSION: &str = "23.1.1.post0";
/// (file name, sha256) of the two wheels, as PyPI serves them.
pub const WHEELS: [(&str, &str); 2] = [
    (
        "mlc_llvm_static-23.1.1.post0-py3-none-manylinux_2_28_x86_64.whl",
        "dcfec888abfaa418be77d41af585805f31463584cf9c90582992c00f392c1ac5",
    ),
    (
        "mlc_llvm_static_extra_targets-23.1.1.post0-py3-none-manylinux_2_28_x86_64.whl",
        "c36e834d9a4e9cf9759f27fece65711ece7a2fc2b5a96dbb15d66f5e9e787929",
    ),
];
/// The folder inside both wheels that is an LLVM install prefix.
const PREFIX_IN_WHEEL: &str = "mlc_llvm_static/static/";

/// The command that fetches the wheels on a machine that reaches PyPI.
pub fn pip_command() -> String {
    format!(
        "python3 -m pip download --no-deps --only-binary=:all: --platform manylinux_2_28_x86_64 \
         -d DIR mlc-llvm-static=={WHEEL_VERSION} mlc-llvm-static-extra-targets=={WHEEL_VERSION}"
    )
}

/// Checks both wheels in `dir` against their pins, unpacks their LLVM prefix to `llvm_path`
/// and writes the sentinel. Nothing is written unless both wheels check out.
pub fn install_wheels(
    dir: &Path,
    layout: &Layout,
    expected: &[(&str, &str)],
) -> Result<Vec<String>> {
    if layout.llvm_path.exists() {
        bail!(
            "{} already exists; remove it first if it is to be replaced",
            layout.llvm_path.display()
        );
    }
    let mut wheels = Vec::new();
    for (name, sha) in expected {
        let path = dir.join(name);
        if !path.is_file() {
            bail!(
                "{}: missing `{name}`; fetch it with: {}",
                dir.display(),
                pip_command()
            );
        }
        let got = crate::cuda_offline::sha256_file(&path)?;
        if got != *sha {
            bail!(
                "{}: sha256 {got} differs from the pinned {sha}; the download is damaged or another build of {WHEEL_VERSION}",
                path.display()
            );
        }
        wheels.push(path);
    }
    // Unpack into a sibling first and rename at the end, so an interrupted install never leaves
    // a tree that the build script would take for complete.
    let staging = staging_path(&layout.llvm_path);
    let _ = std::fs::remove_dir_all(&staging);
    let mut files = 0;
    for wheel in &wheels {
        files += unpack_prefix(wheel, &staging)?;
    }
    std::fs::write(staging.join(SENTINEL), "mlc-llvm-static wheels\n")
        .with_context(|| format!("cannot write the sentinel in {}", staging.display()))?;
    std::fs::rename(&staging, &layout.llvm_path).with_context(|| {
        format!(
            "cannot move {} to {}",
            staging.display(),
            layout.llvm_path.display()
        )
    })?;
    Ok(vec![format!(
        "{} wheels -> {} ({files} files)",
        wheels.len(),
        layout.llvm_path.display()
    )])
}

fn staging_path(llvm_path: &Path) -> PathBuf {
    let mut name = llvm_path.file_name().unwrap_or_default().to_os_string();
    name.push(".partial");
    llvm_path.with_file_name(name)
}

/// Extracts the entries under [`PREFIX_IN_WHEEL`] into `dst`, keeping their Unix modes (the
/// `llvm-config` script must stay executable). Returns the number of files.
fn unpack_prefix(wheel: &Path, dst: &Path) -> Result<usize> {
    let file =
        std::fs::File::open(wheel).with_context(|| format!("cannot open {}", wheel.display()))?;
    let mut zip = zip::ZipArchive::new(std::io::BufReader::new(file))
        .with_context(|| format!("{}: not a wheel (zip) archive", wheel.display()))?;
    let mut n = 0;
    for i in 0..zip.len() {
        let mut entry = zip.by_index(i)?;
        let shown = String::from_utf8_lossy(entry.name_raw()).into_owned();
        let Some(rel) = entry.enclosed_name() else {
            bail!("{}: unsafe path `{shown}`", wheel.display());
        };
        let Ok(rel) = rel.strip_prefix(PREFIX_IN_WHEEL) else {
            continue;
        };
        let out = dst.join(rel);
        if entry.is_dir() {
            std::fs::create_dir_all(&out)?;
            continue;
        }
        if let Some(parent) = out.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
        }
        let mut f = std::fs::File::create(&out)
            .with_context(|| format!("cannot create {}", out.display()))?;
        std::io::copy(&mut entry, &mut f)
            .with_context(|| format!("{}: cannot extract {shown}", wheel.display()))?;
        #[cfg(unix)]
        if let Some(mode) = entry.unix_mode() {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&out, std::fs::Permissions::from_mode(mode & 0o777))?;
        }
        n += 1;
    }
    if n == 0 {
        bail!(
            "{}: no `{PREFIX_IN_WHEEL}` folder (not an mlc-llvm-static wheel)",
            wheel.display()
        );
    }
    Ok(n)
}
