//! Bootstrapping at every slot count and at several CoeffsToSlots / SlotsToCoeffs level splits
//! (issue 12: N/4 slots took the full-slot path, since its sparse DFT length 2n equals N/2, and
//! decrypted to values in the thousands). Every count must bootstrap as precisely as its
//! neighbours, real and complex, at N = 2^12 and at N = 2^13.

mod common;

use std::sync::Arc;

use common::{device, uniform};
use umbra::ckks::bootstrap::{self, gen_bootstrap_keys_at, BootstrapLiteral, Bootstrapper};
use umbra::ckks::encoder::{precision_bits, precision_bits_min};
use umbra::ckks::params::ParametersLiteral;
use umbra::ckks::{
    Context, Decryptor, Encoder, Encryptor, Evaluator, KeyGenerator, Parameters, Plaintext,
    SecretKey,
};
use umbra::math::fft::C64;

/// One parameter set with its secret key; keys for each literal are made as needed.
struct Ring {
    ctx: Arc<Context>,
    sk: SecretKey,
    kg: KeyGenerator,
}

fn ring(residual: &ParametersLiteral, boot: &BootstrapLiteral) -> Ring {
    let params = Parameters::new(boot.parameters_literal(residual)).unwrap();
    let ctx = Context::new(params, device()).unwrap();
    let mut kg = KeyGenerator::new(&ctx);
    let sk = kg.gen_secret_key();
    Ring { ctx, sk, kg }
}

/// Bootstraps random values (uniform in [-1, 1], complex if asked) in `2^log_slots` slots and
/// returns (mean, min) precision in bits over real and imaginary parts.
fn bootstrap_bits(
    r: &mut Ring,
    boot: &BootstrapLiteral,
    log_slots: u32,
    complex: bool,
) -> (f64, f64) {
    let lit = BootstrapLiteral {
        log_slots: Some(log_slots),
        ..boot.clone()
    };
    let p = r.ctx.params.clone();
    // Keys for exactly this literal: what it asks for must be enough.
    let evk = gen_bootstrap_keys_at(&mut r.kg, &r.sk, &p, &lit, &[]).unwrap();
    let ev = Evaluator::new(&r.ctx, Arc::new(evk)).unwrap();
    let b: Bootstrapper<Plaintext> = Bootstrapper::new(&ev, &lit).unwrap();
    let n = 1usize << log_slots;
    assert_eq!(b.slots(), n);
    let seed = log_slots as u8;
    let re = uniform(n, seed);
    let im = if complex {
        uniform(n, seed + 100)
    } else {
        vec![0.0; n]
    };
    let values: Vec<C64> = re.iter().zip(&im).map(|(&a, &b)| C64::new(a, b)).collect();
    let pt = Encoder::new(&r.ctx)
        .encode_complex(&values, 0, None)
        .unwrap();
    let ct = Encryptor::secret(&r.ctx).encrypt_sk(&pt, &r.sk).unwrap();
    let out = b.bootstrap(&ev, &ct).unwrap();
    assert_eq!(out.level, p.compute_top_level());
    let got = Decryptor::new(&r.ctx).decrypt_complex(&out, &r.sk).unwrap();
    let flat = |v: &[C64]| -> Vec<f64> { v.iter().flat_map(|z| [z.re, z.im]).collect() };
    let (g, w) = (flat(&got[..n]), flat(&values));
    let bits = (precision_bits(&g, &w), precision_bits_min(&g, &w));
    eprintln!(
        "N=2^{} cts {} stc {} slots 2^{log_slots} {}: {:.1} bits mean, {:.1} min",
        p.log_n(),
        boot.cts_levels,
        boot.stc_levels,
        if complex { "complex" } else { "real" },
        bits.0,
        bits.1
    );
    bits
}

fn n12() -> (ParametersLiteral, BootstrapLiteral) {
    let preset = bootstrap::preset("N12_QP1184_L2_S50_boot_insecure").unwrap();
    let residual = ParametersLiteral {
        name: "N12_L2_S50_sweep_insecure".into(),
        extra_log_q: Vec::new(),
        ..preset.params
    };
    (residual, preset.boot)
}

