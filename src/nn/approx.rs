//! Every polynomial the encrypted layers evaluate: coefficients, degree, valid interval and what
//! happens outside it, in one place (DESIGN D7). Each approximation has an f64 twin that runs the
//! *same* polynomial and iterations (so encrypted results are compared with what CKKS should have
//! computed) and the exact function (so the approximation itself is measured).
//!
//! | approximation | interval (default) | how | levels (default) |
//! | --- | --- | --- | --- |
//! | [`gelu_erf`], [`gelu_tanh`] | [-16, 16] | one Chebyshev polynomial, degree 126 (max error 1e-13 erf, 2e-9 tanh) | 8 |
//! | [`Exp`] (softmax) | [-64, 0] | exp(x / 32) by a degree-7 polynomial, squared 5 times (max error 2.6e-6) | 1 + 3 + 5 |
//! | [`Inverse`] (softmax sum) | [a, b], from the softmax options | relative-minimax guess, Goldschmidt (`auto`: shallowest for 2^-24) | 1 + guess + 1 + iterations + 1 |
//! | [`InvSqrt`] (LayerNorm) | [0.5, 2500] | relative least-squares guess of degree 62, 4 Newton steps (7e-15 relative) | 1 + 6 + 2 x 4 |
//! | [`Sign`] (argmax) | [-1, 1] outside (-gap, gap) | composite odd degree-7 polynomials (g3, f3) | 3 per stage |
//!
//! Under encryption nothing can check the interval: an input outside it gives whatever the
//! polynomial gives there, which grows like x^degree and is garbage (see each type). The twins
//! return `CkksError::OutOfRange` instead, so plaintext runs catch it.
//!
//! Every approximation returns its result on the default scale chain (`nn::chain`).

use std::f64::consts::PI;

use super::chain::{eval_poly, exhausted, mul, poly_depth, to_level};
use crate::ckks::{Chebyshev, Circuit, CkksError};

fn check_bits(name: &str, bits: f64) -> Result<(), CkksError> {
    if !(bits > 0.0 && bits <= 52.0) {
        return Err(bad(format!("{name}: {bits} bits (need (0, 52])")));
    }
    Ok(())
}

fn check_in(name: &str, x: f64, a: f64, b: f64) -> Result<(), CkksError> {
    let tol = 1e-9 * (b - a).abs().max(1.0);
    if x.is_finite() && x >= a - tol && x <= b + tol {
        Ok(())
    } else {
        Err(CkksError::OutOfRange(format!(
            "{name}: input {x} outside its interval [{a}, {b}]"
        )))
    }
}

fn bad(m: String) -> CkksError {
    CkksError::Invalid(m)
}

/// The largest degree the constructors interpolate (interpolation is quadratic in it).
pub const MAX_DEGREE: usize = 2047;

/// The most Newton or Goldschmidt iterations an approximation may ask for.
pub const MAX_ITERATIONS: usize = 32;

fn check_degree(name: &str, degree: usize) -> Result<(), CkksError> {
    if degree == 0 || degree > MAX_DEGREE {
        return Err(bad(format!(
            "{name}: degree {degree} outside 1..={MAX_DEGREE}"
        )));
    }
    Ok(())
}

/// 0 < a < b, both finite, and at most `MAX_ITERATIONS` iterations (Inverse, InvSqrt).
fn check_positive(name: &str, a: f64, b: f64, iterations: usize) -> Result<(), CkksError> {
    if !(a.is_finite() && b.is_finite() && 0.0 < a && a < b) || iterations > MAX_ITERATIONS {
        return Err(bad(format!(
            "{name}: bad interval [{a}, {b}] (need 0 < a < b) or {iterations} iterations (at \
             most {MAX_ITERATIONS})"
        )));
    }
    Ok(())
}

/// A polynomial valid on exactly [a, b].
fn check_poly(name: &str, p: &Chebyshev, a: f64, b: f64) -> Result<(), CkksError> {
    p.validate()?;
    if p.a != a || p.b != b {
        return Err(bad(format!(
            "{name}: polynomial on [{}, {}], expected [{a}, {b}]",
            p.a, p.b
        )));
    }
    Ok(())
}

/// T_m(u) for any real u.
fn cheb_t(m: usize, u: f64) -> f64 {
    if u.abs() <= 1.0 {
        (m as f64 * u.acos()).cos()
    } else {
        let s = if u < 0.0 && m % 2 == 1 { -1.0 } else { 1.0 };
        s * (m as f64 * u.abs().acosh()).cosh()
    }
}

// ---------------------------------------------------------------------------------------------
// One polynomial (GELU).

/// One Chebyshev polynomial standing for `exact` on [a, b]. Outside [a, b] it grows like
/// x^degree: under encryption that is garbage (and may overflow the modulus); the twin errors.
#[derive(Clone, Debug)]
pub struct PolyApprox {
    pub name: &'static str,
    pub poly: Chebyshev,
    pub exact: fn(f64) -> f64,
}

