//! Device names, parsed in one place for the binary (`--device`, `BURN_DEVICE`) and for the test
//! suites of every crate (`AFAN_TEST_DEVICE`), so that the backend-portable tests run on a GPU
//! with the exact code path users get.
//!
//! Which backends exist is a compile-time matter: this crate's `flex`, `wgpu` and `cuda` features
//! (the binary turns on the one it is built with); a name whose backend is not compiled in is an
//! error that says how to rebuild, never a silent fall back to the CPU.
//!
//! A wgpu name carries the adapter and, optionally, the graphics API: `wgpu` (the best adapter:
//! discrete, then integrated, virtual, other, and a CPU adapter such as Mesa's lavapipe last),
//! `wgpu:N` (adapter N as listed by the error for a missing index), `wgpu:cpu` (the software
//! adapter), and an API among `vulkan`, `metal`, `dx12` and `gl` in any position (`wgpu:gl`,
//! `wgpu:vulkan:cpu`). Without one, the API is the first of Burn's order (Vulkan, DX12, GL; Metal
//! on macOS) with a hardware adapter, else the first with any. A wgpu device is opened once per
//! process and checked before any kernel is compiled, and the adapter's name is printed on stderr
//! then (`device/wgpu.rs`): programs need no code of their own for either.

#[cfg(feature = "wgpu")]
mod wgpu;

use burn::tensor::Device;

/// Names accepted by `--device` and `AFAN_TEST_DEVICE`, for help texts and errors.
pub const DEVICE_HELP: &str = "cpu (= flex, the default), wgpu[:API][:ADAPTER] (API: vulkan, metal, dx12, gl; ADAPTER: N or cpu), cuda, cuda:N";

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
    /// `cuda:x`, `wgpu:vulkan:gl`.
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
    /// A wgpu name that selects no adapter, or one Burn's kernels cannot run on: the message
    /// names the adapter and what it lacks, and the adapters there are.
    #[error("device `{name}`: {reason}")]
    Unusable { name: String, reason: String },
}

/// What a device name selects, before any device is built: callers that decide by backend
/// (which gradient averaging a device list gets, whether two names are the same device) match on
/// this rather than on the spelling (`CUDA:0`, `cuda`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DeviceName {
    /// `cpu` or `flex`: the one CPU device.
    Cpu,
    /// `wgpu` / `gpu`, with an optional graphics API and adapter.
    Wgpu(WgpuName),
    /// `cuda` (= `cuda:0`) or `cuda:N`.
    Cuda(usize),
}

/// A wgpu device name: which graphics API, which adapter.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct WgpuName {
    pub api: GraphicsApi,
    pub adapter: AdapterChoice,
}

/// The graphics API wgpu runs on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum GraphicsApi {
    /// Burn's order: Vulkan, DX12, GL (Metal on macOS); the first with a hardware adapter.
    #[default]
    Auto,
    Vulkan,
    Metal,
    Dx12,
    Gl,
}

/// Which of the graphics API's adapters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum AdapterChoice {
    /// The best: discrete, integrated, virtual, other, then a CPU adapter.
    #[default]
    Best,
    /// The N-th adapter in the API's enumeration order (from 0).
    Index(usize),
    /// The first CPU (software) adapter, e.g. Mesa's lavapipe.
    Cpu,
}

impl GraphicsApi {
    const NAMED: [(&'static str, GraphicsApi); 4] = [
        ("vulkan", Self::Vulkan),
        ("metal", Self::Metal),
        ("dx12", Self::Dx12),
        ("gl", Self::Gl),
    ];

    fn name(self) -> Option<&'static str> {
        Self::NAMED
            .iter()
            .find(|(_, a)| *a == self)
            .map(|(n, _)| *n)
    }
}

impl std::str::FromStr for WgpuName {
    type Err = String;

    /// The parts after `wgpu:`, e.g. `vulkan:cpu` or `1`: at most one API and one adapter.
    fn from_str(parts: &str) -> Result<Self, String> {
        let mut name = Self::default();
        let (mut api_set, mut adapter_set) = (false, false);
        for part in parts.split(':') {
            let lower = part.trim().to_ascii_lowercase();
            if let Some((_, api)) = GraphicsApi::NAMED.iter().find(|(n, _)| *n == lower) {
                if std::mem::replace(&mut api_set, true) {
                    return Err(part.to_string());
                }
                name.api = *api;
                continue;
            }
            let adapter = match lower.as_str() {
                "cpu" => AdapterChoice::Cpu,
                n => AdapterChoice::Index(n.parse().map_err(|_| part.to_string())?),
            };
            if std::mem::replace(&mut adapter_set, true) {
                return Err(part.to_string());
            }
            name.adapter = adapter;
        }
        Ok(name)
    }
}

impl std::fmt::Display for WgpuName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "wgpu")?;
        if let Some(api) = self.api.name() {
            write!(f, ":{api}")?;
        }
        match self.adapter {
            AdapterChoice::Best => Ok(()),
            AdapterChoice::Index(i) => write!(f, ":{i}"),
            AdapterChoice::Cpu => write!(f, ":cpu"),
        }
    }
}