/// Every slot count at N = 2^12, real and complex: each as precise as the full-slot bootstrap
/// (within 3 bits of it) and above the bar the other bootstrapping tests set.
///
/// With the arcsine correction: without it, EvalMod's sin(2 pi x) / 2 pi = x - (2 pi)^2 x^3 / 6
/// errs by 6.3e-6 |c|^3 at this preset's Q_0 / D0 = 2^10 on each *coefficient* c, and few slots
/// mean coefficients as large as the values (one slot: c = m), so 2^0..2^4 slots land at 22-25
/// bits where random full-slot vectors (small coefficients) reach 27. `every_slot_count_at_n13`
/// covers the literal without it.
#[test]
fn every_slot_count_at_n12() {
    let (residual, boot) = n12();
    let boot = BootstrapLiteral {
        arcsine_degree: 3,
        ..boot
    };
    let mut r = ring(&residual, &boot);
    let full = bootstrap_bits(&mut r, &boot, 11, false).0;
    for log_slots in 0..=11 {
        for complex in [false, true] {
            let (mean, min) = bootstrap_bits(&mut r, &boot, log_slots, complex);
            assert!(
                mean >= 20.0 && min >= 14.0 && mean >= full - 3.0,
                "2^{log_slots} slots ({}): {mean:.1} / {min:.1} bits, full slots {full:.1}",
                if complex { "complex" } else { "real" }
            );
        }
    }
}

/// Every slot count at N = 2^13 (real; complex at N/4, N/8 and full).
#[test]
fn every_slot_count_at_n13() {
    let (residual, boot) = n12();
    let residual = ParametersLiteral {
        name: "N13_L2_S50_sweep_insecure".into(),
        log_n: 13,
        ..residual
    };
    let mut r = ring(&residual, &boot);
    for log_slots in 0..=12 {
        for complex in [false, true] {
            if complex && log_slots < 10 {
                continue;
            }
            let (mean, min) = bootstrap_bits(&mut r, &boot, log_slots, complex);
            assert!(
                mean >= 20.0 && min >= 14.0,
                "N=2^13, 2^{log_slots} slots: {mean:.1} / {min:.1} bits"
            );
        }
    }
}

/// Level splits of CoeffsToSlots and SlotsToCoeffs, at N/4, N/8 and full slots: one level each
/// (all FFT stages merged), more levels than stages (identity groups), and the ones between.
#[test]
fn level_splits_at_n12() {
    let (residual, boot) = n12();
    for (cts, stc) in [(1, 1), (2, 1), (2, 2), (4, 3), (12, 12)] {
        let lit = BootstrapLiteral {
            cts_levels: cts,
            stc_levels: stc,
            ..boot.clone()
        };
        let mut r = ring(&residual, &lit);
        // One level for all 10-11 stages means thousands of diagonals: keep those to few slots.
        let counts: &[u32] = if cts == 1 || stc == 1 {
            &[4, 10]
        } else {
            &[9, 10, 11]
        };
        for &log_slots in counts {
            let (mean, min) = bootstrap_bits(&mut r, &lit, log_slots, true);
            assert!(
                mean >= 18.0 && min >= 12.0,
                "cts {cts} stc {stc}, 2^{log_slots} slots: {mean:.1} / {min:.1} bits"
            );
        }
    }
}

#[test]
fn degenerate_literals_are_errors() {
    let (residual, boot) = n12();
    let p = Parameters::new(boot.parameters_literal(&residual)).unwrap();
    let sim = umbra::ckks::Simulator::new(&p);
    for lit in [
        BootstrapLiteral {
            log_slots: Some(12),
            ..boot.clone()
        },
        BootstrapLiteral {
            k: 0,
            ..boot.clone()
        },
        BootstrapLiteral {
            mod_degree: 1,
            ..boot.clone()
        },
        BootstrapLiteral {
            arcsine_degree: 4,
            ..boot.clone()
        },
    ] {
        assert!(Bootstrapper::new(&sim, &lit).is_err(), "{lit:?}");
    }
    // No CoeffsToSlots or SlotsToCoeffs level: refused before any parameters are built.
    for lit in [
        BootstrapLiteral {
            cts_levels: 0,
            ..boot.clone()
        },
        BootstrapLiteral {
            stc_levels: 0,
            ..boot.clone()
        },
        BootstrapLiteral {
            cts_log_q: 0,
            ..boot.clone()
        },
        BootstrapLiteral {
            eval_mod_log_q: 70,
            ..boot.clone()
        },
    ] {
        assert!(lit.validate().is_err(), "{lit:?}");
        let refused =
            std::panic::catch_unwind(
                || match Parameters::new(lit.parameters_literal(&residual)) {
                    Ok(p) => Bootstrapper::new(&umbra::ckks::Simulator::new(&p), &lit).is_err(),
                    Err(_) => true,
                },
            );
        assert_eq!(refused.ok(), Some(true), "{lit:?}");
    }
}
