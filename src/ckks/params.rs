//! CKKS parameters: a plain literal, checked into immutable `Parameters` (DESIGN D1, D5).
//!
//! Composite scaling: every prime is below 2^30 (one u32 word with room for lazy reduction), so a
//! level owns a *group* of primes whose product is close to the scale, and rescaling divides by the
//! whole group. Level groups are chosen from the top level down so that each group's product tracks
//! the scale the ciphertext actually has at that level; the per-level default scales follow exactly
//! (s_{l-1} = s_l^2 / Q_l) and are what the encoder uses.

use std::sync::Arc;

use sha2::{Digest, Sha256};

use super::CkksError;
use crate::backend::RingContext;
use crate::math::primes::{largest_ntt_primes, nearest_ntt_prime};

/// Bits of the largest word prime (primes are below 2^30).
pub const WORD_BITS: u32 = 30;

/// Most primes (Q and P together) a parameter set may have.
pub const MAX_PRIMES: usize = 512;

/// HomomorphicEncryption.org 128-bit classical security, uniform ternary secret: the largest
/// log2(QP) for each log2(N) (N = 2^16 from the lattice-estimator extension used by OpenFHE and
/// Lattigo).
pub const HE_STD_128_TERNARY: [(u32, f64); 7] = [
    (10, 27.0),
    (11, 54.0),
    (12, 109.0),
    (13, 218.0),
    (14, 438.0),
    (15, 881.0),
    (16, 1772.0),
];

/// The plain, documented description of a parameter set (Lattigo-style literal).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ParametersLiteral {
    /// Name; a set that is not 128-bit secure is rejected unless its name contains `insecure`.
    pub name: String,
    /// log2 of the ring degree N (slots: up to N/2).
    pub log_n: u32,
    /// Bits of the base modulus Q_0 (what is left at level 0; bounds message x scale).
    pub log_q0: u32,
    /// Number of rescaling levels above level 0 (the multiplicative depth).
    pub levels: usize,
    /// log2 of the default scale at the top level; each level owns ceil(log_scale / 30) primes.
    pub log_scale: u32,
    /// Number of key-switching digits (hybrid key switching); special primes = ceil(#Q primes / dnum).
    pub dnum: usize,
    /// Bits of extra levels stacked above the compute levels, bottom-up (default: none). These are
    /// the levels bootstrapping spends (SlotsToCoeffs, EvalMod, CoeffsToSlots: see
    /// `bootstrap::BootstrapLiteral`); each gets a group of ceil(bits / 30) primes whose product is
    /// close to 2^bits, and its default scale is that product.
    #[serde(default)]
    pub extra_log_q: Vec<u32>,
    /// Extra special primes beyond ceil(#Q primes / dnum) (default 0). One more 30-bit prime makes
    /// P about 2^30 larger than every digit, so key-switching noise falls below rescaling noise.
    #[serde(default)]
    pub extra_special_primes: usize,
}

impl ParametersLiteral {
    /// A literal with the fields every set names (no extra levels, no extra special primes).
    pub fn new(
        name: &str,
        log_n: u32,
        log_q0: u32,
        levels: usize,
        log_scale: u32,
        dnum: usize,
    ) -> Self {
        ParametersLiteral {
            name: name.into(),
            log_n,
            log_q0,
            levels,
            log_scale,
            dnum,
            ..ParametersLiteral::default()
        }
    }
}

impl Default for ParametersLiteral {
    fn default() -> Self {
        ParametersLiteral {
            name: String::new(),
            log_n: 0,
            log_q0: 0,
            levels: 0,
            log_scale: 0,
            dnum: 1,
            extra_log_q: Vec::new(),
            extra_special_primes: 0,
        }
    }
}

