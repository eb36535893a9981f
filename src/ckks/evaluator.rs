//! Homomorphic operations. Each op checks levels, scales and slot counts and returns an error on
//! mismatch; scales are tracked exactly (f64 products and quotients of the primes), and two scales
//! are equal when they agree to 1e-9 relative.

use std::sync::{Arc, OnceLock};

use super::keys::{conjugation_element, galois_element, EvaluationKeys, SwitchingKey};
use super::keyswitch::{apply_key, decompose, Decomposed};
use super::scale::{product_scale, same_scale, CONST_BITS_MAX};
use super::{Ciphertext, CkksError, Context, Encoder, Plaintext};
use crate::backend::Buffer;

pub struct Evaluator {
    ctx: Arc<Context>,
    keys: Option<Arc<EvaluationKeys>>,
    /// Encoder for plaintexts made on the server side (linear-transform diagonals).
    encoder: OnceLock<Encoder>,
    /// NTT form of X^(N/2) over every Q prime (multiplication by i in the slots).
    monomial_half: OnceLock<Buffer>,
}

/// A key made for lower levels cannot switch a ciphertext above them.
fn key_serves(k: &SwitchingKey, level: usize, what: &str) -> Result<(), CkksError> {
    if k.level < level {
        return Err(CkksError::MissingKey(format!(
            "the {what} key serves levels up to {}, the ciphertext is at level {level}",
            k.level
        )));
    }
    Ok(())
}

impl Evaluator {
    /// An evaluator with evaluation keys (the server side never holds a secret key).
    pub fn new(ctx: &Arc<Context>, keys: Arc<EvaluationKeys>) -> Result<Self, CkksError> {
        super::keys::check_hash(ctx, &keys.params_hash)?;
        Ok(Evaluator {
            ctx: ctx.clone(),
            keys: Some(keys),
            encoder: OnceLock::new(),
            monomial_half: OnceLock::new(),
        })
    }

    /// An evaluator for key-free operations only (add, plaintext ops, rescale).
    pub fn without_keys(ctx: &Arc<Context>) -> Self {
        Evaluator {
            ctx: ctx.clone(),
            keys: None,
            encoder: OnceLock::new(),
            monomial_half: OnceLock::new(),
        }
    }

    /// The evaluator's encoder (built on first use).
    pub fn encoder(&self) -> &Encoder {
        self.encoder.get_or_init(|| Encoder::new(&self.ctx))
    }

    pub fn context(&self) -> &Arc<Context> {
        &self.ctx
    }

    fn check_ct(&self, a: &Ciphertext) -> Result<(), CkksError> {
        a.check(&self.ctx.params)
    }

    fn check_pair(&self, a: &Ciphertext, b_level: usize, b_slots: usize) -> Result<(), CkksError> {
        self.check_ct(a)?;
        if a.level != b_level {
            return Err(CkksError::LevelMismatch(a.level, b_level));
        }
        if a.slots != b_slots {
            return Err(CkksError::SlotMismatch(a.slots, b_slots));
        }
        Ok(())
    }

    fn q(&self, level: usize) -> Vec<usize> {
        self.ctx.params.q_indices(level)
    }

    /// out = a + b.
    pub fn add(
        &self,
        a: &Ciphertext,
        b: &Ciphertext,
        out: &mut Ciphertext,
    ) -> Result<(), CkksError> {
        *out = self.add_new(a, b)?;
        Ok(())
    }

    pub fn add_new(&self, a: &Ciphertext, b: &Ciphertext) -> Result<Ciphertext, CkksError> {
        self.add_sub(a, b, false)
    }

    /// a += b.
    pub fn add_assign(&self, a: &mut Ciphertext, b: &Ciphertext) -> Result<(), CkksError> {
        self.check_pair(a, b.level, b.slots)?;
        self.check_ct(b)?;
        if !same_scale(a.scale, b.scale) {
            return Err(CkksError::ScaleMismatch(a.scale.log2(), b.scale.log2()));
        }
        let q = self.q(a.level);
        let be = &self.ctx.backend;
        while a.parts.len() < b.parts.len() {
            a.parts.push(be.zeros(q.len()));
        }
        for (x, y) in a.parts.iter_mut().zip(&b.parts) {
            be.add_assign(x, y, &q);
        }
        a.seed = None;
        Ok(())
    }

