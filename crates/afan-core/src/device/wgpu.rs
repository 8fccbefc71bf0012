//! Opening a wgpu device: the adapter a [`WgpuName`] selects, checked for what Burn's kernels need
//! before any kernel is compiled, opened once per process.
//!
//! Why not just `Device::wgpu(DeviceKind::DefaultDevice)`: that is lazy, and an adapter Burn's
//! kernels cannot run on (Mesa's GL llvmpipe, which wgpu falls back to when Vulkan has no
//! driver) is only found out when the first kernels fail to compile, each failure logging its
//! shader, while the run does not end (docs/gpu.md, "An adapter Burn cannot use"). Here the
//! adapters are enumerated first, the chosen one checked, and the device opened eagerly through
//! `Device::wgpu_options()`, whose errors are values: a missing or unusable adapter is one
//! [`DeviceError::Unusable`] naming it and what it lacks, within the time the graphics API takes
//! to list its adapters.
//!
//! The adapter opened is printed on stderr once (`device wgpu: llvmpipe (...)`), so every program
//! and test log says what `wgpu` ran on.
//!
//! Every open holds one lock, also across Burn's own device creation: cubecl notes that the
//! Vulkan loader crashes when instances are created on several threads at once (test threads
//! asking for the test device together).

use super::{AdapterChoice, DeviceError, GraphicsApi, WgpuName};
use burn::tensor::wgpu::{WgpuBackend, wgpu};
use burn::tensor::{Device, DeviceKind};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

/// What was opened in this process: by name (errors too, so that a test asking again fails at
/// once), and by adapter, since two names can select one adapter and Burn registers each
/// adapter's runtime once.
#[derive(Default)]
struct Opened {
    by_name: HashMap<WgpuName, Result<(Device, String), DeviceError>>,
    by_adapter: Vec<((wgpu::Backend, DeviceKind), Device, String)>,
}

static OPENED: Mutex<Option<Opened>> = Mutex::new(None);

/// The device `name` selects and its description, opening it on the first call.
pub(super) fn open(name: WgpuName) -> Result<(Device, String), DeviceError> {
    let mut guard = OPENED.lock().unwrap_or_else(PoisonError::into_inner);
    let opened = guard.get_or_insert_with(Opened::default);
    if let Some(known) = opened.by_name.get(&name) {
        return known.clone();
    }
    let result = open_new(name, &mut opened.by_adapter).map_err(|reason| DeviceError::Unusable {
        name: name.to_string(),
        reason,
    });
    opened.by_name.insert(name, result.clone());
    result
}

fn open_new(
    name: WgpuName,
    by_adapter: &mut Vec<((wgpu::Backend, DeviceKind), Device, String)>,
) -> Result<(Device, String), String> {
    let (api, adapters) = resolve_api(name.api)?;
    let infos: Vec<wgpu::AdapterInfo> = adapters.iter().map(wgpu::Adapter::get_info).collect();
    let index = choose(name.adapter, &infos)
        .ok_or_else(|| format!("no such adapter; {}", listing(api, &infos)))?;
    let (adapter, info) = (&adapters[index], &infos[index]);
    let missing = lacks(adapter);
    if !missing.is_empty() {
        return Err(format!(
            "adapter `{}` ({}, {}) lacks {}, which Burn's kernels need; {}",
            info.name,
            kind_words(info.device_type),
            api_name(api),
            missing.join(" and "),
            hint(api),
        ));
    }
    let kind = burn_kind(&infos, index);
    let key = (api, kind.clone());
    if let Some((_, device, description)) = by_adapter.iter().find(|(k, ..)| *k == key) {
        return Ok((device.clone(), description.clone()));
    }
    let (device, setup) = Device::wgpu_options()
        .device_kind(kind)
        .graphics_api(pinned(api))
        .init_with_setup()
        .map_err(|e| format!("wgpu could not open adapter `{}`: {e}", info.name))?;
    let got = setup.adapter.get_info();
    if (&got.name, got.device_type) != (&info.name, info.device_type) {
        return Err(format!(
            "Burn opened adapter `{}` ({}) instead of the selected `{}` ({}); {}",
            got.name,
            kind_words(got.device_type),
            info.name,
            kind_words(info.device_type),
            listing(api, &infos)
        ));
    }
    let description = format!(
        "{} ({} adapter on {}, driver {} {})",
        info.name,
        kind_words(info.device_type),
        api_name(api),
        info.driver,
        info.driver_info
    );
    // Said once per adapter and process, by the library rather than each program: `wgpu` may
    // land on a software adapter (lavapipe), and a user should see that before a slow run.
    eprintln!("device {name}: {description}");
    by_adapter.push((key, device.clone(), description.clone()));
    Ok((device, description))
}

