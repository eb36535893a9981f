//! The wgpu runtime of the GPU twins (Vulkan, Metal, DX12): `shaders/*.wgsl`, u32 arithmetic only.
//!
//! Pipelines are built once per backend. Launches are recorded into one pending command encoder and
//! submitted together: each launch's parameters take a 1 KiB slot of a uniform ring buffer (a dynamic
//! offset), and the ring is written with one `write_buffer` just before the submit. Anything else
//! that the queue orders by itself (an upload, a read back) first submits what is pending.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::gpu::{module_sources, Kernel, Mem, Runtime, MODULES, PARAM_WORDS};
use super::{BackendError, Device};

/// Parameter slots per submit.
const RING_SLOTS: usize = 512;
const SLOT_BYTES: u64 = (PARAM_WORDS * 4) as u64;

fn unavailable(reason: impl Into<String>) -> BackendError {
    BackendError::Unavailable {
        device: Device::Wgpu,
        reason: reason.into(),
    }
}

struct Pending {
    encoder: Option<wgpu::CommandEncoder>,
    /// Parameter words of the recorded launches, slot by slot.
    staged: Vec<u32>,
}

pub struct WgpuRuntime {
    device: wgpu::Device,
    queue: wgpu::Queue,
    name: String,
    pipelines: HashMap<Kernel, (wgpu::ComputePipeline, wgpu::BindGroupLayout)>,
    ring: wgpu::Buffer,
    max_words: usize,
    pending: Mutex<Pending>,
    error: Arc<Mutex<Option<String>>>,
}

impl std::fmt::Debug for WgpuRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "WgpuRuntime({})", self.name)
    }
}

/// The preferred adapter: hardware first; software (llvmpipe/lavapipe) only if allowed.
fn pick_adapter(allow_software: bool) -> Result<wgpu::Adapter, BackendError> {
    let instance = wgpu::Instance::new(wgpu::InstanceDescriptor {
        backends: wgpu::Backends::VULKAN | wgpu::Backends::METAL | wgpu::Backends::DX12,
        flags: wgpu::InstanceFlags::empty(),
        memory_budget_thresholds: Default::default(),
        backend_options: Default::default(),
        display: None,
    });
    let mut adapters = pollster::block_on(instance.enumerate_adapters(wgpu::Backends::all()));
    adapters.sort_by_key(|a| match a.get_info().device_type {
        wgpu::DeviceType::DiscreteGpu => 0,
        wgpu::DeviceType::IntegratedGpu => 1,
        wgpu::DeviceType::VirtualGpu => 2,
        wgpu::DeviceType::Other => 3,
        wgpu::DeviceType::Cpu => 4,
    });
    let found: Vec<String> = adapters.iter().map(|a| a.get_info().name).collect();
    adapters
        .into_iter()
        .find(|a| allow_software || a.get_info().device_type != wgpu::DeviceType::Cpu)
        .ok_or_else(|| {
            if found.is_empty() {
                unavailable("no wgpu adapter (no Vulkan, Metal or DX12 driver; on Linux install mesa-vulkan-drivers for the software one)")
            } else {
                unavailable(format!(
                    "only software adapters ({}); name the backend (--backend wgpu) to use them",
                    found.join(", ")
                ))
            }
        })
}

impl WgpuRuntime {
    /// Whether an adapter opens here (a hardware one unless `allow_software`).
    pub fn probe(allow_software: bool) -> Result<(), BackendError> {
        pick_adapter(allow_software).map(|_| ())
    }