    pub fn sub(
        &self,
        a: &Ciphertext,
        b: &Ciphertext,
        out: &mut Ciphertext,
    ) -> Result<(), CkksError> {
        *out = self.sub_new(a, b)?;
        Ok(())
    }

    pub fn sub_new(&self, a: &Ciphertext, b: &Ciphertext) -> Result<Ciphertext, CkksError> {
        self.add_sub(a, b, true)
    }

    fn add_sub(&self, a: &Ciphertext, b: &Ciphertext, sub: bool) -> Result<Ciphertext, CkksError> {
        self.check_pair(a, b.level, b.slots)?;
        self.check_ct(b)?;
        if !same_scale(a.scale, b.scale) {
            return Err(CkksError::ScaleMismatch(a.scale.log2(), b.scale.log2()));
        }
        let q = self.q(a.level);
        let be = &self.ctx.backend;
        let (long, short, flip) = if a.parts.len() >= b.parts.len() {
            (a, b, false)
        } else {
            (b, a, true)
        };
        let mut parts = long.parts.clone();
        for (x, y) in parts.iter_mut().zip(&short.parts) {
            if sub && flip {
                // out = a - b where b is the longer one: negate b's copy, then add a.
                be.neg_assign(x, &q);
                be.add_assign(x, y, &q);
            } else if sub {
                be.sub_assign(x, y, &q);
            } else {
                be.add_assign(x, y, &q);
            }
        }
        if sub && flip {
            for x in parts.iter_mut().skip(short.parts.len()) {
                be.neg_assign(x, &q);
            }
        }
        Ok(Ciphertext {
            parts,
            level: a.level,
            scale: a.scale,
            slots: a.slots,
            seed: None,
        })
    }

    /// -a.
    pub fn neg_new(&self, a: &Ciphertext) -> Result<Ciphertext, CkksError> {
        self.check_ct(a)?;
        let q = self.q(a.level);
        let mut out = a.clone();
        for x in out.parts.iter_mut() {
            self.ctx.backend.neg_assign(x, &q);
        }
        out.seed = None;
        Ok(out)
    }

    /// a + pt (same level and scale).
    pub fn add_plain_new(&self, a: &Ciphertext, pt: &Plaintext) -> Result<Ciphertext, CkksError> {
        pt.check(&self.ctx.params)?;
        self.check_pair(a, pt.level, pt.slots)?;
        if !same_scale(a.scale, pt.scale) {
            return Err(CkksError::ScaleMismatch(a.scale.log2(), pt.scale.log2()));
        }
        let mut out = a.clone();
        self.ctx
            .backend
            .add_assign(&mut out.parts[0], &pt.poly, &self.q(a.level));
        out.seed = None;
        Ok(out)
    }

    /// a * pt; the scale becomes a.scale * pt.scale (rescale afterwards).
    pub fn mul_plain_new(&self, a: &Ciphertext, pt: &Plaintext) -> Result<Ciphertext, CkksError> {
        pt.check(&self.ctx.params)?;
        self.check_pair(a, pt.level, pt.slots)?;
        let scale = self.product_scale(a.level, a.scale, pt.scale)?;
        let q = self.q(a.level);
        let mut out = a.clone();
        for x in out.parts.iter_mut() {
            self.ctx.backend.mul_assign(x, &pt.poly, &q);
        }
        out.scale = scale;
        out.seed = None;
        Ok(out)
    }

    /// a + c for a real constant c (added to every slot).
    pub fn add_const_new(&self, a: &Ciphertext, c: f64) -> Result<Ciphertext, CkksError> {
        self.check_ct(a)?;
        let v = (c * a.scale).round();
        let p = &self.ctx.params;
        let log_half_q = p.log_q_at(a.level) - 1.0;
        if !v.is_finite() || v.abs().log2() >= log_half_q {
            return Err(CkksError::OutOfRange(format!(
                "constant {c} at scale 2^{:.1} reaches Q/2 = 2^{log_half_q:.1} at level {}",
                a.scale.log2(),
                a.level
            )));
        }
        let q = self.q(a.level);
        let scal: Vec<u32> = q.iter().map(|&i| p.ring.moduli[i].reduce_f64(v)).collect();
        let mut out = a.clone();
        self.ctx
            .backend
            .add_scalar_assign(&mut out.parts[0], &scal, &q);
        out.seed = None;
        Ok(out)
    }