/// The graphics API and its adapters: the one pinned, or Burn's automatic choice (cubecl-wgpu's
/// `settle`: the first API of its order with a hardware adapter, else the first with any).
fn resolve_api(api: GraphicsApi) -> Result<(wgpu::Backend, Vec<wgpu::Adapter>), String> {
    let compiled = wgpu::Instance::enabled_backend_features();
    let candidates: Vec<wgpu::Backend> = match api {
        GraphicsApi::Auto if cfg!(target_os = "macos") => vec![wgpu::Backend::Metal],
        GraphicsApi::Auto => vec![
            wgpu::Backend::Vulkan,
            wgpu::Backend::Dx12,
            wgpu::Backend::Gl,
        ],
        GraphicsApi::Vulkan => vec![wgpu::Backend::Vulkan],
        GraphicsApi::Metal => vec![wgpu::Backend::Metal],
        GraphicsApi::Dx12 => vec![wgpu::Backend::Dx12],
        GraphicsApi::Gl => vec![wgpu::Backend::Gl],
    };
    let candidates: Vec<wgpu::Backend> = candidates
        .into_iter()
        .filter(|b| compiled.contains((*b).into()))
        .collect();
    if candidates.is_empty() {
        return Err(format!(
            "this build of wgpu has no {} backend on this platform",
            api_name(pinned_backend(api))
        ));
    }
    let mut software_only = None;
    for &backend in &candidates {
        let adapters = adapters(backend);
        if adapters
            .iter()
            .any(|a| a.get_info().device_type != wgpu::DeviceType::Cpu)
        {
            return Ok((backend, adapters));
        }
        if software_only.is_none() && !adapters.is_empty() {
            software_only = Some((backend, adapters));
        }
    }
    software_only.ok_or_else(|| {
        let tried: Vec<&str> = candidates.iter().map(|b| api_name(*b)).collect();
        format!(
            "no wgpu adapter on {}; {}",
            tried.join(", "),
            hint(candidates[0])
        )
    })
}

fn adapters(backend: wgpu::Backend) -> Vec<wgpu::Adapter> {
    let instance = wgpu::Instance::new(wgpu::InstanceDescriptor {
        backends: backend.into(),
        ..wgpu::InstanceDescriptor::new_without_display_handle()
    });
    block_on(instance.enumerate_adapters(backend.into()))
}

/// The index of the adapter `choice` selects among `infos` (the API's enumeration order).
fn choose(choice: AdapterChoice, infos: &[wgpu::AdapterInfo]) -> Option<usize> {
    use wgpu::DeviceType as T;
    let first = |t: T| infos.iter().position(|i| i.device_type == t);
    match choice {
        AdapterChoice::Index(i) => (i < infos.len()).then_some(i),
        AdapterChoice::Cpu => first(T::Cpu),
        AdapterChoice::Best => [T::DiscreteGpu, T::IntegratedGpu, T::VirtualGpu, T::Other]
            .into_iter()
            .find_map(first)
            .or_else(|| first(T::Cpu)),
    }
}

/// Burn's selector for adapter `index`: its type and its rank among the adapters of that type
/// (cubecl counts each type from zero). Burn has no selector for an `Other` adapter; the default
/// one is asked for, and [`open_new`] checks that it is the adapter chosen.
fn burn_kind(infos: &[wgpu::AdapterInfo], index: usize) -> DeviceKind {
    let device_type = infos[index].device_type;
    let rank = infos[..index]
        .iter()
        .filter(|i| i.device_type == device_type)
        .count();
    match device_type {
        wgpu::DeviceType::DiscreteGpu => DeviceKind::DiscreteGpu(rank),
        wgpu::DeviceType::IntegratedGpu => DeviceKind::IntegratedGpu(rank),
        wgpu::DeviceType::VirtualGpu => DeviceKind::VirtualGpu(rank),
        wgpu::DeviceType::Cpu => DeviceKind::Cpu,
        wgpu::DeviceType::Other => DeviceKind::DefaultDevice,
    }
}