impl PolyApprox {
    /// Interpolates `exact` at the Chebyshev nodes of [a, b]. When 0 is inside, the constant is
    /// adjusted so that p(0) = exact(0) exactly (zero padding columns stay zero for GELU).
    pub fn new(
        name: &'static str,
        exact: fn(f64) -> f64,
        a: f64,
        b: f64,
        degree: usize,
    ) -> Result<Self, CkksError> {
        if !(a.is_finite() && b.is_finite() && a < b) {
            return Err(bad(format!("{name}: bad interval [{a}, {b}]")));
        }
        check_degree(name, degree)?;
        let mut poly = Chebyshev::interpolate(exact, a, b, degree);
        if a <= 0.0 && 0.0 <= b {
            poly.coeffs[0] += exact(0.0) - poly.eval(0.0);
        }
        let p = PolyApprox { name, poly, exact };
        p.validate()?;
        Ok(p)
    }
    /// Errors: `poly.validate()` (a finite interval, finite coefficients).
    pub fn validate(&self) -> Result<(), CkksError> {
        self.poly.validate()
    }
    pub fn interval(&self) -> (f64, f64) {
        (self.poly.a, self.poly.b)
    }
    pub fn degree(&self) -> usize {
        self.poly.degree()
    }
    /// The f64 twin: the same polynomial; an error outside the interval.
    pub fn twin(&self, x: f64) -> Result<f64, CkksError> {
        check_in(self.name, x, self.poly.a, self.poly.b)?;
        Ok(self.poly.eval(x))
    }
    /// Encrypted evaluation (inputs must lie in the interval; nothing can check it).
    /// Errors: `validate`, too few levels.
    pub fn evaluate<C: Circuit>(&self, c: &C, x: &C::Ct) -> Result<C::Ct, CkksError> {
        eval_poly(c, x, &self.poly)
    }
    /// `evaluate` on several ciphertexts, refreshed together first (two per bootstrap under
    /// `Refreshing`, `Circuit::refresh_all`).
    pub fn evaluate_all<C: Circuit>(&self, c: &C, xs: &[C::Ct]) -> Result<Vec<C::Ct>, CkksError> {
        let bound = self.poly.a.abs().max(self.poly.b.abs());
        let xs = c.refresh_all(xs, poly_depth(c, &self.poly)?, bound)?;
        xs.iter().map(|x| self.evaluate(c, x)).collect()
    }
    /// Largest |p - exact| on the interval (sampled).
    pub fn max_error(&self) -> f64 {
        self.poly.max_error(self.exact, 4001)
    }
}

/// GELU's input interval by default: BERT's and GPT-2's FFN pre-activations stay within about
/// +-12 with outliers beyond, so +-16 leaves room. Outside, GELU is x (large positive) and 0
/// (large negative) while the polynomial diverges: clip or widen before it.
pub const GELU_BOUND: f64 = 16.0;
/// Degree 126: max error ~1e-13 (erf) and ~2e-9 (tanh) on [-16, 16], 8 levels with the change of
/// variable; degree 62 (7 levels) gives ~4e-5.
pub const GELU_DEGREE: usize = 126;

/// erf by its everywhere-positive series erf(z) = 2/sqrt(pi) e^{-z^2} sum 2^n z^{2n+1} /
/// (1 3 5 ... (2n+1)) (no cancellation; std has no erf); |z| > 6 is +-1 to double precision.
pub fn erf(z: f64) -> f64 {
    if z.is_nan() {
        return z;
    }
    if z.abs() > 6.0 {
        return z.signum();
    }
    let z2 = z * z;
    let (mut term, mut sum) = (z, z);
    let mut n = 0.0;
    while term.abs() > 1e-17 * sum.abs() {
        n += 1.0;
        term *= 2.0 * z2 / (2.0 * n + 1.0);
        sum += term;
    }
    2.0 / PI.sqrt() * (-z2).exp() * sum
}

/// GELU, erf form (BERT): x Phi(x).
pub fn gelu_erf_exact(x: f64) -> f64 {
    0.5 * x * (1.0 + erf(x / std::f64::consts::SQRT_2))
}

/// GELU, tanh form (GPT-2's `gelu_new`).
pub fn gelu_tanh_exact(x: f64) -> f64 {
    0.5 * x * (1.0 + ((2.0 / PI).sqrt() * (x + 0.044715 * x * x * x)).tanh())
}

/// GELU (erf form) on [-bound, bound].
pub fn gelu_erf(bound: f64, degree: usize) -> Result<PolyApprox, CkksError> {
    PolyApprox::new("gelu_erf", gelu_erf_exact, -bound, bound, degree)
}

/// GELU (tanh form) on [-bound, bound].
pub fn gelu_tanh(bound: f64, degree: usize) -> Result<PolyApprox, CkksError> {
    PolyApprox::new("gelu_tanh", gelu_tanh_exact, -bound, bound, degree)
}

// ---------------------------------------------------------------------------------------------
// exp for softmax.

