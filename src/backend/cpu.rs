//! The CPU reference backend: plain Rust loops (auto-vectorized, dispatched by CPU feature) with
//! rayon across limbs. The GPU twins must match it bit for bit.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use rayon::prelude::*;

use super::{Buffer, Device, RingBackend, RingContext};
use crate::math::rns::{half_product, BaseConverter, ShoupReducer};
use crate::math::Modulus;

#[derive(Debug)]
pub struct CpuBackend {
    ring: Arc<RingContext>,
    /// NTT-domain permutation of each Galois element.
    perms: Mutex<HashMap<usize, Arc<Vec<u32>>>>,
    /// Base converters by (from, to) prime lists.
    converters: Mutex<HashMap<(Vec<usize>, Vec<usize>), Arc<BaseConverter>>>,
}

fn data(b: &Buffer) -> &[u32] {
    match b {
        Buffer::Cpu(v) => v,
        #[cfg(any(feature = "cuda", feature = "wgpu"))]
        Buffer::Gpu(_) => panic!("a GPU buffer was passed to the CPU backend"),
    }
}

fn data_mut(b: &mut Buffer) -> &mut [u32] {
    match b {
        Buffer::Cpu(v) => v,
        #[cfg(any(feature = "cuda", feature = "wgpu"))]
        Buffer::Gpu(_) => panic!("a GPU buffer was passed to the CPU backend"),
    }
}

crate::multiversion! {
    fn add_vec(a: &mut [u32], b: &[u32], q: u32) {
        for (x, &y) in a.iter_mut().zip(b) {
            let s = *x + y;
            *x = if s >= q { s - q } else { s };
        }
    }
}

crate::multiversion! {
    fn sub_vec(a: &mut [u32], b: &[u32], q: u32) {
        for (x, &y) in a.iter_mut().zip(b) {
            let s = *x + q - y;
            *x = if s >= q { s - q } else { s };
        }
    }
}

crate::multiversion! {
    fn neg_vec(a: &mut [u32], q: u32) {
        for x in a.iter_mut() {
            *x = if *x == 0 { 0 } else { q - *x };
        }
    }
}

crate::multiversion! {
    /// a = a * w mod q (Shoup, w constant).
    fn mul_shoup_assign(a: &mut [u32], w: u32, ws: u32, q: u32) {
        for x in a.iter_mut() {
            let t = ((*x as u64 * ws as u64) >> 32) as u32;
            let r = x.wrapping_mul(w).wrapping_sub(t.wrapping_mul(q));
            *x = if r >= q { r - q } else { r };
        }
    }
}

crate::multiversion! {
    fn add_const_vec(a: &mut [u32], c: u32, q: u32) {
        for x in a.iter_mut() {
            let s = *x + c;
            *x = if s >= q { s - q } else { s };
        }
    }
}

crate::multiversion! {
    fn mul_vec(out: &mut [u32], a: &[u32], b: &[u32], m: &Modulus) {
        for ((o, &x), &y) in out.iter_mut().zip(a).zip(b) {
            *o = m.mul(x, y);
        }
    }
}

crate::multiversion! {
    fn mul_assign_vec(a: &mut [u32], b: &[u32], m: &Modulus) {
        for (x, &y) in a.iter_mut().zip(b) {
            *x = m.mul(*x, y);
        }
    }
}

crate::multiversion! {
    fn mul_add_vec(acc: &mut [u32], a: &[u32], b: &[u32], m: &Modulus) {
        for ((o, &x), &y) in acc.iter_mut().zip(a).zip(b) {
            let p = m.mul(x, y);
            let s = *o + p;
            *o = if s >= m.q { s - m.q } else { s };
        }
    }
}

crate::multiversion! {
    /// out = (x - r) * dinv mod q (Shoup).
    fn sub_mul_shoup_vec(out: &mut [u32], x: &[u32], r: &[u32], dinv: u32, dinv_s: u32, q: u32) {
        for ((o, &a), &b) in out.iter_mut().zip(x).zip(r) {
            let d = a + q - b;
            let t = ((d as u64 * dinv_s as u64) >> 32) as u32;
            let v = d.wrapping_mul(dinv).wrapping_sub(t.wrapping_mul(q));
            *o = if v >= q { v - q } else { v };
        }
    }
}

