//! The versioned binary format of parameters, keys, ciphertexts and plaintexts (DESIGN D9).
//!
//! Layout: magic `UMBR`, version u16, kind u8, reserved u8, parameter hash [32], payload length u64,
//! payload, SHA-256 of everything before it [32]. Little-endian throughout. Seeded uniform halves
//! (c1 of secret-key ciphertexts, a of keys) travel as their 32-byte seed. Every read checks magic,
//! version, kind, length, checksum, parameter hash and that each residue is below its prime.

use std::sync::Arc;

use sha2::{Digest, Sha256};

use super::keys::{expand_uniform, uniform, EncapsulationKeys, GaloisKeys, SwitchingKey};
use super::params::ParametersLiteral;
use super::{
    Ciphertext, CkksError, Context, EvaluationKeys, Parameters, Plaintext, PublicKey, RelinKey,
    SecretSeed,
};
use crate::backend::Buffer;
use crate::math::sampling::Prng;

pub const MAGIC: &[u8; 4] = b"UMBR";
pub const VERSION: u16 = 1;
const HEADER: usize = 4 + 2 + 1 + 1 + 32 + 8;
const TRAILER: usize = 32;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FormatError {
    #[error("not an Umbra file (bad magic)")]
    BadMagic,
    #[error("unsupported format version {0} (this build reads {VERSION})")]
    Version(u16),
    #[error("expected a {expected}, found a {found}")]
    WrongKind {
        expected: &'static str,
        found: &'static str,
    },
    #[error("truncated input: {0}")]
    Truncated(String),
    #[error("checksum mismatch: the file is corrupt")]
    Checksum,
    #[error("made under other parameters (parameter hash differs)")]
    ParamsMismatch,
    #[error("malformed content: {0}")]
    Malformed(String),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    Parameters = 1,
    PublicKey = 2,
    RelinKey = 3,
    GaloisKeys = 4,
    EvaluationKeys = 5,
    Ciphertext = 6,
    Plaintext = 7,
    SecretSeed = 8,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Parameters => "parameter set",
            Kind::PublicKey => "public key",
            Kind::RelinKey => "relinearization key",
            Kind::GaloisKeys => "Galois key set",
            Kind::EvaluationKeys => "evaluation key bundle",
            Kind::Ciphertext => "ciphertext",
            Kind::Plaintext => "plaintext",
            Kind::SecretSeed => "secret key",
        }
    }
    fn from_u8(v: u8) -> Option<Kind> {
        use Kind::*;
        [
            Parameters,
            PublicKey,
            RelinKey,
            GaloisKeys,
            EvaluationKeys,
            Ciphertext,
            Plaintext,
            SecretSeed,
        ]
        .into_iter()
        .find(|k| *k as u8 == v)
    }
}

/// Wraps a payload in header and checksum.
fn frame(kind: Kind, hash: &[u8; 32], payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER + payload.len() + TRAILER);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.push(kind as u8);
    out.push(0);
    out.extend_from_slice(hash);
    out.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    out.extend_from_slice(payload);
    let sum: [u8; 32] = Sha256::digest(&out).into();
    out.extend_from_slice(&sum);
    out
}

/// Checks the frame and returns (parameter hash, payload).
fn unframe(bytes: &[u8], kind: Kind) -> Result<([u8; 32], &[u8]), FormatError> {
    if bytes.len() < 4 || &bytes[..4] != MAGIC {
        return Err(if bytes.len() < 4 {
            FormatError::Truncated("no header".into())
        } else {
            FormatError::BadMagic
        });
    }
    if bytes.len() < HEADER + TRAILER {
        return Err(FormatError::Truncated(format!(
            "{} bytes, header and checksum alone need {}",
            bytes.len(),
            HEADER + TRAILER
        )));
    }
    let version = u16::from_le_bytes([bytes[4], bytes[5]]);
    if version != VERSION {
        return Err(FormatError::Version(version));
    }
    let len = u64::from_le_bytes(bytes[40..48].try_into().unwrap());
    let total = (HEADER as u64)
        .checked_add(len)
        .and_then(|x| x.checked_add(TRAILER as u64));
    match total {
        Some(t) if t == bytes.len() as u64 => {}
        Some(t) if t > bytes.len() as u64 => {
            return Err(FormatError::Truncated(format!(
                "{} of {t} bytes",
                bytes.len()
            )))
        }
        _ => {
            return Err(FormatError::Malformed(format!(
                "length field {len} does not match the {} bytes given",
                bytes.len()
            )))
        }
    }
    let body = bytes.len() - TRAILER;
    let sum: [u8; 32] = Sha256::digest(&bytes[..body]).into();
    if sum[..] != bytes[body..] {
        return Err(FormatError::Checksum);
    }
    let found = Kind::from_u8(bytes[6])
        .ok_or_else(|| FormatError::Malformed(format!("unknown object kind {}", bytes[6])))?;
    if found != kind {
        return Err(FormatError::WrongKind {
            expected: kind.name(),
            found: found.name(),
        });
    }
    Ok((bytes[8..40].try_into().unwrap(), &bytes[HEADER..body]))
}

