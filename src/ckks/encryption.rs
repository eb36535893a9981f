//! Encryption (public or secret key; secret-key ciphertexts carry a seed for c1) and decryption.

use std::sync::Arc;

use super::encoder::Encoder;
use super::keys::{check_hash, small_to_ntt, uniform};
use super::{Ciphertext, CkksError, Context, Plaintext, PublicKey, SecretKey};
use crate::math::fft::C64;
use crate::math::sampling::Prng;

pub struct Encryptor {
    ctx: Arc<Context>,
    pk: Option<PublicKey>,
    prng: Prng,
}

impl Encryptor {
    /// Public-key encryptor.
    pub fn new(ctx: &Arc<Context>, pk: &PublicKey) -> Result<Self, CkksError> {
        check_hash(ctx, &pk.params_hash)?;
        Ok(Encryptor {
            ctx: ctx.clone(),
            pk: Some(pk.clone()),
            prng: Prng::from_os(),
        })
    }

    /// Secret-key-only encryptor (client side).
    pub fn secret(ctx: &Arc<Context>) -> Self {
        Encryptor {
            ctx: ctx.clone(),
            pk: None,
            prng: Prng::from_os(),
        }
    }

    /// A reproducible secret-key encryptor (tests and the backend self-test only).
    pub fn secret_from_seed(ctx: &Arc<Context>, seed: [u8; 32]) -> Self {
        Encryptor {
            ctx: ctx.clone(),
            pk: None,
            prng: Prng::from_seed(seed),
        }
    }

    /// Public-key encryption: (b u + e0 + m, a u + e1) with u ternary.
    pub fn encrypt(&mut self, pt: &Plaintext) -> Result<Ciphertext, CkksError> {
        let pk = self
            .pk
            .as_ref()
            .ok_or_else(|| CkksError::MissingKey("public key (use encrypt_sk)".into()))?;
        pt.check(&self.ctx.params)?;
        let p = &self.ctx.params;
        let be = &self.ctx.backend;
        let q = p.q_indices(pt.level);
        let n = p.n();
        let u = small_to_ntt(&self.ctx, &self.prng.ternary(n), &q);
        let mut c0 = small_to_ntt(&self.ctx, &self.prng.cbd(n), &q);
        let mut c1 = small_to_ntt(&self.ctx, &self.prng.cbd(n), &q);
        let b = be.slice_limbs(&pk.b, 0, q.len());
        let a = be.slice_limbs(&pk.a, 0, q.len());
        be.mul_add_assign(&mut c0, &b, &u, &q);
        be.mul_add_assign(&mut c1, &a, &u, &q);
        be.add_assign(&mut c0, &pt.poly, &q);
        Ok(Ciphertext {
            parts: vec![c0, c1],
            level: pt.level,
            scale: pt.scale,
            slots: pt.slots,
            seed: None,
        })
    }

    /// Secret-key encryption: (-a s + e + m, a) with a expanded from a fresh seed.
    pub fn encrypt_sk(&mut self, pt: &Plaintext, sk: &SecretKey) -> Result<Ciphertext, CkksError> {
        check_hash(&self.ctx, &sk.params_hash)?;
        pt.check(&self.ctx.params)?;
        let p = &self.ctx.params;
        let be = &self.ctx.backend;
        let q = p.q_indices(pt.level);
        let seed = self.prng.seed32();
        let a = uniform(&self.ctx, &mut Prng::from_seed(seed), &q);
        let mut c0 = small_to_ntt(&self.ctx, &self.prng.cbd(p.n()), &q);
        let s = be.slice_limbs(&sk.ntt, 0, q.len());
        let as_ = be.mul(&a, &s, &q);
        be.sub_assign(&mut c0, &as_, &q);
        be.add_assign(&mut c0, &pt.poly, &q);
        Ok(Ciphertext {
            parts: vec![c0, a],
            level: pt.level,
            scale: pt.scale,
            slots: pt.slots,
            seed: Some(seed),
        })
    }
}

/// Decryption reads the first few primes of a ciphertext (a rescaled message is far below their
/// product) and more only when the message needs them (`Encoder::decode_poly`).
pub struct Decryptor {
    ctx: Arc<Context>,
    encoder: Encoder,
}

impl Decryptor {
    pub fn new(ctx: &Arc<Context>) -> Self {
        Decryptor {
            ctx: ctx.clone(),
            encoder: Encoder::new(ctx),
        }
    }

    /// Decrypts and decodes to complex slots.
    pub fn decrypt_complex(&self, ct: &Ciphertext, sk: &SecretKey) -> Result<Vec<C64>, CkksError> {
        check_hash(&self.ctx, &sk.params_hash)?;
        let be = &self.ctx.backend;
        ct.check(&self.ctx.params)?;
        // m = c0 + c1 s (+ c2 s^2) over as many primes as decoding asks for (few, unless a
        // value needs more: `Encoder::decode_poly`).
        let message = |limbs: usize| -> Result<Vec<u32>, CkksError> {
            let idx: Vec<usize> = (0..limbs).collect();
            let s = be.slice_limbs(&sk.ntt, 0, limbs);
            let mut m = be.slice_limbs(&ct.parts[0], 0, limbs);
            let c1 = be.slice_limbs(&ct.parts[1], 0, limbs);
            be.mul_add_assign(&mut m, &c1, &s, &idx);
            if ct.parts.len() == 3 {
                let s2 = be.mul(&s, &s, &idx);
                let c2 = be.slice_limbs(&ct.parts[2], 0, limbs);
                be.mul_add_assign(&mut m, &c2, &s2, &idx);
            }
            be.intt(&mut m, &idx);
            let host = be.download(&m);
            // A GPU error anywhere since the backend opened makes these values meaningless.
            be.status()?;
            Ok(host)
        };
        self.encoder
            .decode_poly(ct.level, ct.scale, ct.slots, message)
    }

    /// Decrypts and decodes to real slots.
    pub fn decrypt(&self, ct: &Ciphertext, sk: &SecretKey) -> Result<Vec<f64>, CkksError> {
        Ok(self
            .decrypt_complex(ct, sk)?
            .into_iter()
            .map(|c| c.re)
            .collect())
    }

    /// Decrypts to a plaintext at the ciphertext's level (all limbs).
    pub fn decrypt_to_plaintext(
        &self,
        ct: &Ciphertext,
        sk: &SecretKey,
    ) -> Result<Plaintext, CkksError> {
        check_hash(&self.ctx, &sk.params_hash)?;
        let p = &self.ctx.params;
        ct.check(p)?;
        let be = &self.ctx.backend;
        let q = p.q_indices(ct.level);
        let s = be.slice_limbs(&sk.ntt, 0, q.len());
        let mut m = ct.parts[0].clone();
        be.mul_add_assign(&mut m, &ct.parts[1], &s, &q);
        if ct.parts.len() == 3 {
            let s2 = be.mul(&s, &s, &q);
            be.mul_add_assign(&mut m, &ct.parts[2], &s2, &q);
        }
        Ok(Plaintext {
            poly: m,
            level: ct.level,
            scale: ct.scale,
            slots: ct.slots,
        })
    }
}