crate::multiversion! {
    /// acc0 = sum_j d_j * b_j, acc1 = sum_j d_j * a_j over one limb, lazily in u64 over L1-sized
    /// blocks (a reduction every 15 digits keeps the sums below 2^64).
    fn ks_limb(acc0: &mut [u32], acc1: &mut [u32], d: &[&[u32]], b: &[&[u32]], a: &[&[u32]], red: &ShoupReducer) {
        let n = acc0.len();
        const BLOCK: usize = 256;
        let mut s0 = [0u64; BLOCK];
        let mut s1 = [0u64; BLOCK];
        let mut start = 0;
        while start < n {
            let len = BLOCK.min(n - start);
            s0[..len].fill(0);
            s1[..len].fill(0);
            for j in 0..d.len() {
                let dj = &d[j][start..start + len];
                let bj = &b[j][start..start + len];
                let aj = &a[j][start..start + len];
                for k in 0..len {
                    s0[k] += dj[k] as u64 * bj[k] as u64;
                    s1[k] += dj[k] as u64 * aj[k] as u64;
                }
                if j % 15 == 14 {
                    for k in 0..len {
                        s0[k] = red.reduce(s0[k]) as u64;
                        s1[k] = red.reduce(s1[k]) as u64;
                    }
                }
            }
            for k in 0..len {
                acc0[start + k] = red.reduce(s0[k]);
                acc1[start + k] = red.reduce(s1[k]);
            }
            start += len;
        }
    }
}

impl CpuBackend {
    pub fn new(ring: Arc<RingContext>) -> Self {
        CpuBackend {
            ring,
            perms: Mutex::new(HashMap::new()),
            converters: Mutex::new(HashMap::new()),
        }
    }

    fn n(&self) -> usize {
        self.ring.n
    }

    fn converter(&self, from: &[usize], to: &[usize]) -> Arc<BaseConverter> {
        let key = (from.to_vec(), to.to_vec());
        let mut map = self.converters.lock().unwrap();
        map.entry(key)
            .or_insert_with(|| {
                Arc::new(BaseConverter::new(
                    &self.ring.moduli_of(from),
                    &self.ring.moduli_of(to),
                ))
            })
            .clone()
    }

    /// Permutation for X -> X^g in the bit-reversed NTT order: out[i] = in[perm[i]].
    fn perm(&self, galois: usize) -> Arc<Vec<u32>> {
        let mut map = self.perms.lock().unwrap();
        map.entry(galois)
            .or_insert_with(|| {
                let n = self.n();
                let log_n = self.ring.log_n;
                let two_n = 2 * n;
                Arc::new(
                    (0..n)
                        .map(|i| {
                            let e = 2 * crate::math::ntt::bitrev(i, log_n) + 1;
                            let f = e * galois % two_n;
                            crate::math::ntt::bitrev((f - 1) / 2, log_n) as u32
                        })
                        .collect(),
                )
            })
            .clone()
    }

    fn limbs_mut<'a>(&self, buf: &'a mut Buffer) -> rayon::slice::ChunksMut<'a, u32> {
        let n = self.n();
        data_mut(buf).par_chunks_mut(n)
    }
}

impl RingBackend for CpuBackend {
    fn device(&self) -> Device {
        Device::Cpu
    }

    fn ring(&self) -> &Arc<RingContext> {
        &self.ring
    }

    fn upload(&self, host: &[u32]) -> Buffer {
        Buffer::Cpu(host.to_vec())
    }

    fn download(&self, buf: &Buffer) -> Vec<u32> {
        data(buf).to_vec()
    }

    fn zeros(&self, limbs: usize) -> Buffer {
        Buffer::Cpu(vec![0; limbs * self.n()])
    }

    fn slice_limbs(&self, buf: &Buffer, from: usize, to: usize) -> Buffer {
        let n = self.n();
        Buffer::Cpu(data(buf)[from * n..to * n].to_vec())
    }

    fn concat_limbs(&self, parts: &[&Buffer]) -> Buffer {
        let mut v = Vec::with_capacity(parts.iter().map(|p| p.len()).sum());
        for p in parts {
            v.extend_from_slice(data(p));
        }
        Buffer::Cpu(v)
    }

    fn ntt(&self, buf: &mut Buffer, primes: &[usize]) {
        let ring = &self.ring;
        self.limbs_mut(buf)
            .zip(primes.par_iter())
            .for_each(|(l, &p)| ring.ntt[p].forward(l));
    }

