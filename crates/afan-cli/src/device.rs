//! Run-time choice of backend. Which backends exist is a compile-time matter (cargo features
//! `flex`, `wgpu`, `cuda`); which one a run uses is `--device` / `BURN_DEVICE`.

use anyhow::{Result, bail};
use burn::tensor::Device;

/// Names accepted by `--device`, for help texts.
pub const DEVICE_HELP: &str = "cpu (= flex, the default), wgpu, wgpu:N, cuda, cuda:N";

/// Parses a device name into a Burn device (without autodiff).
pub fn parse_device(name: &str) -> Result<Device> {
    if name.contains(',') {
        bail!(
            "device `{name}`: a list of devices is for data-parallel `afan train` (classification) only"
        );
    }
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

/// `--device a,b,...` for `afan train`: the devices and how their gradients are averaged
/// (Burn's all-reduce where every device is CUDA, the only runtime with collectives in Burn
/// 0.22; otherwise on the first device). One name: no data parallelism.
pub fn parse_devices(list: &str) -> Result<(Vec<Device>, crate::parallel::GradSync)> {
    let names: Vec<&str> = list.split(',').map(str::trim).collect();
    let devices = names
        .iter()
        .map(|n| parse_device(n))
        .collect::<Result<Vec<_>>>()?;
    for (i, d) in devices.iter().enumerate() {
        if devices[..i].contains(d)
            && !names[i].to_ascii_lowercase().starts_with("cpu")
            && !names[i].eq_ignore_ascii_case("flex")
        {
            bail!("device list `{list}` names {} twice", names[i]);
        }
    }
    let all_cuda = names
        .iter()
        .all(|n| n.to_ascii_lowercase().starts_with("cuda"));
    let sync = if all_cuda {
        crate::parallel::GradSync::AllReduce
    } else {
        crate::parallel::GradSync::FirstDevice
    };
    Ok((devices, sync))
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
        let e = parse_device("cpu,cpu").unwrap_err().to_string();
        assert!(e.contains("data-parallel"), "{e}");
    }

    #[test]
    fn device_lists_pick_the_gradient_averaging() {
        use crate::parallel::GradSync;
        let (d, sync) = parse_devices("cpu, cpu").unwrap();
        assert_eq!((d.len(), sync), (2, GradSync::FirstDevice));
        assert_eq!(parse_devices("cpu").unwrap().0.len(), 1);
        assert!(parse_devices("cpu,tpu").is_err());
    }
}
