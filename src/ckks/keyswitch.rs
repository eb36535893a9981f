//! Hybrid key switching: decompose a polynomial into `dnum` digits, lift each to Q_l ++ P (ModUp),
//! take the inner product with a switching key, divide by P (ModDown). The decomposition can be
//! shared by many keys (hoisted rotations): digits are permuted by the automorphism in NTT form.

use super::keys::SwitchingKey;
use super::Context;
use crate::backend::Buffer;

/// A polynomial's digits, each lifted to Q_level ++ P, NTT form.
pub struct Decomposed {
    pub digits: Vec<Buffer>,
    pub level: usize,
}

/// Decomposes `c` (NTT form over the Q primes of `level`).
pub fn decompose(ctx: &Context, c: &Buffer, level: usize) -> Decomposed {
    let p = &ctx.params;
    let be = &ctx.backend;
    let q = p.q_indices(level);
    let ext = p.qp_indices(level);
    let mut coeff = c.clone();
    be.intt(&mut coeff, &q);
    let digits = p
        .digits_at(level)
        .into_iter()
        .map(|d| be.mod_up(&coeff, c, &q, d, &ext))
        .collect();
    Decomposed { digits, level }
}

/// Applies a switching key to a decomposition, optionally after the automorphism X -> X^galois of
/// the digits; returns (ks0, ks1) over Q_level with ks0 + ks1 s = P^-1 sum d_j key_j ~ c s'.
/// The key must serve the decomposition's level (`SwitchingKey::level`; callers check).
pub fn apply_key(
    ctx: &Context,
    dec: &Decomposed,
    key: &SwitchingKey,
    galois: Option<usize>,
) -> (Buffer, Buffer) {
    let p = &ctx.params;
    let be = &ctx.backend;
    let ext = p.qp_indices(dec.level);
    let permuted: Vec<Buffer>;
    let digits = match galois {
        Some(g) => {
            permuted = dec
                .digits
                .iter()
                .map(|d| be.automorphism(d, g, &ext))
                .collect();
            &permuted
        }
        None => &dec.digits,
    };
    let nd = digits.len();
    let kb: Vec<&Buffer> = key.b[..nd].iter().collect();
    let ka: Vec<&Buffer> = key.a[..nd].iter().collect();
    let key_limbs = key.limb_positions(p, &ext);
    let (acc0, acc1) = be.keyswitch_inner(digits, &kb, &ka, &ext, &key_limbs);
    let k = p.p_primes.len();
    (
        be.divide_round_last(&acc0, &ext, k),
        be.divide_round_last(&acc1, &ext, k),
    )
}
