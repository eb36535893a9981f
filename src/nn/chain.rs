//! The default scale chain every layer works on: a ciphertext at level l has scale
//! `Parameters::default_scales[l]`, so that products land on the chain again
//! (s_{l-1} = s_l^2 / Q_l) and sums line up without scale fixes. These helpers move, multiply,
//! add and evaluate polynomials on that chain (inputs may have any scale), and rehearse a layer's
//! levels on the simulator before any ciphertext work.

use crate::ckks::polynomial;
use crate::ckks::scale::same_scale;
use crate::ckks::{Chebyshev, Circuit, CkksError, SimCiphertext, Simulator};
use crate::math::fft::C64;

/// The default scale of a level.
pub fn chain_scale<C: Circuit>(c: &C, level: usize) -> f64 {
    c.params().default_scales[level]
}

pub(crate) fn exhausted(what: &str, need: usize, have: usize) -> CkksError {
    CkksError::LevelsExhausted(format!(
        "{what} needs {need} more level(s), the ciphertext is at level {have}; bootstrap first"
    ))
}

/// x * k at `level` on the default chain: x is dropped to level + 1 and k is folded into the one
/// rescale (the constant is encoded at about one prime group, so it keeps ~50 bits). Needs
/// `level < level(x)`; x may have any scale.
pub fn to_level<C: Circuit>(c: &C, x: &C::Ct, k: f64, level: usize) -> Result<C::Ct, CkksError> {
    let lx = c.level(x);
    if level >= lx {
        return Err(exhausted("moving down the chain", level + 1 - lx, lx));
    }
    let x = c.drop_to_level(x, level + 1)?;
    let q = c.params().rescale_factor(level + 1);
    let target = chain_scale(c, level);
    let y = c.mul_const(&x, k, target * q / c.scale(&x))?;
    let y = c.rescale(&y)?;
    Ok(c.with_scale(&y, target))
}

/// a * b on the default chain, one level below the lower operand (the higher one is moved down
/// first; an operand off the chain at the lower level costs one more level).
pub fn mul<C: Circuit>(c: &C, a: &C::Ct, b: &C::Ct) -> Result<C::Ct, CkksError> {
    let mut l = c.level(a).min(c.level(b));
    let on = |x: &C::Ct| c.level(x) == l && same_scale(c.scale(x), chain_scale(c, l));
    if (c.level(a) == l && !on(a)) || (c.level(b) == l && !on(b)) {
        if l == 0 {
            return Err(exhausted("a product", 2, 0));
        }
        l -= 1;
    }
    let fix = |x: &C::Ct| -> Result<C::Ct, CkksError> {
        if c.level(x) == l && same_scale(c.scale(x), chain_scale(c, l)) {
            Ok(x.clone())
        } else {
            to_level(c, x, 1.0, l)
        }
    };
    let (a, b) = (fix(a)?, fix(b)?);
    if l == 0 {
        return Err(exhausted("a product", 1, 0));
    }
    let p = c.rescale(&c.mul_relin(&a, &b)?)?;
    Ok(c.with_scale(&p, chain_scale(c, l - 1)))
}

/// a + b on the default chain at the lower operand's level (an operand off the chain there costs
/// one level, as in `mul`): residual connections join a deep branch to a shallow stream.
/// The twins' check of a bootstrap bound: every |x| <= bound, else `OutOfRange` naming `what`
/// (a bootstrap of a value past its bound returns garbage in every slot, silently).
pub fn check_bound_twin(what: &str, x: &[Vec<f64>], bound: f64) -> Result<(), CkksError> {
    match x.iter().flatten().find(|v| !(v.abs() <= bound)) {
        None => Ok(()),
        Some(v) => Err(CkksError::OutOfRange(format!(
            "{what}: |{v}| outside its bootstrap bound {bound}"
        ))),
    }
}