impl std::str::FromStr for DeviceName {
    type Err = DeviceError;

    fn from_str(name: &str) -> Result<Self, DeviceError> {
        if name.contains(',') {
            return Err(DeviceError::List(name.to_string()));
        }
        let (kind, rest) = match name.split_once(':') {
            Some((k, r)) => (k, Some(r)),
            None => (name, None),
        };
        let bad_index = |index: String| DeviceError::BadIndex {
            name: name.to_string(),
            index,
        };
        match kind.to_ascii_lowercase().as_str() {
            "cpu" | "flex" if rest.is_none() => Ok(Self::Cpu),
            "wgpu" | "gpu" => match rest {
                None => Ok(Self::Wgpu(WgpuName::default())),
                Some(r) => r.parse().map(Self::Wgpu).map_err(bad_index),
            },
            "cuda" => match rest {
                None => Ok(Self::Cuda(0)),
                Some(i) => i.parse().map(Self::Cuda).map_err(|_| bad_index(i.into())),
            },
            "cpu" | "flex" => Err(bad_index(rest.unwrap_or_default().into())),
            other => Err(DeviceError::Unknown(other.to_string())),
        }
    }
}

impl std::fmt::Display for DeviceName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Cpu => write!(f, "cpu"),
            Self::Wgpu(w) => write!(f, "{w}"),
            Self::Cuda(i) => write!(f, "cuda:{i}"),
        }
    }
}

impl DeviceName {
    /// The Burn device (without autodiff), or why this build cannot have it. A wgpu device is
    /// opened, and its adapter checked, on the first call for that name in a process.
    pub fn build(self) -> Result<Device, DeviceError> {
        match self {
            Self::Cpu => cpu(),
            Self::Wgpu(name) => wgpu_open(name).map(|(device, _)| device),
            Self::Cuda(index) => cuda(index),
        }
    }

    /// What the device runs on, for the line a program prints at start: for wgpu the adapter's
    /// name, type, graphics API and driver (`llvmpipe (LLVM 15.0.6, 256 bits): CPU adapter,
    /// Vulkan, Mesa 22.3.6`); opens the device like [`Self::build`].
    pub fn describe(self) -> Result<String, DeviceError> {
        match self {
            Self::Cpu => cpu().map(|_| "CPU (flex)".to_string()),
            Self::Wgpu(name) => wgpu_open(name).map(|(_, description)| description),
            Self::Cuda(index) => cuda(index).map(|_| format!("CUDA device {index}")),
        }
    }
}

