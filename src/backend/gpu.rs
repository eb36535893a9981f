//! The host side of the GPU twins, shared by CUDA and wgpu: which kernel runs with which
//! parameters for each call of the seam. A `Runtime` only moves memory and launches the kernels of
//! `kernels/*.cu` or `shaders/*.wgsl` (same file stems, same entry points, same bindings), so the two
//! twins differ in a few hundred lines of device plumbing and in nothing a test could see.
//!
//! Memory stays on the device between calls; freed buffers go back to a pool keyed by size (the ring
//! only ever asks for a handful of sizes: limbs x N), so steady-state operations allocate nothing.
//! Per-prime constants and NTT twiddles are uploaded once when the backend opens; base-conversion
//! tables once per (from, to) prime list.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};

use super::{BackendError, Buffer, Device, RingBackend, RingContext};
use crate::math::rns::{half_product, BaseConverter};

/// Threads per workgroup (CUDA block) of every kernel.
pub const GROUP: usize = 256;
/// u32 words of launch parameters (a uniform block in WGSL, a by-value struct in CUDA).
pub const PARAM_WORDS: usize = 256;
/// Elements that one workgroup transforms in shared memory (the `*_block` NTT kernels).
pub const NTT_BLOCK: usize = 2048;
/// Words per prime in the constants table (see shaders/common.wgsl).
pub const CONST_STRIDE: usize = 8;
/// Where per-limb arrays start in the parameters.
const ARRAYS: usize = 8;

/// Kernel modules: file stems of kernels/*.cu and shaders/*.wgsl.
pub const MODULES: [&str; 5] = [
    "ntt",
    "pointwise",
    "automorphism",
    "base_conversion",
    "keyswitch",
];

/// The sources of a module, prelude first: `(cuda, wgsl)`.
pub fn module_sources(module: &str) -> Option<(String, String)> {
    const CUDA_COMMON: &str = include_str!("../../kernels/common.cuh");
    const WGSL_COMMON: &str = include_str!("../../shaders/common.wgsl");
    let (cu, wgsl) = match module {
        "ntt" => (
            include_str!("../../kernels/ntt.cu"),
            include_str!("../../shaders/ntt.wgsl"),
        ),
        "pointwise" => (
            include_str!("../../kernels/pointwise.cu"),
            include_str!("../../shaders/pointwise.wgsl"),
        ),
        "automorphism" => (
            include_str!("../../kernels/automorphism.cu"),
            include_str!("../../shaders/automorphism.wgsl"),
        ),
        "base_conversion" => (
            include_str!("../../kernels/base_conversion.cu"),
            include_str!("../../shaders/base_conversion.wgsl"),
        ),
        "keyswitch" => (
            include_str!("../../kernels/keyswitch.cu"),
            include_str!("../../shaders/keyswitch.wgsl"),
        ),
        _ => return None,
    };
    Some((
        format!("{CUDA_COMMON}\n{cu}"),
        format!("{WGSL_COMMON}\n{wgsl}"),
    ))
}

/// Every kernel of the seam.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kernel {
    NttFwdStage,
    NttFwdBlock,
    NttInvStage,
    NttInvBlock,
    Add,
    Sub,
    Neg,
    Mul,
    MulAssign,
    MulAdd,
    MulScalar,
    AddScalar,
    SubMulScalar,
    Automorphism,
    ConvertBasis,
    KeyswitchAccumulate,
}

impl Kernel {
    pub const ALL: [Kernel; 16] = [
        Kernel::NttFwdStage,
        Kernel::NttFwdBlock,
        Kernel::NttInvStage,
        Kernel::NttInvBlock,
        Kernel::Add,
        Kernel::Sub,
        Kernel::Neg,
        Kernel::Mul,
        Kernel::MulAssign,
        Kernel::MulAdd,
        Kernel::MulScalar,
        Kernel::AddScalar,
        Kernel::SubMulScalar,
        Kernel::Automorphism,
        Kernel::ConvertBasis,
        Kernel::KeyswitchAccumulate,
    ];

