//! Polynomial evaluation in the Chebyshev basis, baby-step giant-step (Paterson-Stockmeyer style),
//! with scale management so that the result lands exactly on the scale asked for.
//!
//! A polynomial of degree d costs ceil(log2(d + 1)) levels when its coefficients allow it (degrees
//! 2^k - 2 and below always do here), one more otherwise, and about 2 sqrt(d) + log2(d)
//! ciphertext multiplications. Scales: the recursion asks each node for its result at a given
//! (level, scale); leaves multiply the basis by constants encoded at the ratio of the scales
//! (about one prime group, so constants keep ~60 bits), and quotients are evaluated at the scale
//! that makes `q * T_m` rescale onto the target (Lattigo's `polynomial_evaluator`).

use std::collections::BTreeMap;
use std::f64::consts::PI;

use super::circuit::Circuit;
use super::simulator::{SimCiphertext, Simulator};
use super::CkksError;

/// p(x) = sum_k coeffs[k] T_k(u), u = (2x - a - b) / (b - a), for x in [a, b].
#[derive(Clone, Debug, PartialEq)]
pub struct Chebyshev {
    pub coeffs: Vec<f64>,
    pub a: f64,
    pub b: f64,
}

impl Chebyshev {
    /// Interpolates f at the degree + 1 Chebyshev nodes of [a, b] (near-minimax).
    pub fn interpolate(f: impl Fn(f64) -> f64, a: f64, b: f64, degree: usize) -> Self {
        let n = degree + 1;
        let nodes: Vec<f64> = (0..n)
            .map(|j| (PI * (j as f64 + 0.5) / n as f64).cos())
            .collect();
        let vals: Vec<f64> = nodes
            .iter()
            .map(|&u| f(0.5 * (b - a) * u + 0.5 * (a + b)))
            .collect();
        let coeffs = (0..n)
            .map(|k| {
                let s: f64 = (0..n)
                    .map(|j| vals[j] * (k as f64 * PI * (j as f64 + 0.5) / n as f64).cos())
                    .sum();
                let c = 2.0 * s / n as f64;
                if k == 0 {
                    c / 2.0
                } else {
                    c
                }
            })
            .collect();
        Chebyshev { coeffs, a, b }
    }

    /// Checks the polynomial before a homomorphic evaluation.
    /// Errors (`Invalid`): no coefficients, a non-finite coefficient or end, or a >= b.
    pub fn validate(&self) -> Result<(), CkksError> {
        if self.coeffs.is_empty() {
            return Err(CkksError::Invalid(
                "a Chebyshev series with no coefficients".into(),
            ));
        }
        if let Some(c) = self.coeffs.iter().find(|c| !c.is_finite()) {
            return Err(CkksError::Invalid(format!("Chebyshev coefficient {c}")));
        }
        let (a, b) = (self.a, self.b);
        if !(a.is_finite() && b.is_finite() && a < b) {
            return Err(CkksError::Invalid(format!(
                "Chebyshev interval [{a}, {b}]: need finite a < b"
            )));
        }
        Ok(())
    }

    /// Degree (index of the last nonzero coefficient).
    pub fn degree(&self) -> usize {
        self.coeffs.iter().rposition(|&c| c != 0.0).unwrap_or(0)
    }

    /// Whether [a, b] is [-1, 1] (no change of variable needed).
    fn is_unit(&self) -> bool {
        self.a == -1.0 && self.b == 1.0
    }

    /// Evaluates at x (Clenshaw): the f64 twin of the homomorphic evaluation.
    pub fn eval(&self, x: f64) -> f64 {
        let u = (2.0 * x - self.a - self.b) / (self.b - self.a);
        clenshaw(&self.coeffs, u)
    }

    /// Largest |p - f| over `samples` evenly spaced points of [a, b].
    pub fn max_error(&self, f: impl Fn(f64) -> f64, samples: usize) -> f64 {
        (0..samples)
            .map(|i| {
                let x = self.a + (self.b - self.a) * i as f64 / (samples - 1).max(1) as f64;
                (self.eval(x) - f(x)).abs()
            })
            .fold(0.0, f64::max)
    }

    /// Levels a homomorphic evaluation consumes (with the change of variable when [a, b] is not
    /// [-1, 1]), as measured on the simulator. Errors: as `validate`.
    pub fn depth(&self, params: &std::sync::Arc<super::Parameters>) -> Result<usize, CkksError> {
        let sim = Simulator::new(params);
        let top = params.max_level();
        let x = sim.fresh(top, 1);
        let y = evaluate(&sim, &x, self, params.default_scales[top])?;
        Ok(top - y.level)
    }
}

fn clenshaw(c: &[f64], u: f64) -> f64 {
    let (mut b1, mut b2) = (0.0, 0.0);
    for &ck in c.iter().skip(1).rev() {
        let b0 = 2.0 * u * b1 - b2 + ck;
        b2 = b1;
        b1 = b0;
    }
    u * b1 - b2 + c.first().copied().unwrap_or(0.0)
}