    fn intt(&self, buf: &mut Buffer, primes: &[usize]) {
        let ring = &self.ring;
        self.limbs_mut(buf)
            .zip(primes.par_iter())
            .for_each(|(l, &p)| ring.ntt[p].inverse(l));
    }

    fn add_assign(&self, a: &mut Buffer, b: &Buffer, primes: &[usize]) {
        let (ring, n) = (&self.ring, self.n());
        self.limbs_mut(a)
            .zip(data(b).par_chunks(n))
            .zip(primes.par_iter())
            .for_each(|((x, y), &p)| add_vec(x, y, ring.moduli[p].q));
    }

    fn sub_assign(&self, a: &mut Buffer, b: &Buffer, primes: &[usize]) {
        let (ring, n) = (&self.ring, self.n());
        self.limbs_mut(a)
            .zip(data(b).par_chunks(n))
            .zip(primes.par_iter())
            .for_each(|((x, y), &p)| sub_vec(x, y, ring.moduli[p].q));
    }

    fn neg_assign(&self, a: &mut Buffer, primes: &[usize]) {
        let ring = &self.ring;
        self.limbs_mut(a)
            .zip(primes.par_iter())
            .for_each(|(x, &p)| neg_vec(x, ring.moduli[p].q));
    }

    fn mul_assign(&self, a: &mut Buffer, b: &Buffer, primes: &[usize]) {
        let (ring, n) = (&self.ring, self.n());
        self.limbs_mut(a)
            .zip(data(b).par_chunks(n))
            .zip(primes.par_iter())
            .for_each(|((x, y), &p)| mul_assign_vec(x, y, &ring.moduli[p]));
    }

    fn mul(&self, a: &Buffer, b: &Buffer, primes: &[usize]) -> Buffer {
        let (ring, n) = (&self.ring, self.n());
        let mut out = self.zeros(primes.len());
        self.limbs_mut(&mut out)
            .zip(data(a).par_chunks(n))
            .zip(data(b).par_chunks(n))
            .zip(primes.par_iter())
            .for_each(|(((o, x), y), &p)| mul_vec(o, x, y, &ring.moduli[p]));
        out
    }

    fn mul_add_assign(&self, acc: &mut Buffer, a: &Buffer, b: &Buffer, primes: &[usize]) {
        let (ring, n) = (&self.ring, self.n());
        self.limbs_mut(acc)
            .zip(data(a).par_chunks(n))
            .zip(data(b).par_chunks(n))
            .zip(primes.par_iter())
            .for_each(|(((o, x), y), &p)| mul_add_vec(o, x, y, &ring.moduli[p]));
    }

    fn mul_scalar_assign(&self, a: &mut Buffer, scalars: &[u32], primes: &[usize]) {
        let ring = &self.ring;
        self.limbs_mut(a)
            .zip(primes.par_iter())
            .zip(scalars.par_iter())
            .for_each(|((x, &p), &c)| {
                let m = ring.moduli[p];
                let c = c % m.q;
                mul_shoup_assign(x, c, m.shoup(c), m.q);
            });
    }

    fn add_scalar_assign(&self, a: &mut Buffer, scalars: &[u32], primes: &[usize]) {
        let ring = &self.ring;
        self.limbs_mut(a)
            .zip(primes.par_iter())
            .zip(scalars.par_iter())
            .for_each(|((x, &p), &c)| add_const_vec(x, c % ring.moduli[p].q, ring.moduli[p].q));
    }

    fn automorphism(&self, a: &Buffer, galois: usize, primes: &[usize]) -> Buffer {
        let perm = self.perm(galois);
        let n = self.n();
        let mut out = self.zeros(primes.len());
        self.limbs_mut(&mut out)
            .zip(data(a).par_chunks(n))
            .for_each(|(o, x)| {
                for (oi, &pi) in o.iter_mut().zip(perm.iter()) {
                    *oi = x[pi as usize];
                }
            });
        out
    }