    /// a * c for a real constant c, encoded at the scale of the level's rescaling group, so that
    /// after `rescale` the scale is back to a.scale.
    pub fn mul_const_new(&self, a: &Ciphertext, c: f64) -> Result<Ciphertext, CkksError> {
        self.check_ct(a)?;
        let p = &self.ctx.params;
        let cs = if a.level > 0 {
            p.rescale_factor(a.level)
        } else {
            1.0
        };
        let v = (c * cs).round();
        if !v.is_finite() || v.abs() >= 2f64.powi(120) {
            return Err(CkksError::OutOfRange(format!("constant {c}")));
        }
        let scale = self.product_scale(a.level, a.scale, cs)?;
        self.mul_int_scaled(a, v as i128, scale)
    }

    /// a * k for an integer k (scale unchanged).
    pub fn mul_int_new(&self, a: &Ciphertext, k: i64) -> Result<Ciphertext, CkksError> {
        self.check_ct(a)?;
        self.mul_int_scaled(a, k as i128, a.scale)
    }

    fn mul_int_scaled(&self, a: &Ciphertext, k: i128, scale: f64) -> Result<Ciphertext, CkksError> {
        let p = &self.ctx.params;
        let q = self.q(a.level);
        let scal: Vec<u32> = q.iter().map(|&i| p.ring.moduli[i].reduce_i128(k)).collect();
        let mut out = a.clone();
        for x in out.parts.iter_mut() {
            self.ctx.backend.mul_scalar_assign(x, &scal, &q);
        }
        out.scale = scale;
        out.seed = None;
        Ok(out)
    }

    fn product_scale(&self, level: usize, s1: f64, s2: f64) -> Result<f64, CkksError> {
        product_scale(&self.ctx.params, level, s1, s2)
    }

    /// a * c for a real constant c encoded at `const_scale`: the scale becomes
    /// a.scale * const_scale (no rescale). Circuits pick `const_scale` so that a later rescale
    /// lands on the scale they want.
    pub fn mul_const_scaled_new(
        &self,
        a: &Ciphertext,
        c: f64,
        const_scale: f64,
    ) -> Result<Ciphertext, CkksError> {
        self.check_ct(a)?;
        let v = (c * const_scale).round();
        if !v.is_finite() || !const_scale.is_finite() || v.abs() >= 2f64.powi(CONST_BITS_MAX) {
            return Err(CkksError::OutOfRange(format!(
                "constant {c} at scale 2^{:.1}",
                const_scale.log2()
            )));
        }
        let scale = self.product_scale(a.level, a.scale, const_scale)?;
        self.mul_int_scaled(a, v as i128, scale)
    }

    /// a * i (every slot times the imaginary unit): multiplication by X^(N/2), exact and free of
    /// levels.
    pub fn mul_i_new(&self, a: &Ciphertext) -> Result<Ciphertext, CkksError> {
        self.check_ct(a)?;
        let p = &self.ctx.params;
        let be = &self.ctx.backend;
        let mono = self.monomial_half.get_or_init(|| {
            let mut c = vec![0.0; p.n()];
            c[p.n() / 2] = 1.0;
            self.encoder().to_ntt(&c, p.max_level())
        });
        let q = self.q(a.level);
        let m = be.slice_limbs(mono, 0, q.len());
        let mut out = a.clone();
        for x in out.parts.iter_mut() {
            be.mul_assign(x, &m, &q);
        }
        out.seed = None;
        Ok(out)
    }

    /// Switches a degree-1 ciphertext with any switching key (same level, same scale).
    fn switch_key(&self, a: &Ciphertext, key: &SwitchingKey) -> Result<Ciphertext, CkksError> {
        key_serves(key, a.level, "encapsulation")?;
        let dec = decompose(&self.ctx, &a.parts[1], a.level);
        Ok(self.finish_switch(a, a.parts[0].clone(), &dec, key, None))
    }