/// exp on [-range, 0] as (p(x))^(2^k) with p ~ exp(x / 2^k): squaring keeps the degree low on a
/// wide interval (an error e of p becomes about 2^k e near 0, but stays absolute: exp <= 1).
/// Softmax feeds it x - shift <= 0. Below -range the polynomial diverges (its 2^k-th power is
/// garbage); above 0 it grows like exp only near 0 and diverges beyond.
#[derive(Clone, Debug)]
pub struct Exp {
    pub range: f64,
    pub squarings: u32,
    /// exp(x / 2^squarings) on [-range, 0].
    pub poly: Chebyshev,
}

impl Exp {
    /// THOR saw attention scores in [-27, 22]: after subtracting a bound, [-49, 0]; 64 covers it.
    pub const DEFAULT_RANGE: f64 = 64.0;
    pub const DEFAULT_SQUARINGS: u32 = 5;
    /// Degree 7 on the unit variable takes 3 levels: max error 2.6e-6 against exp on [-64, 0]
    /// after the squarings (degree 12 takes 4 levels for 5e-13).
    pub const DEFAULT_DEGREE: usize = 7;

    /// Errors: as `validate`, or a degree outside 1..=`MAX_DEGREE`.
    pub fn new(range: f64, squarings: u32, degree: usize) -> Result<Self, CkksError> {
        check_degree("exp", degree)?;
        Self::check(range, squarings)?;
        let k = 2f64.powi(squarings as i32);
        let poly = Chebyshev::interpolate(move |x| (x / k).exp(), -range, 0.0, degree);
        let e = Exp {
            range,
            squarings,
            poly,
        };
        e.validate()?;
        Ok(e)
    }

    fn check(range: f64, squarings: u32) -> Result<(), CkksError> {
        if !(range.is_finite() && range > 0.0) || squarings > 16 {
            return Err(bad(format!(
                "exp: bad range {range} or squarings {squarings} (at most 16)"
            )));
        }
        Ok(())
    }

    /// Errors: a range that is not finite and positive, more than 16 squarings, a polynomial
    /// that fails `Chebyshev::validate` or is not on [-range, 0].
    pub fn validate(&self) -> Result<(), CkksError> {
        Self::check(self.range, self.squarings)?;
        check_poly("exp", &self.poly, -self.range, 0.0)
    }

    pub fn interval(&self) -> (f64, f64) {
        (-self.range, 0.0)
    }

    /// The polynomial in the variable u = 2x / range + 1 in [-1, 1] (what softmax feeds after
    /// folding its shift and mask into the change of variable).
    pub fn unit_poly(&self) -> Chebyshev {
        Chebyshev {
            coeffs: self.poly.coeffs.clone(),
            a: -1.0,
            b: 1.0,
        }
    }

    fn square_twin(&self, mut y: f64) -> f64 {
        for _ in 0..self.squarings {
            y *= y;
        }
        y
    }

    /// The f64 twin on x in [-range, 0].
    pub fn twin(&self, x: f64) -> Result<f64, CkksError> {
        check_in("exp", x, -self.range, 0.0)?;
        Ok(self.square_twin(self.poly.eval(x)))
    }

    /// The twin in the unit variable (no interval check: softmax checks x itself).
    pub fn twin_unit(&self, u: f64) -> f64 {
        self.square_twin(self.unit_poly().eval(u))
    }

    pub fn exact(x: f64) -> f64 {
        x.exp()
    }

    fn square<C: Circuit>(&self, c: &C, y: C::Ct) -> Result<C::Ct, CkksError> {
        Ok(self.square_all(c, vec![y])?.remove(0))
    }

    /// The squarings on several ciphertexts, refreshed together before each.
    fn square_all<C: Circuit>(&self, c: &C, mut ys: Vec<C::Ct>) -> Result<Vec<C::Ct>, CkksError> {
        for _ in 0..self.squarings {
            ys = c.refresh_all(&ys, 1, 1.0)?;
            ys = ys.iter().map(|y| mul(c, y, y)).collect::<Result<_, _>>()?;
        }
        Ok(ys)
    }

    /// Encrypted exp of x in [-range, 0]. Errors: `validate`, too few levels.
    pub fn evaluate<C: Circuit>(&self, c: &C, x: &C::Ct) -> Result<C::Ct, CkksError> {
        self.validate()?;
        self.square(c, eval_poly(c, x, &self.poly)?)
    }

    /// Encrypted exp of an input already in the unit variable. Errors: as `evaluate`.
    pub fn evaluate_unit<C: Circuit>(&self, c: &C, u: &C::Ct) -> Result<C::Ct, CkksError> {
        Ok(self
            .evaluate_unit_all(c, std::slice::from_ref(u))?
            .remove(0))
    }

    /// `evaluate_unit` on several ciphertexts, each refresh shared (two per bootstrap under
    /// `Refreshing`).
    pub fn evaluate_unit_all<C: Circuit>(
        &self,
        c: &C,
        us: &[C::Ct],
    ) -> Result<Vec<C::Ct>, CkksError> {
        self.validate()?;
        let poly = self.unit_poly();
        let us = c.refresh_all(us, poly_depth(c, &poly)?, 1.0)?;
        let ys = us
            .iter()
            .map(|u| eval_poly(c, u, &poly))
            .collect::<Result<Vec<_>, _>>()?;
        self.square_all(c, ys)
    }
}