    fn divide_round_last(&self, x: &Buffer, primes: &[usize], n_drop: usize) -> Buffer {
        let n = self.n();
        let ring = &self.ring;
        let keep = &primes[..primes.len() - n_drop];
        let drop = &primes[primes.len() - n_drop..];
        let src = data(x);
        // r = [x + h]_D in coefficient form, h = floor(D/2).
        let drop_mods = ring.moduli_of(drop);
        let mut r: Vec<u32> = src[keep.len() * n..].to_vec();
        let half: Vec<u32> = half_product(&drop_mods, &drop_mods);
        r.par_chunks_mut(n)
            .zip(drop.par_iter())
            .zip(half.par_iter())
            .for_each(|((l, &p), &h)| {
                ring.ntt[p].inverse(l);
                add_const_vec(l, h, ring.moduli[p].q);
            });
        let conv = self.converter(drop, keep);
        let rs: Vec<&[u32]> = r.chunks(n).collect();
        let mut lifted = vec![0u32; keep.len() * n];
        {
            let mut outs: Vec<&mut [u32]> = lifted.chunks_mut(n).collect();
            conv.convert(&rs, &mut outs);
        }
        // r - h over the kept primes, back to NTT form, then (x - (r - h)) * D^-1.
        let keep_mods = ring.moduli_of(keep);
        let half_keep = half_product(&drop_mods, &keep_mods);
        let mut out = vec![0u32; keep.len() * n];
        out.par_chunks_mut(n)
            .zip(lifted.par_chunks_mut(n))
            .zip(src.par_chunks(n))
            .zip(keep.par_iter().zip(half_keep.par_iter()))
            .for_each(|(((o, l), xs), (&p, &h))| {
                let m = ring.moduli[p];
                add_const_vec(l, m.neg(h), m.q);
                ring.ntt[p].forward(l);
                let d = drop_mods
                    .iter()
                    .fold(1u32, |acc, dm| m.mul(acc, dm.q % m.q));
                let dinv = m.inv(d).expect("distinct primes");
                sub_mul_shoup_vec(o, xs, l, dinv, m.shoup(dinv), m.q);
            });
        Buffer::Cpu(out)
    }

    fn mod_up(
        &self,
        x_coeff: &Buffer,
        x_ntt: &Buffer,
        level: &[usize],
        digit: (usize, usize),
        ext: &[usize],
    ) -> Buffer {
        let n = self.n();
        let ring = &self.ring;
        let (d0, d1) = digit;
        let from = &level[d0..d1];
        let to: Vec<usize> = ext.iter().copied().filter(|p| !from.contains(p)).collect();
        let conv = self.converter(from, &to);
        let xc = data(x_coeff);
        let ins: Vec<&[u32]> = (d0..d1).map(|i| &xc[i * n..(i + 1) * n]).collect();
        let mut lifted = vec![0u32; to.len() * n];
        {
            let mut outs: Vec<&mut [u32]> = lifted.chunks_mut(n).collect();
            conv.convert(&ins, &mut outs);
        }
        lifted
            .par_chunks_mut(n)
            .zip(to.par_iter())
            .for_each(|(l, &p)| ring.ntt[p].forward(l));
        let xn = data(x_ntt);
        let mut out = vec![0u32; ext.len() * n];
        let mut k = 0;
        for (i, o) in out.chunks_mut(n).enumerate() {
            if i >= d0 && i < d1 {
                o.copy_from_slice(&xn[i * n..(i + 1) * n]);
            } else {
                o.copy_from_slice(&lifted[k * n..(k + 1) * n]);
                k += 1;
            }
        }
        Buffer::Cpu(out)
    }

    fn keyswitch_inner(
        &self,
        digits: &[Buffer],
        keys_b: &[&Buffer],
        keys_a: &[&Buffer],
        ext: &[usize],
        key_limbs: &[usize],
    ) -> (Buffer, Buffer) {
        let n = self.n();
        let ring = &self.ring;
        let mut acc0 = vec![0u32; ext.len() * n];
        let mut acc1 = vec![0u32; ext.len() * n];
        acc0.par_chunks_mut(n)
            .zip(acc1.par_chunks_mut(n))
            .enumerate()
            .for_each(|(k, (o0, o1))| {
                let p = ext[k];
                let kl = key_limbs[k];
                let d: Vec<&[u32]> = digits
                    .iter()
                    .map(|b| &data(b)[k * n..(k + 1) * n])
                    .collect();
                let b: Vec<&[u32]> = keys_b
                    .iter()
                    .map(|b| &data(b)[kl * n..(kl + 1) * n])
                    .collect();
                let a: Vec<&[u32]> = keys_a
                    .iter()
                    .map(|b| &data(b)[kl * n..(kl + 1) * n])
                    .collect();
                ks_limb(o0, o1, &d, &b, &a, &ShoupReducer::new(&ring.moduli[p]));
            });
        (Buffer::Cpu(acc0), Buffer::Cpu(acc1))
    }
}