    /// The module (file stem) that defines it.
    pub fn module(self) -> &'static str {
        use Kernel::*;
        match self {
            NttFwdStage | NttFwdBlock | NttInvStage | NttInvBlock => "ntt",
            Add | Sub | Neg | Mul | MulAssign | MulAdd | MulScalar | AddScalar | SubMulScalar => {
                "pointwise"
            }
            Automorphism => "automorphism",
            ConvertBasis => "base_conversion",
            KeyswitchAccumulate => "keyswitch",
        }
    }

    /// The entry point, the same in both languages.
    pub fn entry(self) -> &'static str {
        use Kernel::*;
        match self {
            NttFwdStage => "ntt_fwd_stage",
            NttFwdBlock => "ntt_fwd_block",
            NttInvStage => "ntt_inv_stage",
            NttInvBlock => "ntt_inv_block",
            Add => "add",
            Sub => "sub",
            Neg => "neg",
            Mul => "mul",
            MulAssign => "mul_assign",
            MulAdd => "mul_add",
            MulScalar => "mul_scalar",
            AddScalar => "add_scalar",
            SubMulScalar => "sub_mul_scalar",
            Automorphism => "automorphism",
            ConvertBasis => "convert_basis",
            KeyswitchAccumulate => "keyswitch_accumulate",
        }
    }

    /// Its buffers in argument order: (WGSL binding, written). CUDA takes them in the same order,
    /// followed by the parameters; WGSL has the parameters at binding 0.
    pub fn bindings(self) -> &'static [(u32, bool)] {
        use Kernel::*;
        match self {
            NttFwdStage | NttFwdBlock | NttInvStage | NttInvBlock => {
                &[(1, true), (2, false), (3, false)]
            }
            Add | Sub | MulAssign => &[(1, true), (2, false), (4, false)],
            Neg | MulScalar | AddScalar => &[(1, true), (4, false)],
            Mul | MulAdd | SubMulScalar => &[(1, true), (2, false), (3, false), (4, false)],
            Automorphism => &[(1, true), (2, false)],
            ConvertBasis => &[(1, true), (2, false), (3, false), (4, false)],
            KeyswitchAccumulate => &[
                (1, true),
                (2, true),
                (3, false),
                (4, false),
                (5, false),
                (6, false),
            ],
        }
    }
}

/// Device memory of one runtime.
pub enum Mem {
    #[cfg(feature = "cuda")]
    Cuda(cudarc::driver::CudaSlice<u32>),
    #[cfg(feature = "wgpu")]
    Wgpu(wgpu::Buffer),
}

/// What a GPU runtime provides: memory, copies and launches on one in-order queue. Errors from the
/// device are sticky (as CUDA's are): they are recorded, reported by `error`, and later results are
/// meaningless.
pub trait Runtime: Send + Sync + fmt::Debug {
    fn device(&self) -> Device;
    /// The adapter or GPU name.
    fn name(&self) -> String;
    /// Uninitialized memory of `words` u32.
    fn alloc(&self, words: usize) -> Result<Mem, BackendError>;
    fn write(&self, dst: &Mem, host: &[u32]);
    fn read(&self, src: &Mem, words: usize) -> Vec<u32>;
    fn copy(&self, src: &Mem, src_off: usize, dst: &Mem, dst_off: usize, words: usize);
    fn zero(&self, dst: &Mem, words: usize);
    /// Launches `kernel` on a grid of `groups` workgroups of `GROUP` threads.
    fn launch(&self, kernel: Kernel, groups: [u32; 2], mems: &[&Mem], params: &[u32; PARAM_WORDS]);
    /// Waits for all queued work.
    fn synchronize(&self);
    /// The first device error, if any.
    fn error(&self) -> Option<String>;
}

/// A runtime with its memory pool.
#[derive(Debug)]
pub struct Shared {
    rt: Box<dyn Runtime>,
    pool: Mutex<HashMap<usize, Vec<Mem>>>,
}

impl fmt::Debug for Mem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Mem")
    }
}

impl Shared {
    fn take(&self, words: usize) -> Mem {
        if let Some(m) = self
            .pool
            .lock()
            .unwrap()
            .get_mut(&words)
            .and_then(|v| v.pop())
        {
            return m;
        }
        match self.rt.alloc(words) {
            Ok(m) => m,
            Err(_) => {
                // Give the pooled memory back to the device and try once more.
                self.pool.lock().unwrap().clear();
                self.rt.synchronize();
                self.rt.alloc(words).unwrap_or_else(|e| {
                    panic!(
                        "{} out of memory ({} bytes): {e}",
                        self.rt.name(),
                        words * 4
                    )
                })
            }
        }
    }
}

/// A buffer in device memory; dropping it returns the memory to the pool.
pub struct GpuBuffer {
    mem: Option<Mem>,
    words: usize,
    shared: Arc<Shared>,
}

