//! Run-time choice of backend. Which backends exist is a compile-time matter (cargo features
//! `flex`, `wgpu`, `cuda`); which one a run uses is `--device` / `BURN_DEVICE`.

use anyhow::{Result, bail};
use burn::tensor::Device;

/// Names accepted by `--device`, for help texts.
pub const DEVICE_HELP: &str = "cpu (= flex, the default), wgpu, wgpu:N, cuda, cuda:N";

/// Parses a device name into a Burn device (without autodiff).
pub fn parse_device(name: &str) -> Result<Device> {
    let (kind, index) = match name.split_once(':') {
        Some((k, i)) => {
            let index: usize = i
                .parse()
                .map_err(|_| anyhow::anyhow!("device `{name}`: `{i}` is not a device index"))?;
            (k, index)
        }
        None => (name, 0),
    };
    match kind.to_ascii_lowercase().as_str() {
        "cpu" | "flex" => cpu(),
        "wgpu" | "gpu" => wgpu(index),
        "cuda" => cuda(index),
        other => bail!("unknown device `{other}`; expected one of: {DEVICE_HELP}"),
    }
}

#[cfg(feature = "flex")]
fn cpu() -> Result<Device> {
    Ok(Device::flex())
}

#[cfg(not(feature = "flex"))]
fn cpu() -> Result<Device> {
    bail!("this build has no CPU backend; rebuild with `--features flex`")
}

#[cfg(feature = "wgpu")]
fn wgpu(index: usize) -> Result<Device> {
    use burn::tensor::DeviceKind;
    Ok(Device::wgpu(if index == 0 {
        DeviceKind::DefaultDevice
    } else {
        DeviceKind::DiscreteGpu(index)
    }))
}

#[cfg(not(feature = "wgpu"))]
fn wgpu(_: usize) -> Result<Device> {
    bail!("this build has no wgpu backend; rebuild with `cargo build --release --features wgpu`")
}

#[cfg(feature = "cuda")]
fn cuda(index: usize) -> Result<Device> {
    Ok(Device::cuda(index))
}

#[cfg(not(feature = "cuda"))]
fn cuda(_: usize) -> Result<Device> {
    bail!("this build has no CUDA backend; rebuild with `cargo build --release --features cuda`")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_and_bad_names_are_explained() {
        assert!(parse_device("cpu").is_ok());
        assert!(parse_device("FLEX").is_ok());
        let e = parse_device("tpu").unwrap_err().to_string();
        assert!(e.contains("tpu") && e.contains("cuda"), "{e}");
        let e = parse_device("cuda:x").unwrap_err().to_string();
        assert!(e.contains("not a device index"), "{e}");
    }
}
