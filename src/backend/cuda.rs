//! The CUDA runtime of the GPU twins: cudarc with dynamic loading, so that the crate builds with no
//! toolkit and no driver. libcuda and libnvrtc are probed with `is_culib_present()` before any other
//! cudarc call (cudarc panics when a library is missing); the kernels (`kernels/*.cu`) are compiled
//! by NVRTC at run time, once per module and architecture per process, and loaded once per backend.
//! Everything runs on one stream, so the pool can hand a freed buffer to the next operation at once.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use cudarc::driver::{
    CudaContext, CudaFunction, CudaStream, DevicePtr, LaunchConfig, PushKernelArg,
};
use cudarc::nvrtc::{CompileOptions, Ptx};

use super::gpu::{module_sources, Kernel, Mem, Runtime, GROUP, MODULES, PARAM_WORDS};
use super::{BackendError, Device};

/// The launch parameters, passed by value (the `Params` struct of kernels/common.cuh).
#[repr(C)]
#[derive(Clone, Copy)]
struct Params([u32; PARAM_WORDS]);
unsafe impl cudarc::driver::DeviceRepr for Params {}

fn unavailable(reason: impl Into<String>) -> BackendError {
    BackendError::Unavailable {
        device: Device::Cuda,
        reason: reason.into(),
    }
}

/// Whether libnvrtc can be loaded (from the toolkit, the driver's directory or NVIDIA's PyPI wheel
/// on LD_LIBRARY_PATH).
pub fn nvrtc_present() -> bool {
    // SAFETY: only tries to dlopen the library under its known names.
    unsafe { cudarc::nvrtc::sys::is_culib_present() }
}

/// Compiles one module of kernels/*.cu to PTX for a virtual architecture (`compute_80`, ...).
pub fn compile_module(module: &str, arch: &str) -> Result<Ptx, String> {
    if !nvrtc_present() {
        return Err("libnvrtc not found (install the CUDA toolkit or the PyPI wheel nvidia-cuda-nvrtc-cu12 and put its lib/ on LD_LIBRARY_PATH)".into());
    }
    let (src, _) = module_sources(module).ok_or_else(|| format!("no kernel module `{module}`"))?;
    let opts = CompileOptions {
        options: vec![format!("--gpu-architecture={arch}"), "--std=c++14".into()],
        name: Some(format!("{module}.cu")),
        ..Default::default()
    };
    cudarc::nvrtc::compile_ptx_with_opts(src, opts).map_err(|e| format!("{module}.cu: {e:?}"))
}

/// Compiles one module to a cubin for a real architecture (`sm_90`, ...). A driver loads a cubin
/// from a newer 12.x NVRTC, where it would reject that NVRTC's PTX version.
pub fn compile_module_cubin(module: &str, arch: &str) -> Result<Vec<u8>, String> {
    use cudarc::nvrtc::{result, sys};
    use std::ffi::CString;
    if !nvrtc_present() {
        return Err("libnvrtc not found".into());
    }
    let (src, _) = module_sources(module).ok_or_else(|| format!("no kernel module `{module}`"))?;
    let src = CString::new(src).map_err(|e| e.to_string())?;
    let name = CString::new(format!("{module}.cu")).expect("no NUL");
    let prog = result::create_program(&src, Some(&name)).map_err(|e| format!("{e:?}"))?;
    let opts = [
        format!("--gpu-architecture={arch}"),
        "--std=c++14".to_string(),
    ];
    // SAFETY: prog is a live program; every call below checks its status; destroyed once.
    unsafe {
        let out = match result::compile_program(prog, &opts) {
            Err(e) => {
                let log = result::get_program_log(prog)
                    .map(|l| {
                        let bytes: Vec<u8> = l.iter().map(|&c| c as u8).collect();
                        String::from_utf8_lossy(&bytes)
                            .trim_end_matches('\0')
                            .to_string()
                    })
                    .unwrap_or_default();
                Err(format!("{module}.cu for {arch}: {e:?}: {log}"))
            }
            Ok(()) => {
                let mut size = 0usize;
                sys::nvrtcGetCUBINSize(prog, &mut size)
                    .result()
                    .map_err(|e| format!("{e:?}"))
                    .and_then(|()| {
                        let mut buf = vec![0u8; size];
                        sys::nvrtcGetCUBIN(prog, buf.as_mut_ptr() as *mut std::ffi::c_char)
                            .result()
                            .map(|()| buf)
                            .map_err(|e| format!("{e:?}"))
                    })
            }
        };
        let _ = result::destroy_program(prog);
        out
    }
}