impl GpuBuffer {
    fn new(shared: &Arc<Shared>, words: usize) -> Self {
        GpuBuffer {
            mem: Some(shared.take(words)),
            words,
            shared: shared.clone(),
        }
    }

    pub fn len(&self) -> usize {
        self.words
    }

    pub fn is_empty(&self) -> bool {
        self.words == 0
    }

    fn mem(&self) -> &Mem {
        self.mem.as_ref().expect("live buffer")
    }

    /// Overwrites the buffer with zeros (secret keys on drop).
    pub fn zeroize(&mut self) {
        self.shared.rt.zero(self.mem(), self.words);
    }
}

impl Clone for GpuBuffer {
    fn clone(&self) -> Self {
        let out = GpuBuffer::new(&self.shared, self.words);
        self.shared.rt.copy(self.mem(), 0, out.mem(), 0, self.words);
        out
    }
}

impl Drop for GpuBuffer {
    fn drop(&mut self) {
        if let Some(m) = self.mem.take() {
            self.shared
                .pool
                .lock()
                .unwrap()
                .entry(self.words)
                .or_default()
                .push(m);
        }
    }
}

impl fmt::Debug for GpuBuffer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "GpuBuffer({} on {})",
            self.words,
            self.shared.rt.device()
        )
    }
}

/// The ring kernels on a GPU runtime.
#[derive(Debug)]
pub struct GpuBackend {
    ring: Arc<RingContext>,
    shared: Arc<Shared>,
    /// Per prime: forward, forward Shoup, inverse, inverse Shoup twiddles (N words each).
    twiddles: GpuBuffer,
    /// Per prime: CONST_STRIDE words (see shaders/common.wgsl).
    consts: GpuBuffer,
    converters: Mutex<HashMap<(Vec<usize>, Vec<usize>), Arc<GpuBuffer>>>,
}

fn gpu(b: &Buffer) -> &GpuBuffer {
    match b {
        Buffer::Gpu(g) => g,
        Buffer::Cpu(_) => panic!("a CPU buffer was passed to a GPU backend"),
    }
}

fn groups(n: usize) -> u32 {
    n.div_ceil(GROUP) as u32
}

impl GpuBackend {
    /// Uploads the ring's tables to a runtime.
    pub fn new(ring: Arc<RingContext>, rt: Box<dyn Runtime>) -> Result<Self, BackendError> {
        let shared = Arc::new(Shared {
            rt,
            pool: Mutex::new(HashMap::new()),
        });
        let n = ring.n;
        let mut tw = Vec::with_capacity(4 * n * ring.ntt.len());
        let mut consts = Vec::with_capacity(CONST_STRIDE * ring.moduli.len());
        for (t, m) in ring.ntt.iter().zip(&ring.moduli) {
            let (fwd, fwd_s, inv, inv_s) = t.twiddles();
            tw.extend_from_slice(fwd);
            tw.extend_from_slice(fwd_s);
            tw.extend_from_slice(inv);
            tw.extend_from_slice(inv_s);
            let (n_inv, n_inv_s) = t.n_inv();
            let r32 = ((1u64 << 32) % m.q as u64) as u32;
            let (mu, bits) = m.barrett();
            consts.extend_from_slice(&[
                m.q,
                mu,
                bits,
                n_inv,
                n_inv_s,
                r32,
                m.shoup(r32),
                m.shoup(1),
            ]);
        }
        let upload = |host: &[u32]| {
            let b = GpuBuffer::new(&shared, host.len());
            shared.rt.write(b.mem(), host);
            b
        };
        let twiddles = upload(&tw);
        let consts = upload(&consts);
        if let Some(e) = shared.rt.error() {
            return Err(BackendError::Device(e));
        }
        Ok(GpuBackend {
            ring,
            shared,
            twiddles,
            consts,
            converters: Mutex::new(HashMap::new()),
        })
    }

    fn n(&self) -> usize {
        self.ring.n
    }

    fn alloc(&self, limbs: usize) -> GpuBuffer {
        GpuBuffer::new(&self.shared, limbs * self.n())
    }

    fn wrap(b: GpuBuffer) -> Buffer {
        Buffer::Gpu(b)
    }

    /// Parameters with the header (n, log n, limbs) and the primes of the limbs at ARRAYS.
    fn params(&self, primes: &[usize], arrays: usize) -> [u32; PARAM_WORDS] {
        assert!(
            ARRAYS + arrays * primes.len() <= PARAM_WORDS,
            "{} limbs exceed the GPU launch parameters ({} words)",
            primes.len(),
            PARAM_WORDS
        );
        let mut p = [0u32; PARAM_WORDS];
        p[0] = self.n() as u32;
        p[1] = self.ring.log_n;
        p[2] = primes.len() as u32;
        for (i, &q) in primes.iter().enumerate() {
            p[ARRAYS + i] = q as u32;
        }
        p
    }