struct W(Vec<u8>);
impl W {
    fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn f64(&mut self, v: f64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn bytes(&mut self, v: &[u8]) {
        self.0.extend_from_slice(v);
    }
    fn words(&mut self, ctx: &Context, b: &Buffer) {
        for w in ctx.backend.download(b) {
            self.u32(w);
        }
    }
}

struct R<'a> {
    b: &'a [u8],
    at: usize,
}
impl<'a> R<'a> {
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], FormatError> {
        if self.b.len() - self.at < n {
            return Err(FormatError::Malformed(format!(
                "payload ends inside {what}"
            )));
        }
        let s = &self.b[self.at..self.at + n];
        self.at += n;
        Ok(s)
    }
    fn u8(&mut self, what: &str) -> Result<u8, FormatError> {
        Ok(self.take(1, what)?[0])
    }
    fn u32(&mut self, what: &str) -> Result<u32, FormatError> {
        Ok(u32::from_le_bytes(self.take(4, what)?.try_into().unwrap()))
    }
    fn f64(&mut self, what: &str) -> Result<f64, FormatError> {
        Ok(f64::from_le_bytes(self.take(8, what)?.try_into().unwrap()))
    }
    fn seed(&mut self) -> Result<[u8; 32], FormatError> {
        Ok(self.take(32, "a seed")?.try_into().unwrap())
    }
    /// A polynomial over `primes`, each residue checked against its prime.
    fn poly(&mut self, ctx: &Context, primes: &[usize]) -> Result<Buffer, FormatError> {
        let n = ctx.params.n();
        let raw = self.take(primes.len() * n * 4, "a polynomial")?;
        let mut host = vec![0u32; primes.len() * n];
        for (l, chunk) in host.chunks_mut(n).enumerate() {
            let q = ctx.params.ring.moduli[primes[l]].q;
            for (k, w) in chunk.iter_mut().enumerate() {
                let off = (l * n + k) * 4;
                *w = u32::from_le_bytes(raw[off..off + 4].try_into().unwrap());
                if *w >= q {
                    return Err(FormatError::Malformed(format!("residue {w} >= prime {q}")));
                }
            }
        }
        Ok(ctx.backend.upload(&host))
    }
    fn end(&self) -> Result<(), FormatError> {
        if self.at == self.b.len() {
            Ok(())
        } else {
            Err(FormatError::Malformed(format!(
                "{} trailing bytes",
                self.b.len() - self.at
            )))
        }
    }
}

/// Objects that serialize under a context.
pub trait Serial: Sized {
    const KIND: Kind;
    fn write(&self, ctx: &Context, w: &mut Vec<u8>);
    fn read(ctx: &Context, payload: &[u8]) -> Result<Self, FormatError>;

    /// Refuses to write what must not leave this side (a transparent ciphertext). Default: none.
    fn check_write(&self, _ctx: &Context) -> Result<(), CkksError> {
        Ok(())
    }

    /// The framed bytes. Errors: `check_write`'s refusal, or a backend fault while reading device
    /// memory (its values would be garbage).
    fn to_bytes(&self, ctx: &Context) -> Result<Vec<u8>, CkksError> {
        self.check_write(ctx)?;
        let mut w = Vec::new();
        self.write(ctx, &mut w);
        ctx.backend.status()?;
        Ok(frame(Self::KIND, &ctx.params.hash, &w))
    }