/// The device code of a module for a GPU of compute capability (major, minor), compiled once per
/// process: a cubin for sm_XY, or PTX for compute_XY when this NVRTC does not know the GPU.
fn cached_module(module: &'static str, cc: (i32, i32)) -> Result<Ptx, String> {
    static CACHE: OnceLock<Mutex<HashMap<(String, (i32, i32)), Vec<u8>>>> = OnceLock::new();
    let cache = CACHE.get_or_init(|| Mutex::new(HashMap::new()));
    let key = (module.to_string(), cc);
    if let Some(bin) = cache.lock().unwrap().get(&key) {
        return Ok(Ptx::from_binary(bin.clone()));
    }
    let (major, minor) = cc;
    match compile_module_cubin(module, &format!("sm_{major}{minor}")) {
        Ok(bin) => {
            cache.lock().unwrap().insert(key, bin.clone());
            Ok(Ptx::from_binary(bin))
        }
        Err(cubin_err) => compile_module(module, &format!("compute_{major}{minor}"))
            .map_err(|e| format!("{cubin_err}; PTX: {e}")),
    }
}

pub struct CudaRuntime {
    ctx: Arc<CudaContext>,
    stream: Arc<CudaStream>,
    kernels: HashMap<Kernel, CudaFunction>,
    name: String,
    error: Mutex<Option<String>>,
}

impl std::fmt::Debug for CudaRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CudaRuntime({})", self.name)
    }
}

impl CudaRuntime {
    /// Whether a CUDA device opens here: the libraries load, a device exists and the kernels load
    /// on it (compiled once per process, so later opens are cheap).
    pub fn available() -> Result<(), BackendError> {
        Self::open().map(|_| ())
    }

    /// Whether the libraries load and at least one device exists.
    pub fn probe() -> Result<(), BackendError> {
        // SAFETY: only tries to dlopen libcuda under its known names.
        if !unsafe { cudarc::driver::sys::is_culib_present() } {
            return Err(unavailable("libcuda not found (no NVIDIA driver)"));
        }
        if !nvrtc_present() {
            return Err(unavailable(
                "libnvrtc not found (install the CUDA toolkit or nvidia-cuda-nvrtc-cu12)",
            ));
        }
        match CudaContext::device_count() {
            Ok(n) if n > 0 => Ok(()),
            Ok(_) => Err(unavailable("no CUDA device")),
            Err(e) => Err(unavailable(format!("driver: {e}"))),
        }
    }

    /// Opens device 0 and loads every kernel module.
    pub fn open() -> Result<Self, BackendError> {
        Self::probe()?;
        let ctx = CudaContext::new(0).map_err(|e| unavailable(format!("{e}")))?;
        // One stream: ordering is the stream's, no per-buffer events needed.
        // SAFETY: no other stream touches these buffers.
        unsafe { ctx.disable_event_tracking() };
        // A stream of our own, not the legacy NULL stream (which syncs with every other stream).
        let stream = ctx
            .new_stream()
            .map_err(|e| unavailable(format!("stream: {e}")))?;
        let (major, minor) = ctx
            .compute_capability()
            .map_err(|e| unavailable(format!("{e}")))?;
        let mut kernels = HashMap::new();
        for module in MODULES {
            let ptx = cached_module(module, (major, minor)).map_err(unavailable)?;
            let m = ctx
                .load_module(ptx)
                .map_err(|e| unavailable(format!("loading {module}: {e}")))?;
            for k in Kernel::ALL.iter().filter(|k| k.module() == module) {
                let f = m
                    .load_function(k.entry())
                    .map_err(|e| unavailable(format!("{}: {e}", k.entry())))?;
                kernels.insert(*k, f);
            }
        }
        let name = ctx.name().unwrap_or_else(|_| "CUDA device".into());
        Ok(CudaRuntime {
            ctx,
            stream,
            kernels,
            name: format!("{name} (sm_{major}{minor})"),
            error: Mutex::new(None),
        })
    }

