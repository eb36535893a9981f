//! Encoding of real or complex slot vectors into plaintexts (canonical embedding), full or sparse.
//!
//! `slots` values (a power of two up to N/2) are interpolated by the special FFT and placed at
//! coefficients i*gap (real parts) and N/2 + i*gap (imaginary parts), gap = N/(2 slots), so that
//! rotations by the Galois elements 5^r rotate any slot count.

use std::sync::Arc;

use super::{CkksError, Context, Plaintext};
use crate::math::fft::{SpecialFft, C64};

pub struct Encoder {
    ctx: Arc<Context>,
    fft: SpecialFft,
}

/// Number of leading limbs used to lift coefficients back to integers (u128 CRT: 4 x 30 bits).
const CRT_LIMBS: usize = 4;

impl Encoder {
    pub fn new(ctx: &Arc<Context>) -> Self {
        Encoder {
            ctx: ctx.clone(),
            fft: SpecialFft::new(ctx.params.n()),
        }
    }

    /// Encodes real values at `level` and `scale` (None: the level's default scale). The slot count
    /// is the length rounded up to a power of two (zero-padded).
    pub fn encode(
        &self,
        values: &[f64],
        level: usize,
        scale: Option<f64>,
    ) -> Result<Plaintext, CkksError> {
        let v: Vec<C64> = values.iter().map(|&x| C64::new(x, 0.0)).collect();
        self.encode_complex(&v, level, scale)
    }

    /// Encodes complex values.
    pub fn encode_complex(
        &self,
        values: &[C64],
        level: usize,
        scale: Option<f64>,
    ) -> Result<Plaintext, CkksError> {
        let p = &self.ctx.params;
        if level > p.max_level() {
            return Err(CkksError::Invalid(format!(
                "level {level} above the top level {}",
                p.max_level()
            )));
        }
        if values.is_empty() || values.len() > p.max_slots() {
            return Err(CkksError::Invalid(format!(
                "{} values: expected 1..={} slots",
                values.len(),
                p.max_slots()
            )));
        }
        let scale = scale.unwrap_or(p.default_scales[level]);
        if !(scale.is_finite() && scale >= 1.0) {
            return Err(CkksError::Invalid(format!(
                "scale {scale} must be finite and >= 1"
            )));
        }
        let slots = values.len().next_power_of_two();
        let mut v = vec![C64::default(); slots];
        v[..values.len()].copy_from_slice(values);
        if let Some(bad) = v.iter().find(|x| !x.re.is_finite() || !x.im.is_finite()) {
            return Err(CkksError::OutOfRange(format!("non-finite value {bad:?}")));
        }
        self.fft.inverse(&mut v);
        let coeffs = self.place(&v, scale, level)?;
        let poly = self.to_ntt(&coeffs, level);
        Ok(Plaintext {
            poly,
            level,
            scale,
            slots,
        })
    }

    /// Scaled, rounded coefficients; errors if any exceeds what Q_level holds.
    fn place(&self, v: &[C64], scale: f64, level: usize) -> Result<Vec<i128>, CkksError> {
        let p = &self.ctx.params;
        let n = p.n();
        let gap = n / (2 * v.len());
        let bound = 2f64.powf((p.log_q_at(level) - 1.0).min(126.0));
        let mut coeffs = vec![0i128; n];
        for (i, x) in v.iter().enumerate() {
            for (idx, c) in [(i * gap, x.re), (n / 2 + i * gap, x.im)] {
                let s = (c * scale).round();
                if s.abs() >= bound {
                    return Err(CkksError::OutOfRange(format!(
                        "|value x scale| = 2^{:.1} does not fit Q at level {level} (2^{:.1})",
                        s.abs().log2(),
                        bound.log2() + 1.0
                    )));
                }
                coeffs[idx] = s as i128;
            }
        }
        Ok(coeffs)
    }