    fn launch(&self, k: Kernel, groups: [u32; 2], mems: &[&GpuBuffer], p: &[u32; PARAM_WORDS]) {
        if groups[0] == 0 || groups[1] == 0 {
            return;
        }
        let m: Vec<&Mem> = mems.iter().map(|b| b.mem()).collect();
        self.shared.rt.launch(k, groups, &m, p);
    }

    /// A two-operand pointwise kernel over every coefficient of every limb.
    fn pointwise(&self, k: Kernel, mems: &[&GpuBuffer], primes: &[usize], p: &[u32; PARAM_WORDS]) {
        self.launch(k, [groups(self.n()), primes.len() as u32], mems, p);
    }

    /// Per-limb constants c_i and their Shoup companions after the primes.
    fn scalar_params(&self, primes: &[usize], scalars: &[u32]) -> [u32; PARAM_WORDS] {
        let mut p = self.params(primes, 3);
        let l = primes.len();
        for (i, (&q, &c)) in primes.iter().zip(scalars).enumerate() {
            let m = self.ring.moduli[q];
            let c = c % m.q;
            p[ARRAYS + l + i] = c;
            p[ARRAYS + 2 * l + i] = m.shoup(c);
        }
        p
    }

    fn converter(&self, from: &[usize], to: &[usize]) -> Arc<GpuBuffer> {
        let key = (from.to_vec(), to.to_vec());
        if let Some(c) = self.converters.lock().unwrap().get(&key) {
            return c.clone();
        }
        let table =
            BaseConverter::new(&self.ring.moduli_of(from), &self.ring.moduli_of(to)).flat_table();
        let b = GpuBuffer::new(&self.shared, table.len());
        self.shared.rt.write(b.mem(), &table);
        let b = Arc::new(b);
        self.converters.lock().unwrap().insert(key, b.clone());
        b
    }

    /// dst = x over `to` for x given over `from` (limbs first.. of src, coefficient form).
    fn convert(
        &self,
        dst: &GpuBuffer,
        src: &GpuBuffer,
        first: usize,
        from: &[usize],
        to: &[usize],
    ) {
        let table = self.converter(from, to);
        let mut p = self.params(to, 1);
        assert!(
            ARRAYS + to.len() + from.len() <= PARAM_WORDS,
            "too many limbs for one conversion"
        );
        p[3] = from.len() as u32;
        p[4] = first as u32;
        for (j, &q) in from.iter().enumerate() {
            p[ARRAYS + to.len() + j] = q as u32;
        }
        self.launch(
            Kernel::ConvertBasis,
            [groups(self.n()), to.len() as u32],
            &[dst, src, &table, &self.consts],
            &p,
        );
    }

    fn copy_limbs(&self, src: &GpuBuffer, from: usize, dst: &GpuBuffer, to: usize, limbs: usize) {
        let n = self.n();
        if limbs > 0 {
            self.shared
                .rt
                .copy(src.mem(), from * n, dst.mem(), to * n, limbs * n);
        }
    }
}

impl RingBackend for GpuBackend {
    fn device(&self) -> Device {
        self.shared.rt.device()
    }

    fn ring(&self) -> &Arc<RingContext> {
        &self.ring
    }

    fn name(&self) -> String {
        self.shared.rt.name()
    }

    fn synchronize(&self) {
        self.shared.rt.synchronize();
    }

    fn status(&self) -> Result<(), BackendError> {
        match self.shared.rt.error() {
            Some(e) => Err(BackendError::Device(e)),
            None => Ok(()),
        }
    }

    fn upload(&self, host: &[u32]) -> Buffer {
        let b = GpuBuffer::new(&self.shared, host.len());
        self.shared.rt.write(b.mem(), host);
        Self::wrap(b)
    }

    fn download(&self, buf: &Buffer) -> Vec<u32> {
        let b = gpu(buf);
        self.shared.rt.read(b.mem(), b.words)
    }

    fn zeros(&self, limbs: usize) -> Buffer {
        let b = self.alloc(limbs);
        self.shared.rt.zero(b.mem(), b.words);
        Self::wrap(b)
    }