    fn from_bytes(ctx: &Context, bytes: &[u8]) -> Result<Self, CkksError> {
        let (hash, payload) = unframe(bytes, Self::KIND)?;
        if hash != ctx.params.hash {
            return Err(FormatError::ParamsMismatch.into());
        }
        Ok(Self::read(ctx, payload)?)
    }
}

/// A secret key's seed, framed under `params` (kind "secret key"). Only the client's
/// `secret.key` holds these bytes.
pub fn secret_seed_to_bytes(params: &Parameters, seed: &SecretSeed) -> Vec<u8> {
    frame(Kind::SecretSeed, &params.hash, &seed.0)
}

/// Reads `secret_seed_to_bytes`'s bytes: kind, checksum, parameter hash and a 32-byte payload
/// checked. The bytes are the caller's to zeroize.
pub fn secret_seed_from_bytes(params: &Parameters, bytes: &[u8]) -> Result<SecretSeed, CkksError> {
    let (hash, payload) = unframe(bytes, Kind::SecretSeed)?;
    if hash != params.hash {
        return Err(FormatError::ParamsMismatch.into());
    }
    let seed: [u8; 32] = payload
        .try_into()
        .map_err(|_| FormatError::Malformed(format!("a {}-byte secret seed", payload.len())))?;
    Ok(SecretSeed(seed))
}

/// Parameters serialize on their own (they define the context).
pub fn parameters_to_bytes(p: &Parameters) -> Vec<u8> {
    let json = serde_json::to_vec(&p.literal).expect("literal serializes");
    frame(Kind::Parameters, &p.hash, &json)
}

pub fn parameters_from_bytes(bytes: &[u8]) -> Result<Arc<Parameters>, CkksError> {
    let (hash, payload) = unframe(bytes, Kind::Parameters)?;
    let lit: ParametersLiteral = serde_json::from_slice(payload)
        .map_err(|e| FormatError::Malformed(format!("parameter literal: {e}")))?;
    let p = Parameters::new(lit)?;
    if p.hash != hash {
        return Err(FormatError::ParamsMismatch.into());
    }
    Ok(p)
}

/// The metadata checks of `Ciphertext::check`, as a format error, before any polynomial is read.
fn check_meta(
    ctx: &Context,
    level: u32,
    slots: u32,
    scale: f64,
) -> Result<(usize, usize), FormatError> {
    let (level, slots) = (level as usize, slots as usize);
    super::ciphertext::check_meta(&ctx.params, level, slots, scale, "object")
        .map_err(|e| FormatError::Malformed(e.to_string()))?;
    Ok((level, slots))
}

impl Ciphertext {
    /// Serializes even a transparent ciphertext (`Ciphertext::is_transparent`): the explicit
    /// opt-in for a caller that means to publish a result in the clear.
    pub fn to_bytes_transparent(&self, ctx: &Context) -> Result<Vec<u8>, CkksError> {
        let mut w = Vec::new();
        self.write(ctx, &mut w);
        ctx.backend.status()?;
        Ok(frame(Kind::Ciphertext, &ctx.params.hash, &w))
    }
}