    /// Opens the preferred adapter and builds every pipeline.
    pub fn open(allow_software: bool) -> Result<Self, BackendError> {
        let adapter = pick_adapter(allow_software)?;
        let info = adapter.get_info();
        let limits = adapter.limits();
        let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
            label: Some("umbra"),
            required_features: wgpu::Features::empty(),
            required_limits: limits.clone(),
            experimental_features: Default::default(),
            memory_hints: wgpu::MemoryHints::Performance,
            trace: Default::default(),
        }))
        .map_err(|e| unavailable(format!("{}: {e}", info.name)))?;
        let error: Arc<Mutex<Option<String>>> = Arc::new(Mutex::new(None));
        {
            let error = error.clone();
            device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
                error.lock().unwrap().get_or_insert(format!("{e}"));
            }));
        }
        {
            let error = error.clone();
            device.set_device_lost_callback(move |reason, msg| {
                error
                    .lock()
                    .unwrap()
                    .get_or_insert(format!("device lost ({reason:?}): {msg}"));
            });
        }
        let mut pipelines = HashMap::new();
        for module in MODULES {
            let (_, src) = module_sources(module).expect("known module");
            let sm = device.create_shader_module(wgpu::ShaderModuleDescriptor {
                label: Some(module),
                source: wgpu::ShaderSource::Wgsl(src.into()),
            });
            for k in Kernel::ALL.iter().filter(|k| k.module() == module) {
                let mut entries = vec![wgpu::BindGroupLayoutEntry {
                    binding: 0,
                    visibility: wgpu::ShaderStages::COMPUTE,
                    ty: wgpu::BindingType::Buffer {
                        ty: wgpu::BufferBindingType::Uniform,
                        has_dynamic_offset: true,
                        min_binding_size: wgpu::BufferSize::new(SLOT_BYTES),
                    },
                    count: None,
                }];
                for &(binding, written) in k.bindings() {
                    entries.push(wgpu::BindGroupLayoutEntry {
                        binding,
                        visibility: wgpu::ShaderStages::COMPUTE,
                        ty: wgpu::BindingType::Buffer {
                            ty: wgpu::BufferBindingType::Storage {
                                read_only: !written,
                            },
                            has_dynamic_offset: false,
                            min_binding_size: None,
                        },
                        count: None,
                    });
                }
                let bgl = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
                    label: Some(k.entry()),
                    entries: &entries,
                });
                let layout = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
                    label: Some(k.entry()),
                    bind_group_layouts: &[Some(&bgl)],
                    immediate_size: 0,
                });
                let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                    label: Some(k.entry()),
                    layout: Some(&layout),
                    module: &sm,
                    entry_point: Some(k.entry()),
                    compilation_options: Default::default(),
                    cache: None,
                });
                pipelines.insert(*k, (pipeline, bgl));
            }
        }
        let ring = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("umbra params"),
            size: SLOT_BYTES * RING_SLOTS as u64,
            usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let _ = device.poll(wgpu::PollType::wait_indefinitely());
        if let Some(e) = error.lock().unwrap().clone() {
            return Err(unavailable(format!("{}: {e}", info.name)));
        }
        let max_words = (limits.max_storage_buffer_binding_size as u64).min(limits.max_buffer_size)
            as usize
            / 4;
        Ok(WgpuRuntime {
            device,
            queue,
            name: format!("{} ({:?}, {:?})", info.name, info.backend, info.device_type),
            pipelines,
            ring,
            max_words,
            pending: Mutex::new(Pending {
                encoder: None,
                staged: Vec::with_capacity(RING_SLOTS * PARAM_WORDS),
            }),
            error,
        })
    }

    fn buffer(m: &Mem) -> &wgpu::Buffer {
        match m {
            Mem::Wgpu(b) => b,
            #[allow(unreachable_patterns)]
            _ => panic!("a non-wgpu buffer was passed to the wgpu runtime"),
        }
    }

    fn encoder<'a>(&self, p: &'a mut Pending) -> &'a mut wgpu::CommandEncoder {
        p.encoder.get_or_insert_with(|| {
            self.device
                .create_command_encoder(&wgpu::CommandEncoderDescriptor { label: None })
        })
    }

    /// Submits the recorded work, with its parameters.
    fn flush(&self, p: &mut Pending) {
        if let Some(enc) = p.encoder.take() {
            if !p.staged.is_empty() {
                self.queue
                    .write_buffer(&self.ring, 0, bytemuck::cast_slice(&p.staged));
                p.staged.clear();
            }
            self.queue.submit([enc.finish()]);
        }
    }
}

impl Runtime for WgpuRuntime {
    fn device(&self) -> Device {
        Device::Wgpu
    }

    fn name(&self) -> String {
        self.name.clone()
    }

    fn alloc(&self, words: usize) -> Result<Mem, BackendError> {
        if words > self.max_words {
            return Err(BackendError::Device(format!(
                "a buffer of {} MiB exceeds the adapter's binding limit ({} MiB)",
                words * 4 >> 20,
                self.max_words * 4 >> 20
            )));
        }
        Ok(Mem::Wgpu(self.device.create_buffer(
            &wgpu::BufferDescriptor {
                label: None,
                size: 4 * words.max(1) as u64,
                usage: wgpu::BufferUsages::STORAGE
                    | wgpu::BufferUsages::COPY_SRC
                    | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            },
        )))
    }

