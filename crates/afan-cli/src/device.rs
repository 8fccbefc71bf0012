//! Run-time choice of backend. Which backends exist is a compile-time matter (cargo features
//! `flex`, `wgpu`, `cuda`); which one a run uses is `--device` / `BURN_DEVICE`. Single names are
//! parsed by `afan_core::device`, which the test suites share; lists are this binary's own.

use afan_core::device::DeviceName;
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
    let names = list
        .split(',')
        .map(|n| n.trim().parse::<DeviceName>())
        .collect::<Result<Vec<_>, _>>()?;
    // The CPU is one device that may be listed several times (replicas on one device exercise
    // the data-parallel path); a GPU named twice (`cuda,cuda:0`) is a typo.
    for (i, n) in names.iter().enumerate() {
        if *n != DeviceName::Cpu && names[..i].contains(n) {
            bail!("device list `{list}` names {n} twice");
        }
    }
    let devices = names
        .iter()
        .map(|n| n.build())
        .collect::<Result<Vec<_>, _>>()?;
    let sync = if names.iter().all(|n| matches!(n, DeviceName::Cuda(_))) {
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

    #[test]
    fn a_gpu_named_twice_is_refused_whatever_the_spelling() {
        let e = parse_devices("cuda, CUDA:0").unwrap_err().to_string();
        assert!(e.contains("cuda:0 twice"), "{e}");
        let e = parse_devices("wgpu:1,wgpu:1").unwrap_err().to_string();
        assert!(e.contains("twice"), "{e}");
    }
}