// ---------------------------------------------------------------------------------------------
// 1/x for the softmax row sum.

/// 1/x on [a, b] (0 < a < b): a guess p of degree m - 1 that minimizes the worst relative error
/// |1 - x p(x)| on [a, b] (the error is T_m(u(x)) / T_m(u(0)), equioscillating, at most
/// e0 = 1 / |T_m(u(0))|), then Goldschmidt: y <- y (1 + e), e <- e^2, so the relative error is
/// e0^(2^iterations). Levels: 1 (change of variable) + ceil(log2 m) + 1 + iterations + 1.
/// Outside [a, b]: above b, |e| grows past 1 quickly and the result is garbage; in (0, a) the
/// error shrinks more slowly than promised; x <= 0 is garbage.
#[derive(Clone, Debug)]
pub struct Inverse {
    pub a: f64,
    pub b: f64,
    pub guess: Chebyshev,
    pub iterations: usize,
    /// The guess's worst relative error e0.
    pub guess_error: f64,
}

impl Inverse {
    /// Errors: as `validate`, or a degree outside 1..=`MAX_DEGREE`.
    pub fn new(a: f64, b: f64, degree: usize, iterations: usize) -> Result<Self, CkksError> {
        check_positive("inverse", a, b, iterations)?;
        check_degree("inverse", degree)?;
        let m = degree + 1;
        let u = |x: f64| (2.0 * x - a - b) / (b - a);
        let t0 = cheb_t(m, u(0.0));
        let guess = Chebyshev::interpolate(move |x| (1.0 - cheb_t(m, u(x)) / t0) / x, a, b, degree);
        let inv = Inverse {
            a,
            b,
            guess,
            iterations,
            guess_error: 1.0 / t0.abs(),
        };
        inv.validate()?;
        Ok(inv)
    }

    /// The shallowest guess degree (2^j - 2, so that its evaluation takes j levels) and
    /// iteration count whose relative error bound is at most 2^-bits. Errors: as `new`, bits not
    /// in (0, 52], an interval too wide.
    pub fn auto(a: f64, b: f64, bits: f64) -> Result<Self, CkksError> {
        Self::auto_with(a, b, bits, 7)
    }

    /// `auto` with guesses of degree at most 2^max_j - 2 (1 + max_j levels).
    pub fn auto_with(a: f64, b: f64, bits: f64, max_j: usize) -> Result<Self, CkksError> {
        check_bits("inverse", bits)?;
        let mut best: Option<(usize, Inverse)> = None;
        for j in 2..=max_j.clamp(2, 7) {
            let d = (1usize << j) - 2;
            let mut inv = Inverse::new(a, b, d, 0)?;
            let e0 = inv.guess_error;
            if e0 >= 1.0 {
                continue;
            }
            // e0^(2^n) <= 2^-bits.
            let need = (bits / -e0.log2()).max(1.0).log2().ceil().max(0.0) as usize;
            inv.iterations = need;
            let depth = 1 + j + if need > 0 { 1 + need } else { 0 };
            if best.as_ref().is_none_or(|(bd, _)| depth < *bd) {
                best = Some((depth, inv));
            }
        }
        best.map(|b| b.1).ok_or_else(|| {
            bad(format!(
                "inverse: [{a}, {b}] is too wide for a polynomial guess"
            ))
        })
    }

    /// Errors: an interval that is not 0 < a < b (finite), more than `MAX_ITERATIONS`
    /// iterations, a guess that fails `Chebyshev::validate` or is not on [a, b], a guess error
    /// that is not finite in [0, 1).
    pub fn validate(&self) -> Result<(), CkksError> {
        check_positive("inverse", self.a, self.b, self.iterations)?;
        check_poly("inverse", &self.guess, self.a, self.b)?;
        let e = self.guess_error;
        if !(e.is_finite() && (0.0..1.0).contains(&e)) && self.iterations > 0 {
            return Err(bad(format!("inverse: guess error {e} (need [0, 1))")));
        }
        Ok(())
    }

    /// Relative error bound on [a, b]: e0^(2^iterations).
    pub fn error_bound(&self) -> f64 {
        self.guess_error.powf(2f64.powi(self.iterations as i32))
    }

    /// The twin without the interval check (same operations as the encrypted version).
    pub fn twin_unchecked(&self, x: f64) -> f64 {
        let y0 = self.guess.eval(x);
        if self.iterations == 0 {
            return y0;
        }
        let mut e = 1.0 - x * y0;
        let mut p = 1.0 + e;
        for _ in 1..self.iterations {
            e *= e;
            p *= 1.0 + e;
        }
        y0 * p
    }

    pub fn twin(&self, x: f64) -> Result<f64, CkksError> {
        check_in("inverse", x, self.a, self.b)?;
        Ok(self.twin_unchecked(x))
    }

