//! Encoding of real or complex slot vectors into plaintexts (canonical embedding), full or sparse.
//!
//! `slots` values (a power of two up to N/2) are interpolated by the special FFT and placed at
//! coefficients i*gap (real parts) and N/2 + i*gap (imaginary parts), gap = N/(2 slots), so that
//! rotations by the Galois elements 5^r rotate any slot count.

use std::sync::Arc;

use super::{CkksError, Context, Plaintext};
use crate::math::crt::CrtLift;
use crate::math::fft::{SpecialFft, C64};

pub struct Encoder {
    ctx: Arc<Context>,
    fft: SpecialFft,
}

/// Primes that decoding trusts at first (~100-120 bits: any rescaled ciphertext); it reads one
/// more to check them and more only when a value needs them (`Encoder::decode_poly`).
const DECODE_LIMBS: usize = 4;

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

    /// Scaled, rounded coefficients (integer-valued f64).
    ///
    /// Errors: `OutOfRange` when a coefficient reaches Q_level / 2, the largest magnitude that
    /// decryption reads back (the level's whole modulus, not a word size).
    fn place(&self, v: &[C64], scale: f64, level: usize) -> Result<Vec<f64>, CkksError> {
        let p = &self.ctx.params;
        let n = p.n();
        let gap = n / (2 * v.len());
        let log_half_q = p.log_q_at(level) - 1.0;
        let mut coeffs = vec![0.0; n];
        for (i, x) in v.iter().enumerate() {
            for (idx, c) in [(i * gap, x.re), (n / 2 + i * gap, x.im)] {
                let s = (c * scale).round();
                if !s.is_finite() || s.abs().log2() >= log_half_q {
                    return Err(CkksError::OutOfRange(format!(
                        "|value x scale| = 2^{:.1} reaches Q/2 = 2^{log_half_q:.1} at level {level}: lower the scale or the value, or encode at a higher level",
                        s.abs().log2(),
                    )));
                }
                coeffs[idx] = s;
            }
        }
        Ok(coeffs)
    }

    /// Signed integer coefficients (integer-valued f64, any magnitude) -> NTT-form buffer over the
    /// level's primes.
    pub(crate) fn to_ntt(&self, coeffs: &[f64], level: usize) -> crate::backend::Buffer {
        let p = &self.ctx.params;
        let n = p.n();
        let limbs = p.limbs_at(level);
        let mut host = vec![0u32; limbs * n];
        for (l, chunk) in host.chunks_mut(n).enumerate() {
            let m = p.ring.moduli[l];
            for (o, &c) in chunk.iter_mut().zip(coeffs) {
                *o = m.reduce_f64(c);
            }
        }
        let be = &self.ctx.backend;
        let mut buf = be.upload(&host);
        be.ntt(&mut buf, &p.q_indices(level));
        buf
    }

    /// Decodes a plaintext to complex slot values.
    ///
    /// Errors: a backend fault, or a value whose magnitude f64 cannot hold.
    pub fn decode_complex(&self, pt: &Plaintext) -> Result<Vec<C64>, CkksError> {
        pt.check(&self.ctx.params)?;
        let be = &self.ctx.backend;
        self.decode_poly(pt.level, pt.scale, pt.slots, |limbs| {
            let mut buf = be.slice_limbs(&pt.poly, 0, limbs);
            be.intt(&mut buf, &(0..limbs).collect::<Vec<_>>());
            let host = be.download(&buf);
            be.status()?;
            Ok(host)
        })
    }

    /// Decodes a plaintext to real slot values (imaginary parts dropped).
    pub fn decode(&self, pt: &Plaintext) -> Result<Vec<f64>, CkksError> {
        Ok(self.decode_complex(pt)?.into_iter().map(|c| c.re).collect())
    }

    /// Slot values of a message polynomial over the Q primes of `level`. `residues(k)` gives its
    /// coefficient form over the first k primes ([limb][N], k >= 1).
    ///
    /// Reads `DECODE_LIMBS` + 1 primes and trusts the first `DECODE_LIMBS` when the top Garner
    /// digit over the extra prime is 0 at every coefficient read (`math::crt`); otherwise a value
    /// is larger (a product before rescaling, a big integer times a ciphertext) and it reads twice
    /// as many, up to every prime of the level. So whatever fits Q_level decodes correctly, and a
    /// normal ciphertext costs 5 primes.
    pub(crate) fn decode_poly(
        &self,
        level: usize,
        scale: f64,
        slots: usize,
        mut residues: impl FnMut(usize) -> Result<Vec<u32>, CkksError>,
    ) -> Result<Vec<C64>, CkksError> {
        let p = &self.ctx.params;
        let n = p.n();
        let total = p.limbs_at(level);
        let gap = n / (2 * slots);
        let mut k = (DECODE_LIMBS + 1).min(total);
        loop {
            let host = residues(k)?;
            let lift = CrtLift::new(&p.ring.moduli[..k]);
            let mut digits = vec![0i64; k];
            let mut read = |pos: usize| -> Option<f64> {
                lift.digits(|j| host[j * n + pos], &mut digits);
                (k == total || digits[k - 1] == 0).then(|| lift.value_over(&digits, scale))
            };
            let v: Option<Vec<C64>> = (0..slots)
                .map(|i| Some(C64::new(read(i * gap)?, read(n / 2 + i * gap)?)))
                .collect();
            match v {
                Some(mut v) => {
                    if let Some(bad) = v.iter().find(|z| !z.re.is_finite() || !z.im.is_finite()) {
                        return Err(CkksError::OutOfRange(format!(
                            "a decoded coefficient ({bad:?}) exceeds f64 at scale 2^{:.1}",
                            scale.log2()
                        )));
                    }
                    self.fft.forward(&mut v);
                    return Ok(v);
                }
                None => k = (2 * k).min(total),
            }
        }
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