/// Checked, immutable parameters with their prime chain.
#[derive(Debug)]
pub struct Parameters {
    pub literal: ParametersLiteral,
    /// Prime groups by level: group[0] is Q_0, group[l] is divided out when rescaling from l to l-1.
    pub q_groups: Vec<Vec<u32>>,
    /// Special primes P.
    pub p_primes: Vec<u32>,
    /// The ring over all primes: Q primes in level order, then P.
    pub ring: Arc<RingContext>,
    /// Number of Q limbs a ciphertext at level l has.
    level_limbs: Vec<usize>,
    /// Default scale at each level.
    pub default_scales: Vec<f64>,
    /// Key-switching digits as limb ranges of the Q primes.
    pub digits: Vec<(usize, usize)>,
    pub log_qp: f64,
    /// Digest of everything that defines the arithmetic (files carry it to catch mismatches).
    pub hash: [u8; 32],
}

impl Parameters {
    /// Checks a literal and derives its primes. Errors (`InvalidParameters`): log_n outside
    /// 4..=17, log_q0 outside 20..=120, log_scale outside 20..=90 or too close to Q_0, dnum 0, an
    /// extra level outside 20..=90 bits, more than `MAX_PRIMES` primes, too few NTT primes.
    pub fn new(lit: ParametersLiteral) -> Result<Arc<Parameters>, CkksError> {
        let bad = |m: String| Err(CkksError::InvalidParameters(m));
        if !(4..=17).contains(&lit.log_n) {
            return bad(format!("log_n = {} is outside 4..=17", lit.log_n));
        }
        if lit.log_q0 < 20 || lit.log_q0 > 120 {
            return bad(format!("log_q0 = {} is outside 20..=120", lit.log_q0));
        }
        if lit.log_scale < 20 || lit.log_scale > 90 || lit.log_scale + 10 > lit.log_q0 + 30 {
            return bad(format!(
                "log_scale = {} must be in 20..=90 and leave room below Q_0",
                lit.log_scale
            ));
        }
        if lit.dnum == 0 {
            return bad("dnum must be at least 1".into());
        }
        let n = 1u64 << lit.log_n;
        let two_n = 2 * n;
        let g0 = lit.log_q0.div_ceil(WORD_BITS) as usize;
        let g = lit.log_scale.div_ceil(WORD_BITS) as usize;
        if let Some(&b) = lit.extra_log_q.iter().find(|&&b| !(20..=90).contains(&b)) {
            return bad(format!("extra level of {b} bits is outside 20..=90"));
        }
        let n_extra: usize = lit
            .extra_log_q
            .iter()
            .map(|b| b.div_ceil(WORD_BITS) as usize)
            .sum();
        let too_many = || {
            CkksError::InvalidParameters(format!(
                "{} levels, {} extra levels and {} extra special primes need more than {MAX_PRIMES} \
                 primes",
                lit.levels,
                lit.extra_log_q.len(),
                lit.extra_special_primes
            ))
        };
        let n_q = lit
            .levels
            .checked_mul(g)
            .and_then(|x| x.checked_add(g0 + n_extra))
            .filter(|&x| x <= MAX_PRIMES)
            .ok_or_else(too_many)?;
        let dnum = lit.dnum.min(n_q);
        let alpha = n_q.div_ceil(dnum);
        if n_q + alpha > MAX_PRIMES || lit.extra_special_primes > MAX_PRIMES - n_q - alpha {
            return Err(too_many());
        }
        let mut used: Vec<u32> = Vec::new();
        let no_primes = || {
            CkksError::InvalidParameters(format!(
                "not enough NTT-friendly primes below 2^30 for N = 2^{}",
                lit.log_n
            ))
        };
        let p_primes =
            largest_ntt_primes(WORD_BITS, two_n, alpha + lit.extra_special_primes, &used)
                .ok_or_else(no_primes)?;
        used.extend(&p_primes);
        // Q_0 tracks 2^log_q0 (its ratio to the level-0 scale is what bootstrapping's EvalMod
        // works with, so it must not round up to whole words).
        let q0 = choose_group(2f64.powi(lit.log_q0 as i32), g0, two_n, &mut used)
            .ok_or_else(no_primes)?;
        // Level groups, top down, each tracking the scale the level really has.
        let mut groups_top_down = Vec::with_capacity(lit.levels);
        let mut scale = 2f64.powi(lit.log_scale as i32);
        let mut scales_top_down = Vec::with_capacity(lit.levels + 1);
        for _ in 0..lit.levels {
            scales_top_down.push(scale);
            let group = choose_group(scale, g, two_n, &mut used).ok_or_else(no_primes)?;
            scale = scale * scale / group_product(&group);
            groups_top_down.push(group);
        }
        scales_top_down.push(scale);
        let mut q_groups = vec![q0];
        q_groups.extend(groups_top_down.into_iter().rev());
        let mut default_scales: Vec<f64> = scales_top_down.into_iter().rev().collect();
        for &bits in &lit.extra_log_q {
            let gsize = bits.div_ceil(WORD_BITS) as usize;
            let group = choose_group(2f64.powi(bits as i32), gsize, two_n, &mut used)
                .ok_or_else(no_primes)?;
            default_scales.push(group_product(&group));
            q_groups.push(group);
        }
        let mut level_limbs = Vec::with_capacity(q_groups.len());
        let mut acc = 0;
        for grp in &q_groups {
            acc += grp.len();
            level_limbs.push(acc);
        }
        let q_primes: Vec<u32> = q_groups.iter().flatten().copied().collect();
        let digits = (0..dnum)
            .map(|i| (i * alpha, ((i + 1) * alpha).min(n_q)))
            .filter(|(a, b)| a < b)
            .collect();
        let log_qp = q_primes
            .iter()
            .chain(&p_primes)
            .map(|&q| (q as f64).log2())
            .sum::<f64>();
        if default_scales[0] >= group_product(&q_groups[0]) / 2f64.powi(8) {
            return bad(format!(
                "the level-0 scale 2^{:.1} leaves less than 8 bits of room in Q_0",
                default_scales[0].log2()
            ));
        }
        let max = max_log_qp(lit.log_n);
        if log_qp > max && !lit.name.contains("insecure") {
            return Err(CkksError::Insecure {
                name: lit.name.clone(),
                log_qp,
                max,
                log_n: lit.log_n,
            });
        }
        let mut all = q_primes.clone();
        all.extend(&p_primes);
        let mut h = Sha256::new();
        h.update(b"umbra-ckks-params-v1");
        h.update(lit.log_n.to_le_bytes());
        h.update(lit.log_scale.to_le_bytes());
        h.update((dnum as u32).to_le_bytes());
        for grp in &q_groups {
            h.update((grp.len() as u32).to_le_bytes());
            for q in grp {
                h.update(q.to_le_bytes());
            }
        }
        for q in &p_primes {
            h.update(q.to_le_bytes());
        }
        if !lit.extra_log_q.is_empty() {
            h.update(b"extra");
            h.update((lit.levels as u32).to_le_bytes());
        }
        let hash = h.finalize().into();
        let ring = Arc::new(RingContext::new(lit.log_n, &all));
        Ok(Arc::new(Parameters {
            literal: ParametersLiteral { dnum, ..lit },
            q_groups,
            p_primes,
            ring,
            level_limbs,
            default_scales,
            digits,
            log_qp,
            hash,
        }))
    }