    pub fn exact(x: f64) -> f64 {
        1.0 / x
    }

    /// Encrypted 1/x for x in [a, b], as y0 P with P = prod_k (1 + e_k) accumulated apart
    /// from y0: only e (|e| <= 1) and P (<= 1 / (1 - e0)) ever need bootstrapping, never x or y,
    /// whose ranges ([a, b] and [1/b, 1/a]) are far wider than their typical values (a
    /// bootstrap's error scales with the bound it is given). x needs the guess's depth + 1
    /// levels; the result lands one level below y0's. Errors: `validate`, too few levels.
    pub fn evaluate<C: Circuit>(&self, c: &C, x: &C::Ct) -> Result<C::Ct, CkksError> {
        Ok(self.evaluate_all(c, std::slice::from_ref(x))?.remove(0))
    }

    /// `evaluate` on several ciphertexts, each refresh shared (two per bootstrap under
    /// `Refreshing`).
    pub fn evaluate_all<C: Circuit>(&self, c: &C, xs: &[C::Ct]) -> Result<Vec<C::Ct>, CkksError> {
        self.validate()?;
        let xs = c.refresh_all(xs, poly_depth(c, &self.guess)? + 1, self.b)?;
        let y0s = xs
            .iter()
            .map(|x| eval_poly(c, x, &self.guess))
            .collect::<Result<Vec<_>, _>>()?;
        if self.iterations == 0 {
            return Ok(y0s);
        }
        let mut es = xs
            .iter()
            .zip(&y0s)
            .map(|(x, y0)| c.add_const(&c.mul_int(&mul(c, x, y0)?, -1)?, 1.0))
            .collect::<Result<Vec<_>, _>>()?;
        let p_bound = 1.05 / (1.0 - self.guess_error).max(1e-6);
        let mut ps = es
            .iter()
            .map(|e| c.add_const(e, 1.0))
            .collect::<Result<Vec<_>, _>>()?;
        // (Under `Refreshing`, which keeps a spare level: e >= 2 after squaring and p >= 2 at
        // the end, so that y0 p keeps one level for the caller's product.)
        for _ in 1..self.iterations {
            es = c.refresh_all(&es, 2, 1.0)?;
            es = es.iter().map(|e| mul(c, e, e)).collect::<Result<_, _>>()?;
            ps = c.refresh_all(&ps, 1, p_bound)?;
            ps = ps
                .iter()
                .zip(&es)
                .map(|(p, e)| mul(c, p, &c.add_const(e, 1.0)?))
                .collect::<Result<_, _>>()?;
        }
        let ps = c.refresh_all(&ps, 1, p_bound)?;
        // y0 is not refreshed: it has a level left by construction (see above).
        y0s.iter().zip(&ps).map(|(y0, p)| mul(c, y0, p)).collect()
    }
}

// ---------------------------------------------------------------------------------------------
// 1/sqrt(x) for LayerNorm.

/// Chebyshev coefficients of degree `degree` on [a, b] that nearly minimize the worst relative
/// error |p/f - 1| (weighted least squares at Chebyshev nodes, Lawson reweighting).
fn relative_fit(
    f: impl Fn(f64) -> f64,
    a: f64,
    b: f64,
    degree: usize,
) -> Result<Chebyshev, CkksError> {
    let n = degree + 1;
    let m = 8 * n;
    let us: Vec<f64> = (0..m)
        .map(|j| (PI * (j as f64 + 0.5) / m as f64).cos())
        .collect();
    // Rows: T_k(u_i) / f(x_i).
    let rows: Vec<Vec<f64>> = us
        .iter()
        .map(|&u| {
            let x = 0.5 * (b - a) * u + 0.5 * (a + b);
            let fx = f(x);
            let mut t = vec![1.0, u];
            for k in 2..n {
                t.push(2.0 * u * t[k - 1] - t[k - 2]);
            }
            t.truncate(n);
            t.iter().map(|v| v / fx).collect()
        })
        .collect();
    let mut w = vec![1.0 / m as f64; m];
    let mut coeffs = vec![0.0; n];
    for _ in 0..30 {
        let mut ata = vec![vec![0.0; n]; n];
        let mut aty = vec![0.0; n];
        for (r, &wi) in rows.iter().zip(&w) {
            for p in 0..n {
                aty[p] += wi * r[p];
                for q in p..n {
                    ata[p][q] += wi * r[p] * r[q];
                }
            }
        }
        // Mirror the upper triangle.
        let upper = ata.clone();
        for (p, row) in ata.iter_mut().enumerate() {
            for (q, v) in row.iter_mut().enumerate().take(p) {
                *v = upper[q][p];
            }
        }
        coeffs = solve(ata, aty)?;
        let res: Vec<f64> = rows
            .iter()
            .map(|r| (r.iter().zip(&coeffs).map(|(x, c)| x * c).sum::<f64>() - 1.0).abs())
            .collect();
        let s: f64 = w.iter().zip(&res).map(|(a, b)| a * b).sum();
        if s <= 0.0 {
            break;
        }
        for (wi, ri) in w.iter_mut().zip(&res) {
            *wi *= ri / s;
        }
    }
    Ok(Chebyshev { coeffs, a, b })
}

