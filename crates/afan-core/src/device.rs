//! Device names, parsed in one place for the binary (`--device`, `BURN_DEVICE`) and for the test
//! suites of every crate (`AFAN_TEST_DEVICE`), so that the backend-portable tests run on a GPU
//! with the exact code path users get.
//!
//! Which backends exist is a compile-time matter: this crate's `flex`, `wgpu` and `cuda` features
//! (the binary turns on the one it is built with); a name whose backend is not compiled in is an
//! error that says how to rebuild, never a silent fall back to the CPU.

use burn::tensor::Device;

/// Names accepted by `--device` and `AFAN_TEST_DEVICE`, for help texts and errors.
pub const DEVICE_HELP: &str = "cpu (= flex, the default), wgpu, wgpu:N, cuda, cuda:N";

/// The environment variable that moves the backend-portable tests to another device.
pub const TEST_DEVICE_ENV: &str = "AFAN_TEST_DEVICE";

/// A device name that cannot be used.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum DeviceError {
    /// `cpu,cpu` where one device is expected.
    #[error(
        "device `{0}`: a list of devices is for data-parallel `afan train` (classification) only"
    )]
    List(String),
    /// `cuda:x`.
    #[error("device `{name}`: `{index}` is not a device index")]
    BadIndex { name: String, index: String },
    /// `tpu`.
    #[error("unknown device `{0}`; expected one of: {DEVICE_HELP}")]
    Unknown(String),
    /// A backend this build was compiled without.
    #[error("this build has no {backend} backend; rebuild with `--features {feature}`")]
    NotCompiled {
        backend: &'static str,
        feature: &'static str,
    },
}

/// What a device name selects, before any device is built: callers that decide by backend
/// (which gradient averaging a device list gets, whether two names are the same device) match on
/// this rather than on the spelling (`CUDA:0`, `cuda`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeviceName {
    /// `cpu` or `flex`: the one CPU device.
    Cpu,
    /// `wgpu` / `gpu` (index 0: the default adapter) or `wgpu:N`.
    Wgpu(usize),
    /// `cuda` (= `cuda:0`) or `cuda:N`.
    Cuda(usize),
}

impl std::str::FromStr for DeviceName {
    type Err = DeviceError;

    fn from_str(name: &str) -> Result<Self, DeviceError> {
        if name.contains(',') {
            return Err(DeviceError::List(name.to_string()));
        }
        let (kind, index) = match name.split_once(':') {
            Some((k, i)) => {
                let index = i.parse().map_err(|_| DeviceError::BadIndex {
                    name: name.to_string(),
                    index: i.to_string(),
                })?;
                (k, index)
            }
            None => (name, 0),
        };
        match kind.to_ascii_lowercase().as_str() {
            "cpu" | "flex" => Ok(Self::Cpu),
            "wgpu" | "gpu" => Ok(Self::Wgpu(index)),
            "cuda" => Ok(Self::Cuda(index)),
            other => Err(DeviceError::Unknown(other.to_string())),
        }
    }
}

impl std::fmt::Display for DeviceName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Cpu => write!(f, "cpu"),
            Self::Wgpu(i) => write!(f, "wgpu:{i}"),
            Self::Cuda(i) => write!(f, "cuda:{i}"),
        }
    }
}

impl DeviceName {
    /// The Burn device (without autodiff), or why this build cannot have it.
    pub fn build(self) -> Result<Device, DeviceError> {
        match self {
            Self::Cpu => cpu(),
            Self::Wgpu(index) => wgpu(index),
            Self::Cuda(index) => cuda(index),
        }
    }
}

/// Parses one device name into a Burn device (without autodiff).
pub fn parse_device(name: &str) -> Result<Device, DeviceError> {
    name.parse::<DeviceName>()?.build()
}

/// The device of the backend-portable tests: `AFAN_TEST_DEVICE` (e.g. `wgpu`, `cuda:0`), or
/// the CPU when it is unset. Panics with the parse error: a test run asked for a device it
/// cannot have, and silently testing the CPU instead would report a GPU pass that never ran.
pub fn test_device() -> Device {
    let name = test_device_name();
    name.build()
        .unwrap_or_else(|e| panic!("{TEST_DEVICE_ENV}={name}: {e}"))
}

/// Whether the tests run on the CPU, where the reference tolerances were set (GPU kernels sum
/// in other orders, and some tests compare against flex-only kernels).
pub fn testing_on_cpu() -> bool {
    test_device_name() == DeviceName::Cpu
}

/// What `AFAN_TEST_DEVICE` names (the CPU when unset or blank); panics on a name that does not
/// parse, for the reason [`test_device`] gives.
fn test_device_name() -> DeviceName {
    match std::env::var(TEST_DEVICE_ENV) {
        Ok(name) if !name.trim().is_empty() => name
            .trim()
            .parse()
            .unwrap_or_else(|e| panic!("{TEST_DEVICE_ENV}={name}: {e}")),
        _ => DeviceName::Cpu,
    }
}

#[cfg(feature = "flex")]
fn cpu() -> Result<Device, DeviceError> {
    Ok(Device::flex())
}

#[cfg(not(feature = "flex"))]
fn cpu() -> Result<Device, DeviceError> {
    Err(DeviceError::NotCompiled {
        backend: "CPU (flex)",
        feature: "flex",
    })
}

#[cfg(feature = "wgpu")]
fn wgpu(index: usize) -> Result<Device, DeviceError> {
    use burn::tensor::DeviceKind;
    Ok(Device::wgpu(if index == 0 {
        DeviceKind::DefaultDevice
    } else {
        DeviceKind::DiscreteGpu(index)
    }))
}

#[cfg(not(feature = "wgpu"))]
fn wgpu(_: usize) -> Result<Device, DeviceError> {
    Err(DeviceError::NotCompiled {
        backend: "wgpu",
        feature: "wgpu",
    })
}

#[cfg(feature = "cuda")]
fn cuda(index: usize) -> Result<Device, DeviceError> {
    Ok(Device::cuda(index))
}

#[cfg(not(feature = "cuda"))]
fn cuda(_: usize) -> Result<Device, DeviceError> {
    Err(DeviceError::NotCompiled {
        backend: "CUDA",
        feature: "cuda",
    })
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
    fn names_select_a_backend_and_an_index() {
        let parse = |n: &str| n.parse::<DeviceName>().unwrap();
        assert_eq!(parse("Flex"), DeviceName::Cpu);
        assert_eq!(parse("CUDA"), parse("cuda:0"));
        assert_eq!(parse("cuda:3"), DeviceName::Cuda(3));
        assert_eq!(parse("gpu"), DeviceName::Wgpu(0));
        assert_eq!(parse("wgpu:2"), DeviceName::Wgpu(2));
        assert_eq!(parse("CUDA").to_string(), "cuda:0");
    }

    #[cfg(not(feature = "cuda"))]
    #[test]
    fn a_backend_not_compiled_in_says_how_to_rebuild() {
        let e = parse_device("cuda:1").unwrap_err().to_string();
        assert!(
            e.contains("no CUDA backend") && e.contains("--features cuda"),
            "{e}"
        );
    }
}