    /// Signed coefficients -> NTT-form buffer over the level's primes.
    pub(crate) fn to_ntt(&self, coeffs: &[i128], level: usize) -> crate::backend::Buffer {
        let p = &self.ctx.params;
        let n = p.n();
        let limbs = p.limbs_at(level);
        let mut host = vec![0u32; limbs * n];
        for (l, chunk) in host.chunks_mut(n).enumerate() {
            let m = p.ring.moduli[l];
            for (o, &c) in chunk.iter_mut().zip(coeffs) {
                *o = if c.unsigned_abs() < (1u128 << 62) {
                    m.reduce_i64(c as i64)
                } else {
                    m.reduce_i128(c)
                };
            }
        }
        let be = &self.ctx.backend;
        let mut buf = be.upload(&host);
        be.ntt(&mut buf, &p.q_indices(level));
        buf
    }

    /// Decodes a plaintext to complex slot values.
    pub fn decode_complex(&self, pt: &Plaintext) -> Result<Vec<C64>, CkksError> {
        let p = &self.ctx.params;
        let limbs = p.limbs_at(pt.level).min(CRT_LIMBS);
        let be = &self.ctx.backend;
        let mut buf = be.slice_limbs(&pt.poly, 0, limbs);
        be.intt(&mut buf, &(0..limbs).collect::<Vec<_>>());
        let host = be.download(&buf);
        be.status()?;
        Ok(self.decode_coeffs(&host, limbs, pt.scale, pt.slots))
    }

    /// Decodes a plaintext to real slot values (imaginary parts dropped).
    pub fn decode(&self, pt: &Plaintext) -> Result<Vec<f64>, CkksError> {
        Ok(self.decode_complex(pt)?.into_iter().map(|c| c.re).collect())
    }

    /// Coefficient-form residues over the first `limbs` primes -> slots.
    pub(crate) fn decode_coeffs(
        &self,
        host: &[u32],
        limbs: usize,
        scale: f64,
        slots: usize,
    ) -> Vec<C64> {
        let p = &self.ctx.params;
        let n = p.n();
        let moduli = &p.ring.moduli[..limbs];
        let big_b: u128 = moduli.iter().map(|m| m.q as u128).product();
        let punct: Vec<u128> = moduli.iter().map(|m| big_b / m.q as u128).collect();
        let inv_punct: Vec<u32> = moduli
            .iter()
            .zip(&punct)
            .map(|(m, &pb)| m.inv((pb % m.q as u128) as u32).unwrap())
            .collect();
        let lift = |k: usize| -> f64 {
            let mut s: u128 = 0;
            for j in 0..limbs {
                let y = moduli[j].mul(host[j * n + k], inv_punct[j]);
                s += y as u128 * punct[j];
            }
            let x = s % big_b;
            let v = if x > big_b / 2 {
                -((big_b - x) as f64)
            } else {
                x as f64
            };
            v / scale
        };
        let gap = n / (2 * slots);
        let mut v: Vec<C64> = (0..slots)
            .map(|i| C64::new(lift(i * gap), lift(n / 2 + i * gap)))
            .collect();
        self.fft.forward(&mut v);
        v
    }
}

/// Precision in bits of `got` against `want`: log2(1 / mean |error|) over the slots (the measure
/// the project's tests assert).
pub fn precision_bits(got: &[f64], want: &[f64]) -> f64 {
    let n = want.len().min(got.len()).max(1);
    let err = got
        .iter()
        .zip(want)
        .map(|(a, b)| (a - b).abs())
        .sum::<f64>()
        / n as f64;
    -(err.max(f64::MIN_POSITIVE)).log2()
}

/// Minimum precision in bits over the slots: log2(1 / max |error|).
pub fn precision_bits_min(got: &[f64], want: &[f64]) -> f64 {
    let err = got
        .iter()
        .zip(want)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f64::max);
    -(err.max(f64::MIN_POSITIVE)).log2()
}
