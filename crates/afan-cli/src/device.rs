//! Run-time choice of backend. Which backends exist is a compile-time matter (cargo features
//! `flex`, `wgpu`, `cuda`); which one a run uses is `--device` / `BURN_DEVICE`. Single names are
//! parsed by `afan_core::device`, which the test suites share; lists are this binary's own.

use anyhow::{Result, bail};
use burn::tensor::Device;

/// Parses a device name into a Burn device (without autodiff).
pub fn parse_device(name: &str) -> Result<Device> {
    Ok(afan_core::device::parse_device(name)?)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_lists_pick_the_gradient_averaging() {
        use crate::parallel::GradSync;
        let (d, sync) = parse_devices("cpu, cpu").unwrap();
        assert_eq!((d.len(), sync), (2, GradSync::FirstDevice));
        assert_eq!(parse_devices("cpu").unwrap().0.len(), 1);
        assert!(parse_devices("cpu,tpu").is_err());
    }
}