impl Serial for Ciphertext {
    const KIND: Kind = Kind::Ciphertext;
    /// A transparent ciphertext (no longer depending on the secret key) is refused: it is a
    /// result anyone can read (SEAL refuses them too). `to_bytes_transparent` opts in.
    fn check_write(&self, ctx: &Context) -> Result<(), CkksError> {
        if self.is_transparent(ctx)? {
            return Err(CkksError::Transparent(
                "c1 is zero in some prime (e.g. x - x, or a product with zero), so the message can be read without the secret key; use Ciphertext::to_bytes_transparent to publish it anyway".into(),
            ));
        }
        Ok(())
    }
    fn write(&self, ctx: &Context, out: &mut Vec<u8>) {
        let mut w = W(std::mem::take(out));
        w.u32(self.level as u32);
        w.u32(self.slots as u32);
        w.f64(self.scale);
        w.u8(self.parts.len() as u8);
        let seeded = self.seed.is_some() && self.parts.len() == 2;
        w.u8(seeded as u8);
        if let (true, Some(s)) = (seeded, self.seed) {
            w.bytes(&s);
        }
        for (i, part) in self.parts.iter().enumerate() {
            if !(seeded && i == 1) {
                w.words(ctx, part);
            }
        }
        *out = w.0;
    }
    fn read(ctx: &Context, payload: &[u8]) -> Result<Self, FormatError> {
        let mut r = R { b: payload, at: 0 };
        let (level, slots, scale) = (r.u32("level")?, r.u32("slots")?, r.f64("scale")?);
        let (level, slots) = check_meta(ctx, level, slots, scale)?;
        let nparts = r.u8("part count")? as usize;
        if !(2..=3).contains(&nparts) {
            return Err(FormatError::Malformed(format!("{nparts} parts")));
        }
        let seeded = match r.u8("seed flag")? {
            0 => false,
            1 if nparts == 2 => true,
            v => return Err(FormatError::Malformed(format!("seed flag {v}"))),
        };
        let seed = if seeded { Some(r.seed()?) } else { None };
        let q = ctx.params.q_indices(level);
        let mut parts = Vec::with_capacity(nparts);
        for i in 0..nparts {
            if seeded && i == 1 {
                parts.push(uniform(ctx, &mut Prng::from_seed(seed.unwrap()), &q));
            } else {
                parts.push(r.poly(ctx, &q)?);
            }
        }
        r.end()?;
        Ok(Ciphertext {
            parts,
            level,
            scale,
            slots,
            seed,
        })
    }
}

impl Serial for Plaintext {
    const KIND: Kind = Kind::Plaintext;
    fn write(&self, ctx: &Context, out: &mut Vec<u8>) {
        let mut w = W(std::mem::take(out));
        w.u32(self.level as u32);
        w.u32(self.slots as u32);
        w.f64(self.scale);
        w.words(ctx, &self.poly);
        *out = w.0;
    }
    fn read(ctx: &Context, payload: &[u8]) -> Result<Self, FormatError> {
        let mut r = R { b: payload, at: 0 };
        let (level, slots, scale) = (r.u32("level")?, r.u32("slots")?, r.f64("scale")?);
        let (level, slots) = check_meta(ctx, level, slots, scale)?;
        let poly = r.poly(ctx, &ctx.params.q_indices(level))?;
        r.end()?;
        Ok(Plaintext {
            poly,
            level,
            scale,
            slots,
        })
    }
}

impl Serial for PublicKey {
    const KIND: Kind = Kind::PublicKey;
    fn write(&self, ctx: &Context, out: &mut Vec<u8>) {
        let mut w = W(std::mem::take(out));
        w.bytes(&self.seed);
        w.words(ctx, &self.b);
        *out = w.0;
    }
    fn read(ctx: &Context, payload: &[u8]) -> Result<Self, FormatError> {
        let mut r = R { b: payload, at: 0 };
        let seed = r.seed()?;
        let q = ctx.params.q_indices(ctx.params.max_level());
        let b = r.poly(ctx, &q)?;
        r.end()?;
        let a = uniform(ctx, &mut Prng::from_seed(seed), &q);
        Ok(PublicKey {
            b,
            a,
            seed,
            params_hash: ctx.params.hash,
        })
    }
}

fn write_swk(ctx: &Context, w: &mut W, k: &SwitchingKey) {
    w.bytes(&k.seed);
    w.u32(k.level as u32);
    w.u32(k.b.len() as u32);
    for b in &k.b {
        w.words(ctx, b);
    }
}

/// Reads a switching key: its level fixes its limbs (Q_level ++ P) and digit count.
fn read_swk(ctx: &Context, r: &mut R) -> Result<SwitchingKey, FormatError> {
    let p = &ctx.params;
    let seed = r.seed()?;
    let level = r.u32("key level")? as usize;
    if level > p.max_level() {
        return Err(FormatError::Malformed(format!(
            "key level {level} above the top level {}",
            p.max_level()
        )));
    }
    let digits = p.digits_at(level).len();
    let nd = r.u32("digit count")? as usize;
    if nd != digits {
        return Err(FormatError::Malformed(format!(
            "{nd} digits, a level-{level} key has {digits}"
        )));
    }
    let primes = p.qp_indices(level);
    let b = (0..nd)
        .map(|_| r.poly(ctx, &primes))
        .collect::<Result<Vec<_>, _>>()?;
    let a = expand_uniform(ctx, seed, nd, &primes);
    Ok(SwitchingKey { b, a, seed, level })
}