/// Gaussian elimination with partial pivoting.
fn solve(mut a: Vec<Vec<f64>>, mut y: Vec<f64>) -> Result<Vec<f64>, CkksError> {
    let n = y.len();
    for col in 0..n {
        let p = (col..n)
            .max_by(|&i, &j| a[i][col].abs().total_cmp(&a[j][col].abs()))
            .unwrap_or(col);
        if a[p][col].abs() < 1e-300 {
            return Err(bad("singular fit".into()));
        }
        a.swap(col, p);
        y.swap(col, p);
        let (top, rest) = a.split_at_mut(col + 1);
        let pivot = &top[col];
        for (i, row) in rest.iter_mut().enumerate() {
            let f = row[col] / pivot[col];
            if f != 0.0 {
                for (v, pv) in row[col..].iter_mut().zip(&pivot[col..]) {
                    *v -= f * pv;
                }
                y[col + 1 + i] -= f * y[col];
            }
        }
    }
    let mut x = vec![0.0; n];
    for r in (0..n).rev() {
        let s: f64 = (r + 1..n).map(|k| a[r][k] * x[k]).sum();
        x[r] = (y[r] - s) / a[r][r];
    }
    Ok(x)
}

/// 1/sqrt(x) on [a, b] (0 < a < b): a guess that nearly minimizes the worst relative error,
/// then Newton y <- 1.5 y - (x/2) y^3, which maps a relative error d to about -1.5 d^2.
/// Levels: 1 (change of variable) + ceil(log2(degree + 1)) + 2 per iteration.
/// LayerNorm's variance: THOR measured up to 2500 in BERT; the lower end 0.5 holds for the
/// residual stream after the embeddings (whose LayerNorm the client runs in the clear). Outside:
/// Newton converges only while 0 < x y0^2 < 3; above b the guess extrapolates (soon negative:
/// garbage), below a it underestimates and the result loses precision, then diverges.
#[derive(Clone, Debug)]
pub struct InvSqrt {
    pub a: f64,
    pub b: f64,
    pub guess: Chebyshev,
    pub iterations: usize,
    /// The guess's worst relative error (sampled).
    pub guess_error: f64,
}

impl InvSqrt {
    pub const DEFAULT_INTERVAL: (f64, f64) = (0.5, 2500.0);

    /// Errors: as `validate`, or a degree outside 1..=126.
    pub fn new(a: f64, b: f64, degree: usize, iterations: usize) -> Result<Self, CkksError> {
        check_positive("inverse sqrt", a, b, iterations)?;
        if degree == 0 || degree > 126 {
            return Err(bad(format!(
                "inverse sqrt: degree {degree} outside 1..=126"
            )));
        }
        let guess = relative_fit(|x| 1.0 / x.sqrt(), a, b, degree)?;
        let mut s = InvSqrt {
            a,
            b,
            guess,
            iterations: 0,
            guess_error: 0.0,
        };
        s.guess_error = s.worst_relative_error();
        s.iterations = iterations;
        s.validate()?;
        Ok(s)
    }

    /// The shallowest (degree 2^j - 2, iterations) pair whose worst relative error on [a, b]
    /// (sampled) is at most 2^-bits.
    pub fn auto(a: f64, b: f64, bits: f64) -> Result<Self, CkksError> {
        Self::auto_with(a, b, bits, 6)
    }

    /// `auto` with guesses of degree at most 2^max_j - 2 (1 + max_j levels). Errors: as `new`,
    /// bits not in (0, 52], an interval too wide.
    pub fn auto_with(a: f64, b: f64, bits: f64, max_j: usize) -> Result<Self, CkksError> {
        check_bits("inverse sqrt", bits)?;
        let mut best: Option<(usize, InvSqrt)> = None;
        for j in 3..=max_j.clamp(3, 6) {
            let mut s = InvSqrt::new(a, b, (1 << j) - 2, 0)?;
            for n in 0..12 {
                s.iterations = n;
                if s.worst_relative_error() <= 2f64.powf(-bits) {
                    let depth = 1 + j + 2 * n;
                    if best.as_ref().is_none_or(|(bd, _)| depth < *bd) {
                        best = Some((depth, s.clone()));
                    }
                    break;
                }
            }
        }
        best.map(|b| b.1)
            .ok_or_else(|| bad(format!("inverse sqrt: [{a}, {b}] is too wide")))
    }

    /// The default: `DEFAULT_INTERVAL` to 2^-24 relative, with a guess of at most 6 levels so
    /// that LayerNorm's mean, squares and guess fit between two bootstraps (8 levels with the
    /// spare one) and the variance is never bootstrapped.
    pub fn layernorm_default() -> Result<Self, CkksError> {
        let (a, b) = Self::DEFAULT_INTERVAL;
        Self::auto_with(a, b, 24.0, 5)
    }