    fn slice_limbs(&self, buf: &Buffer, from: usize, to: usize) -> Buffer {
        let out = self.alloc(to - from);
        self.copy_limbs(gpu(buf), from, &out, 0, to - from);
        Self::wrap(out)
    }

    fn concat_limbs(&self, parts: &[&Buffer]) -> Buffer {
        let n = self.n();
        let limbs: usize = parts.iter().map(|p| p.len() / n).sum();
        let out = self.alloc(limbs);
        let mut at = 0;
        for p in parts {
            let l = p.len() / n;
            self.copy_limbs(gpu(p), 0, &out, at, l);
            at += l;
        }
        Self::wrap(out)
    }

    fn ntt(&self, buf: &mut Buffer, primes: &[usize]) {
        let (n, b) = (self.n(), gpu(buf));
        let mut p = self.params(primes, 1);
        let limbs = primes.len() as u32;
        let mems = [b, &self.twiddles, &self.consts];
        let mut t = n / 2;
        while t > NTT_BLOCK / 2 {
            p[3] = t as u32;
            p[4] = t.trailing_zeros();
            self.launch(Kernel::NttFwdStage, [groups(n / 2), limbs], &mems, &p);
            t /= 2;
        }
        p[3] = t as u32;
        p[4] = t.trailing_zeros();
        self.launch(
            Kernel::NttFwdBlock,
            [(n / (2 * t)) as u32, limbs],
            &mems,
            &p,
        );
    }

    fn intt(&self, buf: &mut Buffer, primes: &[usize]) {
        let (n, b) = (self.n(), gpu(buf));
        let mut p = self.params(primes, 1);
        let limbs = primes.len() as u32;
        let mems = [b, &self.twiddles, &self.consts];
        let t0 = (n / 2).min(NTT_BLOCK / 2);
        p[3] = t0 as u32;
        p[4] = t0.trailing_zeros();
        p[5] = (t0 == n / 2) as u32;
        self.launch(
            Kernel::NttInvBlock,
            [(n / (2 * t0)) as u32, limbs],
            &mems,
            &p,
        );
        let mut t = 2 * t0;
        while t <= n / 2 {
            p[3] = t as u32;
            p[4] = t.trailing_zeros();
            p[5] = (t == n / 2) as u32;
            self.launch(Kernel::NttInvStage, [groups(n / 2), limbs], &mems, &p);
            t *= 2;
        }
    }

    fn add_assign(&self, a: &mut Buffer, b: &Buffer, primes: &[usize]) {
        let p = self.params(primes, 1);
        self.pointwise(Kernel::Add, &[gpu(a), gpu(b), &self.consts], primes, &p);
    }

    fn sub_assign(&self, a: &mut Buffer, b: &Buffer, primes: &[usize]) {
        let p = self.params(primes, 1);
        self.pointwise(Kernel::Sub, &[gpu(a), gpu(b), &self.consts], primes, &p);
    }

    fn neg_assign(&self, a: &mut Buffer, primes: &[usize]) {
        let p = self.params(primes, 1);
        self.pointwise(Kernel::Neg, &[gpu(a), &self.consts], primes, &p);
    }

    fn mul_assign(&self, a: &mut Buffer, b: &Buffer, primes: &[usize]) {
        let p = self.params(primes, 1);
        self.pointwise(
            Kernel::MulAssign,
            &[gpu(a), gpu(b), &self.consts],
            primes,
            &p,
        );
    }

    fn mul(&self, a: &Buffer, b: &Buffer, primes: &[usize]) -> Buffer {
        let out = self.alloc(primes.len());
        let p = self.params(primes, 1);
        self.pointwise(
            Kernel::Mul,
            &[&out, gpu(a), gpu(b), &self.consts],
            primes,
            &p,
        );
        Self::wrap(out)
    }

    fn mul_add_assign(&self, acc: &mut Buffer, a: &Buffer, b: &Buffer, primes: &[usize]) {
        let p = self.params(primes, 1);
        self.pointwise(
            Kernel::MulAdd,
            &[gpu(acc), gpu(a), gpu(b), &self.consts],
            primes,
            &p,
        );
    }

    fn mul_scalar_assign(&self, a: &mut Buffer, scalars: &[u32], primes: &[usize]) {
        let p = self.scalar_params(primes, scalars);
        self.pointwise(Kernel::MulScalar, &[gpu(a), &self.consts], primes, &p);
    }