pub fn add_aligned<C: Circuit>(c: &C, a: &C::Ct, b: &C::Ct) -> Result<C::Ct, CkksError> {
    if c.level(a) == c.level(b) && same_scale(c.scale(a), c.scale(b)) {
        return c.add(a, b);
    }
    let l0 = c.level(a).min(c.level(b));
    let on = |x: &C::Ct, l: usize| c.level(x) == l && same_scale(c.scale(x), chain_scale(c, l));
    let off = |x: &C::Ct| c.level(x) == l0 && !on(x, l0);
    let l = if off(a) || off(b) {
        if l0 == 0 {
            return Err(exhausted("a sum of unaligned operands", 1, 0));
        }
        l0 - 1
    } else {
        l0
    };
    let fix = |x: &C::Ct| -> Result<C::Ct, CkksError> {
        if on(x, l) {
            Ok(x.clone())
        } else {
            to_level(c, x, 1.0, l)
        }
    };
    c.add(&fix(a)?, &fix(b)?)
}

/// x times a plaintext slot vector, one level down on the default chain.
pub fn mul_plain_down<C: Circuit>(c: &C, x: &C::Ct, values: &[C64]) -> Result<C::Ct, CkksError> {
    let l = c.level(x);
    if l == 0 {
        return Err(exhausted("a plaintext product", 1, 0));
    }
    let target = chain_scale(c, l - 1);
    let pt = c.encode(
        values,
        l,
        target * c.params().rescale_factor(l) / c.scale(x),
    )?;
    let y = c.rescale(&c.mul_plain(x, &pt)?)?;
    Ok(c.with_scale(&y, target))
}

/// Levels a polynomial takes from the top compute level (where every level has the compute
/// scale; bootstrapping's own levels above it have wider primes).
pub fn poly_depth<C: Circuit>(c: &C, poly: &Chebyshev) -> Result<usize, CkksError> {
    let p = c.params();
    let sim = Simulator::new(p);
    let top = p.compute_top_level();
    let y = polynomial::evaluate(&sim, &sim.fresh(top, 1), poly, p.default_scales[top])?;
    Ok(top - y.level)
}

/// Evaluates a polynomial so that the result lands on the default chain. The input is first
/// refreshed to the polynomial's depth (a bootstrap under `Refreshing`, with |x| bounded by the
/// interval's ends).
pub fn eval_poly<C: Circuit>(c: &C, x: &C::Ct, poly: &Chebyshev) -> Result<C::Ct, CkksError> {
    let x = &c.refresh(x, poly_depth(c, poly)?, poly.a.abs().max(poly.b.abs()))?;
    let sim = Simulator::new(c.params());
    let meta = SimCiphertext {
        level: c.level(x),
        scale: c.scale(x),
        slots: c.slots(x),
    };
    let probe = polynomial::evaluate(&sim, &meta, poly, c.scale(x))?;
    polynomial::evaluate(c, x, poly, chain_scale(c, probe.level))
}

/// Ciphertext metadata, to rehearse a layer on the simulator (levels checked up front, before any
/// ciphertext work).
pub fn metas<C: Circuit>(c: &C, x: &[C::Ct]) -> Vec<SimCiphertext> {
    x.iter()
        .map(|ct| SimCiphertext {
            level: c.level(ct),
            scale: c.scale(ct),
            slots: c.slots(ct),
        })
        .collect()
}

/// Levels a layer spends on these parameters: `run` rehearsed on the simulator from the top level
/// with the ciphertexts of `layout`.
pub fn rehearse_depth(
    params: &std::sync::Arc<crate::ckks::Parameters>,
    layout: &crate::nn::Layout,
    run: impl Fn(&Simulator, &[SimCiphertext]) -> Result<Vec<SimCiphertext>, CkksError>,
) -> Result<usize, CkksError> {
    layout.validate()?;
    let sim = Simulator::new(params);
    let top = params.max_level();
    let x = vec![sim.fresh(top, layout.slots()); layout.cts()];
    let y = run(&sim, &x)?;
    Ok(top - y.first().map(|m| m.level).unwrap_or(top))
}