    /// Errors: an interval that is not 0 < a < b (finite), more than `MAX_ITERATIONS`
    /// iterations, a guess that fails `Chebyshev::validate` or is not on [a, b].
    pub fn validate(&self) -> Result<(), CkksError> {
        check_positive("inverse sqrt", self.a, self.b, self.iterations)?;
        check_poly("inverse sqrt", &self.guess, self.a, self.b)
    }

    /// Worst relative error of the twin against 1/sqrt on a log-spaced grid of [a, b].
    pub fn worst_relative_error(&self) -> f64 {
        let n = 2000;
        (0..n)
            .map(|i| {
                let x = self.a * (self.b / self.a).powf(i as f64 / (n - 1) as f64);
                (self.twin_unchecked(x) * x.sqrt() - 1.0).abs()
            })
            .fold(0.0, f64::max)
    }

    pub fn twin_unchecked(&self, x: f64) -> f64 {
        let mut y = self.guess.eval(x);
        for _ in 0..self.iterations {
            let t = (0.5 * x * y) * (y * y);
            y = 1.5 * y - t;
        }
        y
    }

    pub fn twin(&self, x: f64) -> Result<f64, CkksError> {
        check_in("inverse sqrt", x, self.a, self.b)?;
        Ok(self.twin_unchecked(x))
    }

    pub fn exact(x: f64) -> f64 {
        1.0 / x.sqrt()
    }

    /// Encrypted 1/sqrt(k v + e) for an encrypted v with k v + e in [a, b] (k and e fold the
    /// caller's affine map into the change of variable for free). Errors: `validate`, k not
    /// finite and positive, e not finite, too few levels.
    pub fn evaluate_affine<C: Circuit>(
        &self,
        c: &C,
        v: &C::Ct,
        k: f64,
        e: f64,
    ) -> Result<C::Ct, CkksError> {
        self.validate()?;
        if !(k.is_finite() && k > 0.0 && e.is_finite()) {
            return Err(bad(format!("inverse sqrt: bad affine map {k} v + {e}")));
        }
        let guess = Chebyshev {
            coeffs: self.guess.coeffs.clone(),
            a: (self.a - e) / k,
            b: (self.b - e) / k,
        };
        let v = &c.refresh(v, poly_depth(c, &guess)?, guess.b.abs())?;
        let mut y = eval_poly(c, v, &guess)?;
        if self.iterations == 0 {
            return Ok(y);
        }
        // (k v + e) / 2, one level below v (never the binding level: the guess takes more).
        let shifted = c.add_const(v, e / k)?;
        let mut hx = to_level(c, &shifted, 0.5 * k, c.level(v) - 1)?;
        let y_bound = 1.5 / self.a.sqrt();
        for _ in 0..self.iterations {
            y = c.refresh(&y, 2, y_bound)?;
            hx = c.refresh(&hx, 2, 0.5 * self.b)?;
            let l = c.level(&y).min(c.level(&hx));
            if l < 2 {
                return Err(exhausted("a Newton step", 2, l));
            }
            let t = mul(c, &mul(c, &hx, &y)?, &mul(c, &y, &y)?)?;
            let y15 = to_level(c, &y, 1.5, c.level(&t))?;
            y = c.sub(&y15, &t)?;
        }
        Ok(y)
    }

    /// Encrypted 1/sqrt(x) for x in [a, b].
    pub fn evaluate<C: Circuit>(&self, c: &C, x: &C::Ct) -> Result<C::Ct, CkksError> {
        self.evaluate_affine(c, x, 1.0, 0.0)
    }
}

// ---------------------------------------------------------------------------------------------
// sign for argmax.

/// Cheon, Kim, Kim (ASIACRYPT 2020): f3 converges to sign quartically near +-1, g3 (minimax-like)
/// pulls small inputs away from 0 by ~4.5x per stage. Both odd, degree 7, on [-1, 1].
fn f3(x: f64) -> f64 {
    (35.0 * x - 35.0 * x.powi(3) + 21.0 * x.powi(5) - 5.0 * x.powi(7)) / 16.0
}
fn g3(x: f64) -> f64 {
    (4589.0 * x - 16577.0 * x.powi(3) + 25614.0 * x.powi(5) - 12860.0 * x.powi(7)) / 1024.0
}

/// sign(x) for |x| in [gap, 1] as a composition of g3 stages (while the image of [gap, 1] still
/// reaches below 0.6) then f3 stages, until it is within 2^-bits of +-1. Inputs in (-gap, gap)
/// give values in [-1, 1] (the composition is odd and monotone there); inputs beyond +-1 diverge
/// after a few stages (garbage). 3 levels per stage.
#[derive(Clone, Debug)]
pub struct Sign {
    pub gap: f64,
    pub bits: f64,
    /// Stages in order, each on [-1, 1] (no change of variable).
    pub stages: Vec<Chebyshev>,
    /// "g3" or "f3" per stage.
    pub kinds: Vec<&'static str>,
    /// The last stage maps s to (1 + s) / 2 (a 0/1 step) instead of s.
    pub step: bool,
}