/// Evaluates `poly` on a ciphertext of values in [poly.a, poly.b]; the result has scale
/// `target_scale` exactly, at the lowest level the degree needs (checked on the simulator first,
/// so a failing plan costs no ciphertext work). Errors: `poly.validate()`, a target scale that
/// is not finite and positive, too few levels.
pub fn evaluate<C: Circuit>(
    c: &C,
    x: &C::Ct,
    poly: &Chebyshev,
    target_scale: f64,
) -> Result<C::Ct, CkksError> {
    poly.validate()?;
    if !(target_scale.is_finite() && target_scale > 0.0) {
        return Err(CkksError::Invalid(format!("target scale {target_scale}")));
    }
    let params = c.params().clone();
    let sim = Simulator::new(&params);
    let meta = SimCiphertext {
        level: c.level(x),
        scale: c.scale(x),
        slots: c.slots(x),
    };
    // Try the minimal depth with the largest baby step that fits it (fewest multiplications),
    // then smaller baby steps (shorter leaves need fewer levels), then one more level.
    let d = poly.degree().max(1);
    let min_depth = (usize::BITS - d.leading_zeros()) as usize;
    let mut last_err = None;
    for extra in 0..2 {
        for log_baby in (1..=((min_depth + extra) / 2).max(1)).rev() {
            let plan = Plan { extra, log_baby };
            match plan.run(&sim, &meta, poly, target_scale) {
                Ok(_) => return plan.run(c, x, poly, target_scale),
                Err(e) => last_err = Some(e),
            }
        }
    }
    Err(last_err.expect("at least one plan was tried"))
}

struct Plan {
    /// Levels beyond ceil(log2(d + 1)).
    extra: usize,
    /// log2 of the baby-step count.
    log_baby: usize,
}

/// The Chebyshev power basis T_j(u), computed on demand at depth ceil(log2 j).
struct Basis<C: Circuit> {
    t: BTreeMap<usize, C::Ct>,
}

impl<C: Circuit> Basis<C> {
    fn get(&mut self, c: &C, j: usize) -> Result<C::Ct, CkksError> {
        if let Some(t) = self.t.get(&j) {
            return Ok(t.clone());
        }
        // j = a + b with a the largest power of two below j: T_j = 2 T_a T_b - T_{a-b}.
        let a = if j.is_power_of_two() {
            j / 2
        } else {
            1 << (usize::BITS - 1 - j.leading_zeros())
        };
        let b = j - a;
        let ta = self.get(c, a)?;
        let tb = self.get(c, b)?;
        let level = c.level(&ta).min(c.level(&tb));
        let ta = c.drop_to_level(&ta, level)?;
        let tb = c.drop_to_level(&tb, level)?;
        let prod = c.mul_relin(&ta, &tb)?;
        let twice = c.mul_int(&prod, 2)?;
        let res = if a == b {
            c.add_const(&twice, -1.0)?
        } else {
            let tdiff = self.get(c, a - b)?;
            let tdiff = c.drop_to_level(&tdiff, level)?;
            let ratio = c.scale(&prod) / c.scale(&tdiff);
            let tdiff = c.mul_const(&tdiff, 1.0, ratio)?;
            c.sub(&twice, &tdiff)?
        };
        let t = c.rescale(&res)?;
        self.t.insert(j, t.clone());
        Ok(t)
    }
}

impl Plan {
    fn run<C: Circuit>(
        &self,
        c: &C,
        x: &C::Ct,
        poly: &Chebyshev,
        target_scale: f64,
    ) -> Result<C::Ct, CkksError> {
        // Change of variable to u in [-1, 1] (one level) unless the interval is already [-1, 1].
        let u = if poly.is_unit() {
            x.clone()
        } else {
            let alpha = 2.0 / (poly.b - poly.a);
            let beta = -(poly.a + poly.b) / (poly.b - poly.a);
            let level = c.level(x);
            if level == 0 {
                return Err(CkksError::LevelsExhausted(
                    "polynomial evaluation needs levels; bootstrap first".into(),
                ));
            }
            let q = c.params().rescale_factor(level);
            let y = c.rescale(&c.mul_const(x, alpha, q)?)?;
            c.add_const(&y, beta)?
        };
        let d = poly.degree().max(1);
        let depth = (usize::BITS - d.leading_zeros()) as usize + self.extra;
        let top = c.level(&u);
        if depth > top {
            return Err(CkksError::LevelsExhausted(format!(
                "a degree-{d} polynomial needs {depth} levels, the input has {top}"
            )));
        }
        let log_baby = self.log_baby;
        let mut basis = Basis::<C> {
            t: BTreeMap::from([(1, u)]),
        };
        let mut coeffs = poly.coeffs.clone();
        coeffs.truncate(d + 1);
        let mut rec = Recursion {
            c,
            basis: &mut basis,
            baby: 1 << log_baby,
        };
        rec.eval_rescaled(&coeffs, top - depth, target_scale)
    }
}