    fn write(&self, dst: &Mem, host: &[u32]) {
        let mut p = self.pending.lock().unwrap();
        // The queue applies writes before the next submit's commands: submit earlier work first.
        self.flush(&mut p);
        if !host.is_empty() {
            self.queue
                .write_buffer(Self::buffer(dst), 0, bytemuck::cast_slice(host));
        }
    }

    fn read(&self, src: &Mem, words: usize) -> Vec<u32> {
        if words == 0 {
            return Vec::new();
        }
        let staging = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("umbra read back"),
            size: 4 * words as u64,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        {
            let mut p = self.pending.lock().unwrap();
            self.encoder(&mut p).copy_buffer_to_buffer(
                Self::buffer(src),
                0,
                &staging,
                0,
                4 * words as u64,
            );
            self.flush(&mut p);
        }
        let slice = staging.slice(..);
        let (tx, rx) = std::sync::mpsc::channel();
        slice.map_async(wgpu::MapMode::Read, move |r| {
            let _ = tx.send(r);
        });
        if let Err(e) = self.device.poll(wgpu::PollType::wait_indefinitely()) {
            self.error.lock().unwrap().get_or_insert(format!("{e}"));
        }
        match rx.recv() {
            Ok(Ok(())) => match slice.get_mapped_range() {
                Ok(view) => {
                    let out = bytemuck::cast_slice(&view).to_vec();
                    drop(view);
                    staging.unmap();
                    out
                }
                Err(e) => {
                    self.error.lock().unwrap().get_or_insert(format!("{e}"));
                    vec![0; words]
                }
            },
            Ok(Err(e)) => {
                self.error.lock().unwrap().get_or_insert(format!("{e}"));
                vec![0; words]
            }
            Err(e) => {
                self.error.lock().unwrap().get_or_insert(format!("{e}"));
                vec![0; words]
            }
        }
    }

    fn copy(&self, src: &Mem, src_off: usize, dst: &Mem, dst_off: usize, words: usize) {
        let mut p = self.pending.lock().unwrap();
        self.encoder(&mut p).copy_buffer_to_buffer(
            Self::buffer(src),
            4 * src_off as u64,
            Self::buffer(dst),
            4 * dst_off as u64,
            4 * words as u64,
        );
    }

    fn zero(&self, dst: &Mem, words: usize) {
        let mut p = self.pending.lock().unwrap();
        self.encoder(&mut p)
            .clear_buffer(Self::buffer(dst), 0, Some(4 * words as u64));
    }

    fn launch(&self, kernel: Kernel, groups: [u32; 2], mems: &[&Mem], params: &[u32; PARAM_WORDS]) {
        let (pipeline, bgl) = &self.pipelines[&kernel];
        let mut entries = vec![wgpu::BindGroupEntry {
            binding: 0,
            resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                buffer: &self.ring,
                offset: 0,
                size: wgpu::BufferSize::new(SLOT_BYTES),
            }),
        }];
        for (&(binding, _), m) in kernel.bindings().iter().zip(mems) {
            entries.push(wgpu::BindGroupEntry {
                binding,
                resource: Self::buffer(m).as_entire_binding(),
            });
        }
        let bg = self.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: None,
            layout: bgl,
            entries: &entries,
        });
        let mut p = self.pending.lock().unwrap();
        if p.staged.len() == RING_SLOTS * PARAM_WORDS {
            self.flush(&mut p);
        }
        let offset = (p.staged.len() * 4) as u32;
        p.staged.extend_from_slice(params);
        let enc = self.encoder(&mut p);
        let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
            label: None,
            timestamp_writes: None,
        });
        pass.set_pipeline(pipeline);
        pass.set_bind_group(0, &bg, &[offset]);
        pass.dispatch_workgroups(groups[0], groups[1], 1);
    }

    fn synchronize(&self) {
        let mut p = self.pending.lock().unwrap();
        self.flush(&mut p);
        drop(p);
        if let Err(e) = self.device.poll(wgpu::PollType::wait_indefinitely()) {
            self.error.lock().unwrap().get_or_insert(format!("{e}"));
        }
    }

    fn error(&self) -> Option<String> {
        self.error.lock().unwrap().clone()
    }
}

impl Drop for WgpuRuntime {
    fn drop(&mut self) {
        self.synchronize();
    }
}