    pub fn n(&self) -> usize {
        1 << self.literal.log_n
    }
    pub fn log_n(&self) -> u32 {
        self.literal.log_n
    }
    /// Maximum number of slots (N/2).
    pub fn max_slots(&self) -> usize {
        self.n() / 2
    }
    /// The top level.
    pub fn max_level(&self) -> usize {
        self.q_groups.len() - 1
    }
    /// The top compute level (the top level when there are no extra levels): where bootstrapping
    /// outputs land.
    pub fn compute_top_level(&self) -> usize {
        self.literal.levels
    }
    /// Q limbs at level l.
    pub fn limbs_at(&self, level: usize) -> usize {
        self.level_limbs[level]
    }
    /// Total number of Q primes.
    pub fn q_count(&self) -> usize {
        *self.level_limbs.last().unwrap()
    }
    /// Prime indices of a ciphertext at level l.
    pub fn q_indices(&self, level: usize) -> Vec<usize> {
        (0..self.limbs_at(level)).collect()
    }
    /// Prime indices of the special primes.
    pub fn p_indices(&self) -> Vec<usize> {
        (self.q_count()..self.q_count() + self.p_primes.len()).collect()
    }
    /// Q_l ++ P indices (the key-switching basis at level l).
    pub fn qp_indices(&self, level: usize) -> Vec<usize> {
        let mut v = self.q_indices(level);
        v.extend(self.p_indices());
        v
    }
    /// Digits (limb ranges) present at level l.
    pub fn digits_at(&self, level: usize) -> Vec<(usize, usize)> {
        let l = self.limbs_at(level);
        self.digits
            .iter()
            .filter(|d| d.0 < l)
            .map(|&(a, b)| (a, b.min(l)))
            .collect()
    }
    /// Product of the group divided out when rescaling from `level`, as f64.
    pub fn rescale_factor(&self, level: usize) -> f64 {
        group_product(&self.q_groups[level])
    }
    /// log2(Q_l).
    pub fn log_q_at(&self, level: usize) -> f64 {
        self.q_groups[..=level]
            .iter()
            .flatten()
            .map(|&q| (q as f64).log2())
            .sum()
    }
    pub fn log_p(&self) -> f64 {
        self.p_primes.iter().map(|&q| (q as f64).log2()).sum()
    }
    /// Whether the set is 128-bit secure by the HE-standard table.
    pub fn is_secure(&self) -> bool {
        self.log_qp <= max_log_qp(self.log_n())
    }
    /// Estimated security in bits: 128 when within the table, else scaled down by the ratio of
    /// log QP to the table bound (a rough guide for insecure test sets).
    pub fn security_bits(&self) -> u32 {
        let max = max_log_qp(self.log_n());
        if self.log_qp <= max {
            128
        } else {
            (128.0 * max / self.log_qp).floor() as u32
        }
    }
    pub fn is_insecure_named(&self) -> bool {
        self.literal.name.contains("insecure")
    }
}