    /// The end of every key switch of a c1: (c0 + ks0, ks1), with a's level, scale and slots.
    /// `galois` permutes the decomposition first (hoisted rotations).
    fn finish_switch(
        &self,
        a: &Ciphertext,
        mut c0: Buffer,
        dec: &Decomposed,
        key: &SwitchingKey,
        galois: Option<usize>,
    ) -> Ciphertext {
        let (k0, k1) = apply_key(&self.ctx, dec, key, galois);
        self.ctx.backend.add_assign(&mut c0, &k0, &self.q(a.level));
        Ciphertext {
            parts: vec![c0, k1],
            level: a.level,
            scale: a.scale,
            slots: a.slots,
            seed: None,
        }
    }

    /// ModRaise (bootstrapping): the ciphertext at level 0, its coefficients lifted centered from
    /// Q_0 to Q_level. The message becomes m + Q_0 I for a small integer polynomial I (|I| about
    /// sqrt(h)/2 for a secret of Hamming weight h). With encapsulation keys the raise runs under
    /// the sparse ephemeral secret: switch to it at level 0, raise, switch back at `level`.
    pub fn mod_raise_new(&self, a: &Ciphertext, level: usize) -> Result<Ciphertext, CkksError> {
        self.check_ct(a)?;
        if a.degree() != 1 {
            return Err(CkksError::Invalid(
                "relinearize before bootstrapping".into(),
            ));
        }
        let p = &self.ctx.params;
        if level > p.max_level() {
            return Err(CkksError::Invalid(format!(
                "raise to level {level} above the top level {}",
                p.max_level()
            )));
        }
        let mut ct = self.drop_to_level_new(a, 0)?;
        let enc = self.keys.as_ref().and_then(|k| k.encapsulation.as_ref());
        if let Some(e) = enc {
            ct = self.switch_key(&ct, &e.to_sparse)?;
        }
        let be = &self.ctx.backend;
        let q0 = self.q(0);
        let qt = self.q(level);
        // Centered lift: lift(c + floor(Q0/2)) - floor(Q0/2) per coefficient.
        let big_q0: u128 = p.q_groups[0].iter().map(|&q| q as u128).product();
        let half = big_q0 / 2;
        let half_at = |idx: &[usize]| -> Vec<u32> {
            idx.iter()
                .map(|&i| (half % p.ring.moduli[i].q as u128) as u32)
                .collect()
        };
        let mut half_poly = be.upload(
            &qt.iter()
                .flat_map(|&i| {
                    std::iter::repeat_n((half % p.ring.moduli[i].q as u128) as u32, p.n())
                })
                .collect::<Vec<u32>>(),
        );
        be.ntt(&mut half_poly, &qt);
        let parts = ct
            .parts
            .iter()
            .map(|x| {
                let mut c = x.clone();
                be.intt(&mut c, &q0);
                be.add_scalar_assign(&mut c, &half_at(&q0), &q0);
                let mut c_ntt = c.clone();
                be.ntt(&mut c_ntt, &q0);
                let mut lifted = be.mod_up(&c, &c_ntt, &q0, (0, q0.len()), &qt);
                be.sub_assign(&mut lifted, &half_poly, &qt);
                lifted
            })
            .collect();
        let raised = Ciphertext {
            parts,
            level,
            scale: ct.scale,
            slots: ct.slots,
            seed: None,
        };
        match enc {
            Some(e) => self.switch_key(&raised, &e.to_dense),
            None => Ok(raised),
        }
    }

    fn keys(&self) -> Result<&EvaluationKeys, CkksError> {
        self.keys
            .as_deref()
            .ok_or_else(|| CkksError::MissingKey("this evaluator has no evaluation keys".into()))
    }