struct Recursion<'a, C: Circuit> {
    c: &'a C,
    basis: &'a mut Basis<C>,
    baby: usize,
}

impl<C: Circuit> Recursion<'_, C> {
    /// The polynomial at (level, scale), rescaled: evaluated unrescaled one level up, then
    /// rescaled onto `scale`.
    fn eval_rescaled(
        &mut self,
        coeffs: &[f64],
        level: usize,
        scale: f64,
    ) -> Result<C::Ct, CkksError> {
        let q = self.c.params().rescale_factor(level + 1);
        let r = self.eval_unrescaled(coeffs, level + 1, scale * q)?;
        self.c.rescale(&r)
    }

    /// The polynomial at (level, scale) before any rescale: leaves are sums of constant
    /// multiples of the basis, larger polynomials split as q T_m + r.
    fn eval_unrescaled(
        &mut self,
        coeffs: &[f64],
        level: usize,
        scale: f64,
    ) -> Result<C::Ct, CkksError> {
        let d = coeffs.iter().rposition(|&x| x != 0.0).unwrap_or(0);
        if d < self.baby {
            return self.leaf(&coeffs[..=d], level, scale);
        }
        // Smallest power of two m >= baby with d < 2m.
        let mut m = self.baby;
        while 2 * m <= d {
            m *= 2;
        }
        let (q, r) = divide(&coeffs[..=d], m);
        let tm = self.basis.get(self.c, m)?;
        let tm = self.c.drop_to_level(&tm, level)?;
        let qs = scale / self.c.scale(&tm);
        let qct = self.eval_rescaled(&q, level, qs)?;
        let prod = self.c.mul_relin(&qct, &tm)?;
        // mul_relin's scale is qs * scale(tm) = scale up to rounding; pin it exactly.
        let prod = self.c.with_scale(&prod, scale);
        if r.iter().all(|&x| x == 0.0) {
            return Ok(prod);
        }
        let rct = self.eval_unrescaled(&r, level, scale)?;
        self.c.add(&prod, &rct)
    }

    fn leaf(&mut self, coeffs: &[f64], level: usize, scale: f64) -> Result<C::Ct, CkksError> {
        let mut acc: Option<C::Ct> = None;
        for (j, &cj) in coeffs.iter().enumerate().skip(1) {
            if cj == 0.0 {
                continue;
            }
            let t = self.basis.get(self.c, j)?;
            let t = self.c.drop_to_level(&t, level)?;
            let term = self.c.mul_const(&t, cj, scale / self.c.scale(&t))?;
            let term = self.c.with_scale(&term, scale);
            acc = Some(match acc {
                None => term,
                Some(a) => self.c.add(&a, &term)?,
            });
        }
        let acc = match acc {
            Some(a) => a,
            None => {
                // A constant: zero times T_1 carries it.
                let t = self.basis.get(self.c, 1)?;
                let t = self.c.drop_to_level(&t, level)?;
                let z = self.c.mul_const(&t, 0.0, scale / self.c.scale(&t))?;
                self.c.with_scale(&z, scale)
            }
        };
        match coeffs.first() {
            Some(&c0) if c0 != 0.0 => self.c.add_const(&acc, c0),
            _ => Ok(acc),
        }
    }
}

/// Chebyshev division by T_m (deg p < 2m): p = q T_m + r with deg q, deg r < m, from
/// T_m T_j = (T_{m+j} + T_{m-j}) / 2.
fn divide(p: &[f64], m: usize) -> (Vec<f64>, Vec<f64>) {
    let d = p.len() - 1;
    let mut q = vec![0.0; d - m + 1];
    q[0] = p[m];
    for j in 1..=d - m {
        q[j] = 2.0 * p[m + j];
    }
    let mut r = p[..m].to_vec();
    for j in 1..=d - m {
        r[m - j] -= q[j] / 2.0;
    }
    (q, r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn division_reconstructs_the_polynomial() {
        let p: Vec<f64> = (0..=13).map(|k| ((k * 7 % 5) as f64) - 2.0).collect();
        let (q, r) = divide(&p, 8);
        for &u in &[-0.9, -0.3, 0.1, 0.77] {
            let tm = (8.0 * f64::acos(u)).cos();
            let got = clenshaw(&q, u) * tm + clenshaw(&r, u);
            assert!((got - clenshaw(&p, u)).abs() < 1e-12);
        }
    }

    #[test]
    fn interpolation_converges_for_smooth_functions() {
        let f = |x: f64| (3.0 * x).sin() + x * x;
        let p = Chebyshev::interpolate(f, -2.0, 3.0, 40);
        assert!(p.max_error(f, 1000) < 1e-12);
        assert!((clenshaw(&[0.0, 0.0, 1.0], 0.5) - (-0.5)).abs() < 1e-15);
    }
}