/// Why A-FAN's gradients on this device are not to be trusted, for the warning a program prints
/// before training on it; `None` where they match the reference.
///
/// On Burn 0.22.1's wgpu backend (fusion on, with or without autotune), a
/// graph that passes two inputs through one sub-network and sums the losses, which is every A-FAN
/// step, gets a wrong gradient (seen on Mesa's lavapipe; minimal reproduction and figures in
/// docs/gpu.md, "Known wgpu differences"). CUDA runs the same cubecl code but has not been
/// checked; the CPU matches PyTorch (the goldens).
pub fn afan_gradient_caveat(name: DeviceName) -> Option<&'static str> {
    match name {
        DeviceName::Wgpu(_) => Some(
            "Burn 0.22.1's wgpu backend computes wrong gradients for graphs that pass two inputs \
             through one sub-network, as every A-FAN step does (docs/gpu.md, \"Known wgpu \
             differences\"): the run trains, but not the method's exact step; use --device cpu \
             (or cuda) for results to report",
        ),
        DeviceName::Cpu | DeviceName::Cuda(_) => None,
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

/// The tolerance of a backend-portable test: `cpu` on the CPU, where it was set against the
/// reference, and `other` on any other device, whose kernels sum in other orders (each test
/// states both, with the reason for the second).
pub fn test_tolerance(cpu: f32, other: f32) -> f32 {
    if testing_on_cpu() { cpu } else { other }
}

/// For a backend-portable test that cannot pass on wgpu: true, with a note on stderr, when the
/// test device is a wgpu one, so the test returns early. `reason` says why; docs/gpu.md ("Known
/// wgpu differences") has the reproduction.
pub fn skip_on_wgpu(reason: &str) -> bool {
    let skip = matches!(test_device_name(), DeviceName::Wgpu(_));
    if skip {
        eprintln!("skipped on wgpu: {reason} (docs/gpu.md, \"Known wgpu differences\")");
    }
    skip
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
fn wgpu_open(name: WgpuName) -> Result<(Device, String), DeviceError> {
    wgpu::open(name)
}

#[cfg(not(feature = "wgpu"))]
fn wgpu_open(_: WgpuName) -> Result<(Device, String), DeviceError> {
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
    fn afan_on_wgpu_carries_the_gradient_caveat_and_the_cpu_does_not() {
        let caveat = |n: &str| afan_gradient_caveat(n.parse().unwrap());
        assert!(caveat("wgpu").unwrap().contains("docs/gpu.md"));
        assert!(caveat("wgpu:vulkan:cpu").is_some());
        assert_eq!(caveat("cpu"), None);
        assert_eq!(caveat("cuda:1"), None);
    }

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
        for bad in ["wgpu:vulkan:gl", "wgpu:1:cpu", "wgpu:x", "wgpu:", "cpu:1"] {
            let e = bad.parse::<DeviceName>().unwrap_err().to_string();
            assert!(e.contains("not a device index"), "{bad}: {e}");
        }
    }

    #[test]
    fn names_select_a_backend_and_an_index() {
        let parse = |n: &str| n.parse::<DeviceName>().unwrap();
        assert_eq!(parse("Flex"), DeviceName::Cpu);
        assert_eq!(parse("CUDA"), parse("cuda:0"));
        assert_eq!(parse("cuda:3"), DeviceName::Cuda(3));
        assert_eq!(parse("CUDA").to_string(), "cuda:0");
        assert_eq!(parse("gpu"), DeviceName::Wgpu(WgpuName::default()));
        let wgpu = |api, adapter| DeviceName::Wgpu(WgpuName { api, adapter });
        assert_eq!(
            parse("wgpu:2"),
            wgpu(GraphicsApi::Auto, AdapterChoice::Index(2))
        );
        assert_eq!(
            parse("wgpu:CPU"),
            wgpu(GraphicsApi::Auto, AdapterChoice::Cpu)
        );
        assert_eq!(parse("wgpu:gl"), wgpu(GraphicsApi::Gl, AdapterChoice::Best));
        // The API and the adapter in either order, spelled back in one.
        assert_eq!(parse("wgpu:cpu:Vulkan"), parse("wgpu:vulkan:cpu"));
        assert_eq!(parse("wgpu:cpu:Vulkan").to_string(), "wgpu:vulkan:cpu");
        assert_eq!(parse("wgpu:dx12:1").to_string(), "wgpu:dx12:1");
        assert_eq!(parse("gpu").to_string(), "wgpu");
        for name in [
            "wgpu",
            "wgpu:0",
            "wgpu:metal",
            "wgpu:gl:cpu",
            "cuda:1",
            "cpu",
        ] {
            assert_eq!(parse(name).to_string(), name, "{name} spells itself back");
        }
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

    /// The child half of the test below: opens `wgpu` in a process whose Vulkan loader finds no
    /// driver, and says how that went.
    #[cfg(feature = "wgpu")]
    #[test]
    #[ignore = "run by wgpu_without_a_usable_adapter_fails_fast_with_one_clear_error"]
    fn open_wgpu_in_a_child() {
        match DeviceName::Wgpu(WgpuName::default()).describe() {
            Ok(description) => println!("OPENED {description}"),
            Err(e) => println!("ERROR {e}"),
        }
    }

    /// With the Vulkan driver hidden (`VK_ICD_FILENAMES` pointing at nothing), wgpu falls back to
    /// another API: on the CI image Mesa's GL llvmpipe, which lacks the subgroup operations Burn's
    /// matmul needs, else nothing at all. Either way `wgpu` must fail at once with one error naming
    /// the device and the reason, not compile kernels that fail and log their shaders. A machine
    /// whose fallback is a usable hardware adapter (a GPU's GL driver) opens it, and that is right.
    #[cfg(feature = "wgpu")]
    #[test]
    fn wgpu_without_a_usable_adapter_fails_fast_with_one_clear_error() {
        let start = std::time::Instant::now();
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["device::tests::open_wgpu_in_a_child", "--exact"])
            .args(["--ignored", "--nocapture", "--test-threads=1"])
            .env("VK_ICD_FILENAMES", "/nonexistent/icd.json")
            .env("VK_DRIVER_FILES", "/nonexistent/icd.json")
            .output()
            .unwrap();
        let elapsed = start.elapsed();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            elapsed < std::time::Duration::from_secs(30),
            "{elapsed:?}: {stdout} {stderr}"
        );
        assert!(
            !stdout.contains("WGSL") && !stderr.contains("WGSL"),
            "{stderr}"
        );
        // libtest prints the child's line after the test's name.
        let line = ["ERROR ", "OPENED "]
            .iter()
            .find_map(|tag| stdout.find(tag).map(|at| &stdout[at..]))
            .and_then(|rest| rest.lines().next())
            .unwrap_or_else(|| panic!("the child said nothing: {stdout} {stderr}"));
        if let Some(description) = line.strip_prefix("OPENED ") {
            assert!(
                !description.contains("software CPU"),
                "a software adapter other than lavapipe was accepted: {description}"
            );
            eprintln!("(with Vulkan hidden, wgpu opened a usable {description})");
            return;
        }
        assert!(line.contains("device `wgpu`"), "{line}");
        assert!(
            line.contains("lacks subgroup operations") || line.contains("no wgpu adapter"),
            "{line}"
        );
    }

    #[cfg(not(feature = "wgpu"))]
    #[test]
    fn wgpu_without_the_feature_says_how_to_rebuild() {
        let e = parse_device("wgpu:vulkan:cpu").unwrap_err().to_string();
        assert!(e.contains("--features wgpu"), "{e}");
    }
}