fn write_galois(ctx: &Context, w: &mut W, g: &GaloisKeys) {
    w.u32(g.keys.len() as u32);
    for (&e, k) in &g.keys {
        w.u32(e as u32);
        write_swk(ctx, w, k);
    }
}

fn read_galois(ctx: &Context, r: &mut R) -> Result<GaloisKeys, FormatError> {
    let count = r.u32("key count")? as usize;
    let two_n = 2 * ctx.params.n();
    let mut g = GaloisKeys::default();
    for _ in 0..count {
        let e = r.u32("Galois element")? as usize;
        if e % 2 == 0 || e >= two_n {
            return Err(FormatError::Malformed(format!("Galois element {e}")));
        }
        let k = read_swk(ctx, r)?;
        if g.keys.insert(e, k).is_some() {
            return Err(FormatError::Malformed(format!(
                "Galois element {e} appears twice"
            )));
        }
    }
    Ok(g)
}

impl Serial for RelinKey {
    const KIND: Kind = Kind::RelinKey;
    fn write(&self, ctx: &Context, out: &mut Vec<u8>) {
        let mut w = W(std::mem::take(out));
        write_swk(ctx, &mut w, &self.0);
        *out = w.0;
    }
    fn read(ctx: &Context, payload: &[u8]) -> Result<Self, FormatError> {
        let mut r = R { b: payload, at: 0 };
        let k = read_swk(ctx, &mut r)?;
        r.end()?;
        Ok(RelinKey(k))
    }
}

impl Serial for GaloisKeys {
    const KIND: Kind = Kind::GaloisKeys;
    fn write(&self, ctx: &Context, out: &mut Vec<u8>) {
        let mut w = W(std::mem::take(out));
        write_galois(ctx, &mut w, self);
        *out = w.0;
    }
    fn read(ctx: &Context, payload: &[u8]) -> Result<Self, FormatError> {
        let mut r = R { b: payload, at: 0 };
        let g = read_galois(ctx, &mut r)?;
        r.end()?;
        Ok(g)
    }
}

impl Serial for EvaluationKeys {
    const KIND: Kind = Kind::EvaluationKeys;
    fn write(&self, ctx: &Context, out: &mut Vec<u8>) {
        let mut w = W(std::mem::take(out));
        w.u8(self.relin.is_some() as u8);
        if let Some(rk) = &self.relin {
            write_swk(ctx, &mut w, &rk.0);
        }
        write_galois(ctx, &mut w, &self.galois);
        w.u8(self.encapsulation.is_some() as u8);
        if let Some(e) = &self.encapsulation {
            w.u32(e.hamming_weight as u32);
            write_swk(ctx, &mut w, &e.to_sparse);
            write_swk(ctx, &mut w, &e.to_dense);
        }
        *out = w.0;
    }
    fn read(ctx: &Context, payload: &[u8]) -> Result<Self, FormatError> {
        let mut r = R { b: payload, at: 0 };
        let relin = match r.u8("relin flag")? {
            0 => None,
            1 => Some(RelinKey(read_swk(ctx, &mut r)?)),
            v => return Err(FormatError::Malformed(format!("relin flag {v}"))),
        };
        let galois = read_galois(ctx, &mut r)?;
        let encapsulation = match r.u8("encapsulation flag")? {
            0 => None,
            1 => {
                let hamming_weight = r.u32("Hamming weight")? as usize;
                if hamming_weight == 0 || hamming_weight > ctx.params.n() {
                    return Err(FormatError::Malformed(format!(
                        "Hamming weight {hamming_weight}"
                    )));
                }
                let to_sparse = read_swk(ctx, &mut r)?;
                if to_sparse.level != 0 {
                    return Err(FormatError::Malformed(
                        "the encapsulation key to the sparse secret must be a level-0 key".into(),
                    ));
                }
                Some(EncapsulationKeys {
                    hamming_weight,
                    to_sparse,
                    to_dense: read_swk(ctx, &mut r)?,
                })
            }
            v => return Err(FormatError::Malformed(format!("encapsulation flag {v}"))),
        };
        r.end()?;
        Ok(EvaluationKeys {
            relin,
            galois,
            encapsulation,
            params_hash: ctx.params.hash,
        })
    }
}
