//! Mesa's lavapipe, a Vulkan 1.3 device that runs on the CPU, for the wgpu phase of
//! `cargo xtask test`: CI has no GPU, and this is how the GPU code path (Burn's cubecl kernels,
//! fusion, autotune, afan's non-flex fallbacks) runs there at all (docs/gpu.md).
//!
//! Installed from Debian's packages when missing, quietly (apt's output is shown only when it
//! fails), and only where that is possible without asking: as root with apt-get, as on CI.
//! Elsewhere a missing driver is an error that says what to install, or how to skip the phase.

use anyhow::{Result, bail};
use std::process::{Command, Stdio};

/// The Debian/Ubuntu packages: the Vulkan loader and Mesa's drivers (lavapipe among them).
pub const PACKAGES: [&str; 2] = ["mesa-vulkan-drivers", "libvulkan1"];

/// Set to `0` to skip the wgpu phase on a machine where lavapipe cannot be installed.
pub const SKIP_ENV: &str = "AFAN_WGPU_TESTS";

/// Where Vulkan loaders look for drivers; lavapipe's manifest is `lvp_icd.<arch>.json`.
const ICD_DIRS: [&str; 3] = [
    "/usr/share/vulkan/icd.d",
    "/etc/vulkan/icd.d",
    "/usr/local/share/vulkan/icd.d",
];

/// Whether the wgpu phase should run: not when `AFAN_WGPU_TESTS=0`.
pub fn wanted() -> bool {
    std::env::var(SKIP_ENV).map_or(true, |v| v.trim() != "0")
}

/// Makes sure lavapipe is installed, installing it as root with apt-get when it is not.
pub fn ensure() -> Result<()> {
    if installed() {
        return Ok(());
    }
    let missing_help = format!(
        "the wgpu tests run on Mesa's lavapipe, which is not installed: install the packages {} \
         (Debian/Ubuntu: `sudo apt-get install {}`), or skip the wgpu phase with {SKIP_ENV}=0",
        PACKAGES.join(" and "),
        PACKAGES.join(" ")
    );
    if !is_root() || !has("apt-get") {
        bail!("{missing_help}");
    }
    eprintln!(
        "+ apt-get install {} (lavapipe, quietly)",
        PACKAGES.join(" ")
    );
    apt(&["update", "-qq"])?;
    let mut install = vec!["install", "-y", "-qq", "--no-install-recommends"];
    install.extend(PACKAGES);
    apt(&install)?;
    if !installed() {
        bail!(
            "apt-get installed {} but lavapipe is still not found; {missing_help}",
            PACKAGES.join(" ")
        );
    }
    Ok(())
}

/// The packages are installed (dpkg says so), or, on a system without dpkg, a lavapipe driver
/// manifest is where Vulkan loaders look.
fn installed() -> bool {
    let dpkg = Command::new("dpkg-query")
        .args(["-W", "-f", "${Status}\\n"])
        .args(PACKAGES)
        .stderr(Stdio::null())
        .output();
    match dpkg {
        Ok(out) => {
            let status = String::from_utf8_lossy(&out.stdout);
            out.status.success()
                && status.lines().count() == PACKAGES.len()
                && status.lines().all(|l| l.trim() == "install ok installed")
        }
        Err(_) => ICD_DIRS.iter().any(|dir| {
            std::fs::read_dir(dir).is_ok_and(|entries| {
                entries
                    .flatten()
                    .any(|e| e.file_name().to_string_lossy().starts_with("lvp_icd"))
            })
        }),
    }
}

/// Runs apt-get without prompts, showing its output only if it fails.
fn apt(args: &[&str]) -> Result<()> {
    let out = Command::new("apt-get")
        .args(args)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .stdin(Stdio::null())
        .output()?;
    if !out.status.success() {
        eprintln!("{}", String::from_utf8_lossy(&out.stdout));
        eprintln!("{}", String::from_utf8_lossy(&out.stderr));
        bail!("apt-get {} failed ({})", args.join(" "), out.status);
    }
    Ok(())
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

fn has(program: &str) -> bool {
    Command::new(program)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}