/// What `adapter` lacks of what Burn's kernels use, checked before any kernel is compiled.
fn lacks(adapter: &wgpu::Adapter) -> Vec<&'static str> {
    let mut missing = Vec::new();
    if !adapter
        .get_downlevel_capabilities()
        .flags
        .contains(wgpu::DownlevelFlags::COMPUTE_SHADERS)
    {
        missing.push("compute shaders");
    }
    if !adapter.features().contains(wgpu::Features::SUBGROUP) {
        missing.push(
            "subgroup operations (wgpu feature SUBGROUP: Burn's matmul kernels use `subgroupAdd`)",
        );
    }
    missing
}

fn listing(api: wgpu::Backend, infos: &[wgpu::AdapterInfo]) -> String {
    let list: Vec<String> = infos
        .iter()
        .enumerate()
        .map(|(i, a)| format!("{i} `{}` ({})", a.name, kind_words(a.device_type)))
        .collect();
    format!("the adapters on {}: {}", api_name(api), list.join(", "))
}

fn hint(api: wgpu::Backend) -> &'static str {
    match api {
        wgpu::Backend::Metal => "use the CPU device (`cpu`)",
        _ => {
            "name another adapter or API (`wgpu:vulkan`, `wgpu:N`), install a Vulkan driver (on \
             Debian/Ubuntu `mesa-vulkan-drivers` brings lavapipe, a CPU Vulkan device: \
             `wgpu:cpu`), or use the CPU device (`cpu`)"
        }
    }
}

fn kind_words(t: wgpu::DeviceType) -> &'static str {
    match t {
        wgpu::DeviceType::DiscreteGpu => "discrete GPU",
        wgpu::DeviceType::IntegratedGpu => "integrated GPU",
        wgpu::DeviceType::VirtualGpu => "virtual GPU",
        wgpu::DeviceType::Cpu => "software CPU",
        wgpu::DeviceType::Other => "other",
    }
}

fn api_name(b: wgpu::Backend) -> &'static str {
    match b {
        wgpu::Backend::Vulkan => "Vulkan",
        wgpu::Backend::Metal => "Metal",
        wgpu::Backend::Dx12 => "DX12",
        wgpu::Backend::Gl => "GL",
        wgpu::Backend::BrowserWebGpu => "WebGPU",
        wgpu::Backend::Noop => "no-op",
    }
}

fn pinned_backend(api: GraphicsApi) -> wgpu::Backend {
    match api {
        GraphicsApi::Auto | GraphicsApi::Vulkan => wgpu::Backend::Vulkan,
        GraphicsApi::Metal => wgpu::Backend::Metal,
        GraphicsApi::Dx12 => wgpu::Backend::Dx12,
        GraphicsApi::Gl => wgpu::Backend::Gl,
    }
}

/// Burn's name for the API the device is pinned to: always the resolved one, so Burn enumerates
/// the same adapters the selection above saw.
fn pinned(api: wgpu::Backend) -> WgpuBackend {
    match api {
        wgpu::Backend::Metal => WgpuBackend::Metal,
        wgpu::Backend::Dx12 => WgpuBackend::Dx12,
        wgpu::Backend::Gl => WgpuBackend::Gl,
        _ => WgpuBackend::Vulkan,
    }
}

/// Runs a future to completion on this thread. wgpu's native futures (adapter enumeration) are
/// ready when first polled; this is the minimal executor for them, rather than a dependency.
fn block_on<F: std::future::Future>(future: F) -> F::Output {
    struct Unpark(std::thread::Thread);
    impl std::task::Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = std::task::Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = std::task::Context::from_waker(&waker);
    let mut future = std::pin::pin!(future);
    loop {
        if let std::task::Poll::Ready(out) = future.as_mut().poll(&mut cx) {
            return out;
        }
        std::thread::park();
    }
}