impl Sign {
    pub fn new(gap: f64, bits: f64) -> Result<Self, CkksError> {
        if !(gap > 0.0 && gap < 1.0 && bits > 0.0 && bits <= 40.0) {
            return Err(bad(format!(
                "sign: gap {gap} must be in (0, 1), bits {bits} in (0, 40]"
            )));
        }
        let n = 2000;
        let mut xs: Vec<f64> = (0..n)
            .map(|i| gap * (1.0 / gap).powf(i as f64 / (n - 1) as f64))
            .collect();
        let mut kinds = Vec::new();
        loop {
            if xs.iter().all(|&v| (1.0 - v).abs() <= 2f64.powf(-bits)) {
                break;
            }
            if kinds.len() >= 24 {
                return Err(bad(format!("sign: gap {gap} needs too many stages")));
            }
            let lo = xs.iter().copied().fold(f64::INFINITY, f64::min);
            let (k, f): (&'static str, fn(f64) -> f64) =
                if lo < 0.6 { ("g3", g3) } else { ("f3", f3) };
            xs.iter_mut().for_each(|v| *v = f(*v));
            kinds.push(k);
        }
        let stages = kinds
            .iter()
            .map(|&k| {
                let f = if k == "g3" { g3 } else { f3 };
                let mut p = Chebyshev::interpolate(f, -1.0, 1.0, 7);
                // Odd: clean the even coefficients' rounding noise.
                for (i, c) in p.coeffs.iter_mut().enumerate() {
                    if i % 2 == 0 {
                        *c = 0.0;
                    }
                }
                p
            })
            .collect();
        Ok(Sign {
            gap,
            bits,
            stages,
            kinds,
            step: false,
        })
    }

    /// Errors: gap not in (0, 1), bits not in (0, 40], no stages, a kind per stage missing, a
    /// stage that fails `Chebyshev::validate` or is not on [-1, 1].
    pub fn validate(&self) -> Result<(), CkksError> {
        let (gap, bits) = (self.gap, self.bits);
        if !(gap > 0.0 && gap < 1.0 && bits > 0.0 && bits <= 40.0) {
            return Err(bad(format!(
                "sign: gap {gap} must be in (0, 1), bits {bits} in (0, 40]"
            )));
        }
        if self.stages.is_empty() || self.kinds.len() != self.stages.len() {
            return Err(bad(format!(
                "sign: {} stages and {} kinds (need one kind per stage, at least one stage)",
                self.stages.len(),
                self.kinds.len()
            )));
        }
        self.stages
            .iter()
            .try_for_each(|p| check_poly("sign", p, -1.0, 1.0))
    }

    /// The same composition with its last stage mapped to (1 + s) / 2: 1 for x >= gap, 0 for
    /// x <= -gap, at no extra level.
    pub fn into_step(mut self) -> Self {
        if !self.step {
            if let Some(last) = self.stages.last_mut() {
                last.coeffs.iter_mut().for_each(|c| *c *= 0.5);
                match last.coeffs.first_mut() {
                    Some(c0) => *c0 += 0.5,
                    None => last.coeffs.push(0.5),
                }
            }
            self.step = true;
        }
        self
    }

    pub fn twin_unchecked(&self, x: f64) -> f64 {
        self.stages.iter().fold(x, |v, p| p.eval(v))
    }

    /// The twin; an error for |x| > 1.
    pub fn twin(&self, x: f64) -> Result<f64, CkksError> {
        check_in("sign", x, -1.0, 1.0)?;
        Ok(self.twin_unchecked(x))
    }

    /// sign(x) (or the 0/1 step), 0 at 0.
    pub fn exact(&self, x: f64) -> f64 {
        let s = if x > 0.0 {
            1.0
        } else if x < 0.0 {
            -1.0
        } else {
            0.0
        };
        if self.step {
            (1.0 + s) / 2.0
        } else {
            s
        }
    }

    /// Encrypted sign (or step). Errors: `validate`, too few levels.
    pub fn evaluate<C: Circuit>(&self, c: &C, x: &C::Ct) -> Result<C::Ct, CkksError> {
        Ok(self.evaluate_all(c, std::slice::from_ref(x))?.remove(0))
    }

    /// `evaluate` on several ciphertexts, each stage's refresh shared (two per bootstrap under
    /// `Refreshing`).
    pub fn evaluate_all<C: Circuit>(&self, c: &C, xs: &[C::Ct]) -> Result<Vec<C::Ct>, CkksError> {
        self.validate()?;
        let mut ys = xs.to_vec();
        for p in &self.stages {
            let bound = p.a.abs().max(p.b.abs());
            ys = c.refresh_all(&ys, poly_depth(c, p)?, bound)?;
            ys = ys
                .iter()
                .map(|y| eval_poly(c, y, p))
                .collect::<Result<_, _>>()?;
        }
        Ok(ys)
    }
}