    fn add_scalar_assign(&self, a: &mut Buffer, scalars: &[u32], primes: &[usize]) {
        let p = self.scalar_params(primes, scalars);
        self.pointwise(Kernel::AddScalar, &[gpu(a), &self.consts], primes, &p);
    }

    fn automorphism(&self, a: &Buffer, galois: usize, primes: &[usize]) -> Buffer {
        let out = self.alloc(primes.len());
        let mut p = self.params(primes, 1);
        p[3] = (galois % (2 * self.n())) as u32;
        self.launch(
            Kernel::Automorphism,
            [groups(self.n()), primes.len() as u32],
            &[&out, gpu(a)],
            &p,
        );
        Self::wrap(out)
    }

    fn divide_round_last(&self, x: &Buffer, primes: &[usize], n_drop: usize) -> Buffer {
        let keep = &primes[..primes.len() - n_drop];
        let drop = &primes[primes.len() - n_drop..];
        let drop_mods = self.ring.moduli_of(drop);
        // r = [x + h]_D in coefficient form, h = floor(D/2); its lift to the kept primes minus h.
        let mut r = self.slice_limbs(x, keep.len(), primes.len());
        self.intt(&mut r, drop);
        self.add_scalar_assign(&mut r, &half_product(&drop_mods, &drop_mods), drop);
        let lifted = self.alloc(keep.len());
        self.convert(&lifted, gpu(&r), 0, drop, keep);
        let mut lifted = Self::wrap(lifted);
        let keep_mods = self.ring.moduli_of(keep);
        let neg_half: Vec<u32> = half_product(&drop_mods, &keep_mods)
            .iter()
            .zip(&keep_mods)
            .map(|(&h, m)| m.neg(h))
            .collect();
        self.add_scalar_assign(&mut lifted, &neg_half, keep);
        self.ntt(&mut lifted, keep);
        // (x - (r - h)) * D^-1.
        let dinv: Vec<u32> = keep_mods
            .iter()
            .map(|m| {
                let d = drop_mods.iter().fold(1u32, |a, dm| m.mul(a, dm.q % m.q));
                m.inv(d).expect("distinct primes")
            })
            .collect();
        let p = self.scalar_params(keep, &dinv);
        let out = self.alloc(keep.len());
        self.pointwise(
            Kernel::SubMulScalar,
            &[&out, gpu(x), gpu(&lifted), &self.consts],
            keep,
            &p,
        );
        Self::wrap(out)
    }

    fn mod_up(
        &self,
        x_coeff: &Buffer,
        x_ntt: &Buffer,
        level: &[usize],
        digit: (usize, usize),
        ext: &[usize],
    ) -> Buffer {
        let (d0, d1) = digit;
        let from = &level[d0..d1];
        let to: Vec<usize> = ext.iter().copied().filter(|p| !from.contains(p)).collect();
        let lifted = self.alloc(to.len());
        self.convert(&lifted, gpu(x_coeff), d0, from, &to);
        let mut lifted = Self::wrap(lifted);
        self.ntt(&mut lifted, &to);
        let (lifted, out) = (gpu(&lifted), self.alloc(ext.len()));
        self.copy_limbs(lifted, 0, &out, 0, d0);
        self.copy_limbs(gpu(x_ntt), d0, &out, d0, d1 - d0);
        self.copy_limbs(lifted, d0, &out, d1, ext.len() - d1);
        Self::wrap(out)
    }

    fn keyswitch_inner(
        &self,
        digits: &[Buffer],
        keys_b: &[&Buffer],
        keys_a: &[&Buffer],
        ext: &[usize],
        key_limbs: &[usize],
    ) -> (Buffer, Buffer) {
        let (acc0, acc1) = (self.alloc(ext.len()), self.alloc(ext.len()));
        if digits.is_empty() {
            self.shared.rt.zero(acc0.mem(), acc0.words);
            self.shared.rt.zero(acc1.mem(), acc1.words);
        }
        let mut p = self.params(ext, 2);
        for (i, &kl) in key_limbs.iter().enumerate() {
            p[ARRAYS + ext.len() + i] = kl as u32;
        }
        for (j, d) in digits.iter().enumerate() {
            p[3] = (j == 0) as u32;
            self.pointwise(
                Kernel::KeyswitchAccumulate,
                &[
                    &acc0,
                    &acc1,
                    gpu(d),
                    gpu(keys_b[j]),
                    gpu(keys_a[j]),
                    &self.consts,
                ],
                ext,
                &p,
            );
        }
        (Self::wrap(acc0), Self::wrap(acc1))
    }
}