    /// Tensor product without relinearization (degree 2).
    pub fn mul_new(&self, a: &Ciphertext, b: &Ciphertext) -> Result<Ciphertext, CkksError> {
        self.check_pair(a, b.level, b.slots)?;
        self.check_ct(b)?;
        if a.degree() != 1 || b.degree() != 1 {
            return Err(CkksError::Invalid(
                "multiply degree-1 ciphertexts (relinearize first)".into(),
            ));
        }
        let scale = self.product_scale(a.level, a.scale, b.scale)?;
        let q = self.q(a.level);
        let be = &self.ctx.backend;
        let d0 = be.mul(&a.parts[0], &b.parts[0], &q);
        let mut d1 = be.mul(&a.parts[0], &b.parts[1], &q);
        be.mul_add_assign(&mut d1, &a.parts[1], &b.parts[0], &q);
        let d2 = be.mul(&a.parts[1], &b.parts[1], &q);
        Ok(Ciphertext {
            parts: vec![d0, d1, d2],
            level: a.level,
            scale,
            slots: a.slots,
            seed: None,
        })
    }

    /// Degree 2 -> degree 1 with the relinearization key.
    pub fn relinearize_new(&self, a: &Ciphertext) -> Result<Ciphertext, CkksError> {
        self.check_ct(a)?;
        if a.degree() == 1 {
            return Ok(a.clone());
        }
        let rlk = self
            .keys()?
            .relin
            .as_ref()
            .ok_or_else(|| CkksError::MissingKey("relinearization key".into()))?;
        key_serves(&rlk.0, a.level, "relinearization")?;
        let dec = decompose(&self.ctx, &a.parts[2], a.level);
        let (k0, k1) = apply_key(&self.ctx, &dec, &rlk.0, None);
        let q = self.q(a.level);
        let be = &self.ctx.backend;
        let mut c0 = a.parts[0].clone();
        let mut c1 = a.parts[1].clone();
        be.add_assign(&mut c0, &k0, &q);
        be.add_assign(&mut c1, &k1, &q);
        Ok(Ciphertext {
            parts: vec![c0, c1],
            level: a.level,
            scale: a.scale,
            slots: a.slots,
            seed: None,
        })
    }

    /// a * b with relinearization.
    pub fn mul_relin_new(&self, a: &Ciphertext, b: &Ciphertext) -> Result<Ciphertext, CkksError> {
        self.keys()?
            .relin
            .as_ref()
            .ok_or_else(|| CkksError::MissingKey("relinearization key".into()))?;
        let t = self.mul_new(a, b)?;
        self.relinearize_new(&t)
    }

    pub fn mul_relin(
        &self,
        a: &Ciphertext,
        b: &Ciphertext,
        out: &mut Ciphertext,
    ) -> Result<(), CkksError> {
        *out = self.mul_relin_new(a, b)?;
        Ok(())
    }

    /// Divides by the level's prime group: level - 1, scale / Q_level.
    pub fn rescale_new(&self, a: &Ciphertext) -> Result<Ciphertext, CkksError> {
        self.check_ct(a)?;
        if a.level == 0 {
            return Err(CkksError::LevelsExhausted(
                "cannot rescale at level 0".into(),
            ));
        }
        let p = &self.ctx.params;
        let q = self.q(a.level);
        let g = p.q_groups[a.level].len();
        let parts = a
            .parts
            .iter()
            .map(|x| self.ctx.backend.divide_round_last(x, &q, g))
            .collect();
        Ok(Ciphertext {
            parts,
            level: a.level - 1,
            scale: a.scale / p.rescale_factor(a.level),
            slots: a.slots,
            seed: None,
        })
    }

    pub fn rescale(&self, a: &Ciphertext, out: &mut Ciphertext) -> Result<(), CkksError> {
        *out = self.rescale_new(a)?;
        Ok(())
    }

    /// Drops to `level` without changing the scale.
    pub fn drop_to_level_new(&self, a: &Ciphertext, level: usize) -> Result<Ciphertext, CkksError> {
        self.check_ct(a)?;
        if level > a.level {
            return Err(CkksError::Invalid(format!(
                "cannot raise level {} to {level}",
                a.level
            )));
        }
        let l = self.ctx.params.limbs_at(level);
        let parts = a
            .parts
            .iter()
            .map(|x| self.ctx.backend.slice_limbs(x, 0, l))
            .collect();
        Ok(Ciphertext {
            parts,
            level,
            scale: a.scale,
            slots: a.slots,
            seed: None,
        })
    }