/// A group of `g` unused NTT primes whose product is as close as possible to `target`: the first
/// g - 2 greedily near target^(1/g), the last two by searching pairs around the square root of
/// what remains, so that level scales stay within a small fraction of a bit of each other.
fn choose_group(target: f64, g: usize, two_n: u64, used: &mut Vec<u32>) -> Option<Vec<u32>> {
    let mut group = Vec::with_capacity(g);
    let mut rest = target;
    while g - group.len() > 2 {
        let p = nearest_ntt_prime(rest.powf(1.0 / (g - group.len()) as f64), two_n, used)?;
        used.push(p);
        group.push(p);
        rest /= p as f64;
    }
    if g - group.len() == 1 {
        let p = nearest_ntt_prime(rest, two_n, used)?;
        used.push(p);
        group.push(p);
        return Some(group);
    }
    // Candidates for the smaller factor: the unused primes nearest below sqrt(rest).
    let root = rest.sqrt();
    let mut cands = Vec::new();
    let mut excl = used.clone();
    while cands.len() < 48 {
        match nearest_ntt_prime(root, two_n, &excl) {
            Some(p) => {
                excl.push(p);
                cands.push(p);
            }
            None => break,
        }
    }
    let mut best: Option<(f64, u32, u32)> = None;
    for &a in &cands {
        let mut ex = used.clone();
        ex.push(a);
        if let Some(b) = nearest_ntt_prime(rest / a as f64, two_n, &ex) {
            let err = ((a as f64 * b as f64) / rest).log2().abs();
            if best.is_none_or(|(e, _, _)| err < e) {
                best = Some((err, a, b));
            }
        }
    }
    let (_, a, b) = best?;
    used.extend([a, b]);
    group.extend([a, b]);
    Some(group)
}

/// Product of a prime group as f64 (the one formula for scales everywhere).
pub fn group_product(group: &[u32]) -> f64 {
    group.iter().fold(1.0, |acc, &q| acc * q as f64)
}

/// The table bound for log2(N) (0 outside the table: nothing is secure there).
pub fn max_log_qp(log_n: u32) -> f64 {
    HE_STD_128_TERNARY
        .iter()
        .find(|(l, _)| *l == log_n)
        .map(|x| x.1)
        .unwrap_or(if log_n > 16 { 3544.0 } else { 0.0 })
}