    fn record<T>(&self, r: Result<T, cudarc::driver::DriverError>) -> Option<T> {
        match r {
            Ok(v) => Some(v),
            Err(e) => {
                self.error.lock().unwrap().get_or_insert(format!("{e}"));
                None
            }
        }
    }

    fn ptr(&self, m: &Mem) -> u64 {
        match m {
            Mem::Cuda(s) => s.device_ptr(&self.stream).0,
            #[allow(unreachable_patterns)]
            _ => panic!("a non-CUDA buffer was passed to the CUDA runtime"),
        }
    }
}

impl Runtime for CudaRuntime {
    fn device(&self) -> Device {
        Device::Cuda
    }

    fn name(&self) -> String {
        self.name.clone()
    }

    fn alloc(&self, words: usize) -> Result<Mem, BackendError> {
        // SAFETY: the memory is written by a kernel, a copy or `zero` before it is read.
        unsafe { self.stream.alloc::<u32>(words.max(1)) }
            .map(Mem::Cuda)
            .map_err(|e| BackendError::Device(format!("{e}")))
    }

    fn write(&self, dst: &Mem, host: &[u32]) {
        // Raw driver calls need the context current on this thread (tests share a backend
        // across threads).
        self.record(self.ctx.bind_to_thread());
        let p = self.ptr(dst);
        // SAFETY: dst holds at least host.len() words; the copy is ordered on the stream, and the
        // stream is synchronized before the host slice can go away.
        let r =
            unsafe { cudarc::driver::result::memcpy_htod_async(p, host, self.stream.cu_stream()) };
        self.record(r);
        self.record(self.stream.synchronize());
    }

    fn read(&self, src: &Mem, words: usize) -> Vec<u32> {
        // Raw driver calls need the context current on this thread (tests share a backend
        // across threads).
        self.record(self.ctx.bind_to_thread());
        let mut out = vec![0u32; words];
        let p = self.ptr(src);
        // SAFETY: src holds at least `words` words; synchronized before `out` is read.
        let r = unsafe {
            cudarc::driver::result::memcpy_dtoh_async(&mut out, p, self.stream.cu_stream())
        };
        self.record(r);
        self.record(self.stream.synchronize());
        out
    }

    fn copy(&self, src: &Mem, src_off: usize, dst: &Mem, dst_off: usize, words: usize) {
        // Raw driver calls need the context current on this thread (tests share a backend
        // across threads).
        self.record(self.ctx.bind_to_thread());
        let (s, d) = (
            self.ptr(src) + 4 * src_off as u64,
            self.ptr(dst) + 4 * dst_off as u64,
        );
        // SAFETY: both ranges lie inside their buffers (the seam checks limb counts).
        let r = unsafe {
            cudarc::driver::result::memcpy_dtod_async(d, s, 4 * words, self.stream.cu_stream())
        };
        self.record(r);
    }

    fn zero(&self, dst: &Mem, words: usize) {
        // Raw driver calls need the context current on this thread (tests share a backend
        // across threads).
        self.record(self.ctx.bind_to_thread());
        let p = self.ptr(dst);
        // SAFETY: dst holds at least `words` words.
        let r = unsafe {
            cudarc::driver::sys::cuMemsetD32Async(p, 0, words, self.stream.cu_stream()).result()
        };
        self.record(r);
    }

    fn launch(&self, kernel: Kernel, groups: [u32; 2], mems: &[&Mem], params: &[u32; PARAM_WORDS]) {
        let f = &self.kernels[&kernel];
        let ptrs: Vec<u64> = mems.iter().map(|m| self.ptr(m)).collect();
        let p = Params(*params);
        let mut b = self.stream.launch_builder(f);
        for ptr in &ptrs {
            b.arg(ptr);
        }
        b.arg(&p);
        let cfg = LaunchConfig {
            grid_dim: (groups[0], groups[1], 1),
            block_dim: (GROUP as u32, 1, 1),
            shared_mem_bytes: 0,
        };
        // SAFETY: the argument list matches the kernel's signature (Kernel::bindings, then Params).
        let r = unsafe { b.launch(cfg) };
        self.record(r);
    }

    fn synchronize(&self) {
        self.record(self.stream.synchronize());
    }

    fn error(&self) -> Option<String> {
        self.error.lock().unwrap().clone()
    }
}

impl Drop for CudaRuntime {
    fn drop(&mut self) {
        let _ = self.stream.synchronize();
        let _ = &self.ctx;
    }
}