    fn galois_key(&self, g: usize, what: &str, level: usize) -> Result<&SwitchingKey, CkksError> {
        let k = self
            .keys()?
            .galois
            .keys
            .get(&g)
            .ok_or_else(|| CkksError::MissingKey(format!("Galois key for {what}")))?;
        key_serves(k, level, what)?;
        Ok(k)
    }

    /// Applies X -> X^g and switches back to s.
    fn automorphism(&self, a: &Ciphertext, g: usize, what: &str) -> Result<Ciphertext, CkksError> {
        self.check_ct(a)?;
        if a.degree() != 1 {
            return Err(CkksError::Invalid("relinearize before rotating".into()));
        }
        let key = self.galois_key(g, what, a.level)?;
        let q = self.q(a.level);
        let be = &self.ctx.backend;
        let c1 = be.automorphism(&a.parts[1], g, &q);
        let dec = decompose(&self.ctx, &c1, a.level);
        let c0 = be.automorphism(&a.parts[0], g, &q);
        Ok(self.finish_switch(a, c0, &dec, key, None))
    }

    /// Left rotation of the slots by r (negative: right).
    pub fn rotate_new(&self, a: &Ciphertext, r: i64) -> Result<Ciphertext, CkksError> {
        self.check_ct(a)?;
        let g = galois_element(r, self.ctx.params.n());
        if g == 1 {
            return Ok(a.clone());
        }
        self.automorphism(a, g, &format!("rotation by {r}"))
    }

    pub fn rotate(&self, a: &Ciphertext, r: i64, out: &mut Ciphertext) -> Result<(), CkksError> {
        *out = self.rotate_new(a, r)?;
        Ok(())
    }

    /// Complex conjugation of every slot.
    pub fn conjugate_new(&self, a: &Ciphertext) -> Result<Ciphertext, CkksError> {
        self.automorphism(a, conjugation_element(self.ctx.params.n()), "conjugation")
    }

    /// Several rotations of one ciphertext sharing one decomposition of c1 (hoisting).
    pub fn rotate_hoisted_new(
        &self,
        a: &Ciphertext,
        rotations: &[i64],
    ) -> Result<Vec<Ciphertext>, CkksError> {
        self.check_ct(a)?;
        if a.degree() != 1 {
            return Err(CkksError::Invalid("relinearize before rotating".into()));
        }
        let n = self.ctx.params.n();
        let q = self.q(a.level);
        let keys: Vec<(usize, Option<&SwitchingKey>)> = rotations
            .iter()
            .map(|&r| {
                let g = galois_element(r, n);
                if g == 1 {
                    Ok((g, None))
                } else {
                    self.galois_key(g, &format!("rotation by {r}"), a.level)
                        .map(|k| (g, Some(k)))
                }
            })
            .collect::<Result<_, _>>()?;
        let dec = decompose(&self.ctx, &a.parts[1], a.level);
        let be = &self.ctx.backend;
        Ok(keys
            .into_iter()
            .map(|(g, key)| match key {
                None => a.clone(),
                Some(key) => {
                    let c0 = be.automorphism(&a.parts[0], g, &q);
                    self.finish_switch(a, c0, &dec, key, Some(g))
                }
            })
            .collect())
    }

    /// Slot i of the result holds the sum of slots i .. i+n-1 (n a power of two; keys for rotations
    /// by 1, 2, 4, ..., n/2). With n = slots every slot holds the total.
    pub fn rotate_and_sum_new(&self, a: &Ciphertext, n: usize) -> Result<Ciphertext, CkksError> {
        self.check_ct(a)?;
        if !n.is_power_of_two() || n > a.slots {
            return Err(CkksError::Invalid(format!(
                "rotate-and-sum over {n} slots: need a power of two <= {}",
                a.slots
            )));
        }
        let mut acc = a.clone();
        let mut step = 1;
        while step < n {
            let r = self.rotate_new(&acc, step as i64)?;
            self.add_assign(&mut acc, &r)?;
            step *= 2;
        }
        Ok(acc)
    }

    /// Rotation steps that `rotate_and_sum_new(_, n)` needs keys for.
    pub fn rotate_and_sum_steps(n: usize) -> Vec<i64> {
        (0..n.trailing_zeros()).map(|i| 1i64 << i).collect()
    }
}
