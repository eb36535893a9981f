//! EvalMod alone (development aid).
use std::f64::consts::PI;
use std::sync::Arc;
use umbra::backend::Device;
use umbra::ckks::bootstrap::{gen_bootstrap_keys, preset, Bootstrapper};
use umbra::ckks::linear_transform::LinearTransform;
use umbra::ckks::*;
use umbra::math::sampling::Prng;

fn main() {
    let pr = preset("N12_QP1184_L2_S50_boot_insecure").unwrap();
    let params = Parameters::new(pr.params.clone()).unwrap();
    let ctx = Context::new(params.clone(), Device::Cpu).unwrap();
    let mut kg = KeyGenerator::new(&ctx);
    let sk = kg.gen_secret_key();
    let evk = gen_bootstrap_keys(&mut kg, &sk, &params, &pr.boot, &[]).unwrap();
    let ev = Evaluator::new(&ctx, Arc::new(evk)).unwrap();
    let b = Bootstrapper::new(&ev, &pr.boot).unwrap();
    let k = pr.boot.k as f64;
    let mut prng = Prng::from_seed([1; 32]);
    let n = b.slots();
    let x: Vec<f64> = (0..n)
        .map(|_| {
            let i = (prng.next_u32() % 33) as f64 - 16.0;
            let m = (prng.next_u64() >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0;
            i + m * 2f64.powi(-17)
        })
        .collect();
    let u: Vec<f64> = x.iter().map(|v| v / k).collect();
    let em_top = params.max_level() - pr.boot.cts_levels;
    let enc = Encoder::new(&ctx);
    let ct = Encryptor::secret(&ctx)
        .encrypt_sk(
            &enc.encode(&u, em_top, Some(params.rescale_factor(em_top)))
                .unwrap(),
            &sk,
        )
        .unwrap();
    let out = b.eval_mod(&ev, &ct).unwrap();
    let got = Decryptor::new(&ctx).decrypt(&out, &sk).unwrap();
    let err = got
        .iter()
        .zip(&x)
        .map(|(g, x)| (g - (2.0 * PI * x).sin()).abs())
        .fold(0.0, f64::max);
    let mean = got
        .iter()
        .zip(&x)
        .map(|(g, x)| (g - (2.0 * PI * x).sin()).abs())
        .sum::<f64>()
        / n as f64;
    println!(
        "EvalMod: max err 2^{:.1}, mean 2^{:.1} (cos units), level {} scale 2^{:.1}",
        err.log2(),
        mean.log2(),
        out.level,
        out.scale.log2()
    );
    // Fresh-encryption noise at that level for reference.
    let ct2 = Encryptor::secret(&ctx)
        .encrypt_sk(
            &enc.encode(&u, em_top, Some(params.rescale_factor(em_top)))
                .unwrap(),
            &sk,
        )
        .unwrap();
    let g2 = Decryptor::new(&ctx).decrypt(&ct2, &sk).unwrap();
    let e2 = g2
        .iter()
        .zip(&u)
        .map(|(g, x)| (g - x).abs())
        .fold(0.0, f64::max);
    println!("fresh at 2^60: max err 2^{:.1}", e2.log2());
    // StC alone on random complex slot values at scale 2^60 (as after EvalMod).
    use umbra::ckks::bootstrap::dft;
    use umbra::math::fft::C64;
    let stc_top = params.compute_top_level() + pr.boot.stc_levels;
    let z: Vec<C64> = (0..n)
        .map(|_| {
            C64::new(
                ((prng.next_u32() % 2000) as f64 - 1000.0) * 1e-3 * 2f64.powi(-14),
                0.0,
            )
        })
        .collect();
    let mut ct = Encryptor::secret(&ctx)
        .encrypt_sk(
            &enc.encode_complex(&z, stc_top, Some(2f64.powi(60)))
                .unwrap(),
            &sk,
        )
        .unwrap();
    let ms = dft::slots_to_coeffs(n, n, pr.boot.stc_levels).unwrap();
    let mut want = z.clone();
    for (i, m) in ms.iter().enumerate() {
        let lt = LinearTransform::new(
            &ev,
            m,
            stc_top - i,
            params.rescale_factor(stc_top - i),
            false,
        )
        .unwrap();
        ct = lt.apply(&ev, &ct).unwrap();
        want = m.apply(&want).unwrap();
    }
    let got = Decryptor::new(&ctx).decrypt_complex(&ct, &sk).unwrap();
    let e = got
        .iter()
        .zip(&want)
        .map(|(g, w)| g.sub(*w).abs())
        .fold(0.0, f64::max);
    println!(
        "StC: max err 2^{:.1} (x 2^17/2pi in m units: 2^{:.1}), scale 2^{:.1}",
        e.log2(),
        e.log2() + 17.0 - 2.65,
        ct.scale.log2()
    );
    // CtS alone on values of size ~16 at scale Q0.
    let q0 = params.rescale_factor(0);
    let top = params.max_level();
    let z: Vec<C64> = (0..n)
        .map(|_| {
            C64::new(
                (prng.next_u32() % 33) as f64 - 16.0,
                (prng.next_u32() % 33) as f64 - 16.0,
            )
        })
        .collect();
    let mut ct = Encryptor::secret(&ctx)
        .encrypt_sk(&enc.encode_complex(&z, top, Some(q0)).unwrap(), &sk)
        .unwrap();
    let ms = dft::coeffs_to_slots(n, n, pr.boot.cts_levels, 1.0 / 32.0).unwrap();
    let mut want = z.clone();
    for (i, m) in ms.iter().enumerate() {
        let lt =
            LinearTransform::new(&ev, m, top - i, params.rescale_factor(top - i), false).unwrap();
        ct = lt.apply(&ev, &ct).unwrap();
        want = m.apply(&want).unwrap();
    }
    let got = Decryptor::new(&ctx).decrypt_complex(&ct, &sk).unwrap();
    let e = got
        .iter()
        .zip(&want)
        .map(|(g, w)| g.sub(*w).abs())
        .fold(0.0, f64::max);
    println!(
        "CtS: max err 2^{:.1} in u units (x K=16 x 2^17: 2^{:.1}), scale 2^{:.1}",
        e.log2(),
        e.log2() + 4.0 + 17.0,
        ct.scale.log2()
    );
    // ModRaise: decrypt the raised ciphertext's coefficients mod Q0 and compare.
    let v: Vec<f64> = (0..n)
        .map(|_| (prng.next_u64() >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0)
        .collect();
    let ct0 = Encryptor::secret(&ctx)
        .encrypt_sk(&enc.encode(&v, 0, None).unwrap(), &sk)
        .unwrap();
    for lv in [1, 5, 10, 15, params.max_level()] {
        let raised = ev.mod_raise_new(&ct0, lv).unwrap();
        let back = ev.drop_to_level_new(&raised, 0).unwrap();
        let got = Decryptor::new(&ctx).decrypt(&back, &sk).unwrap();
        let e = got
            .iter()
            .zip(&v)
            .map(|(g, w)| (g - w).abs())
            .fold(0.0, f64::max);
        println!("ModRaise to {lv} (mod Q0): max err 2^{:.1}", e.log2());
    }
    // In the pipeline: EvalMod on the real CtS output, against sin(2 pi K u_decrypted).
    let x = b.mod_raise(&ev, &ct0).unwrap();
    let parts = b.coeffs_to_slots(&ev, &x).unwrap();
    let dec = Decryptor::new(&ctx);
    {
        let z = dec.decrypt_complex(&x, &sk).unwrap();
        let ms = dft::coeffs_to_slots(n, n, pr.boot.cts_levels, 1.0 / (2.0 * k)).unwrap();
        let mut w = z.clone();
        for m in &ms {
            w = m.apply(&w).unwrap();
        }
        let re_twin: Vec<f64> = w.iter().map(|c| 2.0 * c.re).collect();
        let re = dec.decrypt(&parts[0], &sk).unwrap();
        let e = re
            .iter()
            .zip(&re_twin)
            .map(|(a, b)| (a - b).abs())
            .sum::<f64>()
            / n as f64;
        let zmax = z.iter().map(|c| c.abs()).fold(0.0, f64::max);
        let fr = re_twin
            .iter()
            .map(|v| (k * v - (k * v).round()).abs())
            .sum::<f64>()
            / n as f64;
        let im_twin: Vec<f64> = w.iter().map(|c| 2.0 * c.im).collect();
        let y: Vec<C64> = re_twin
            .iter()
            .zip(&im_twin)
            .map(|(a, b)| C64::new((2.0 * PI * k * a).sin(), (2.0 * PI * k * b).sin()))
            .collect();
        let mut o = y.clone();
        for m in &dft::slots_to_coeffs(n, n, pr.boot.stc_levels).unwrap() {
            o = m.apply(&o).unwrap();
        }
        let f = q0 / (2.0 * PI * ct0.scale);
        let e_chain = o
            .iter()
            .zip(&v)
            .map(|(a, b)| (a.re * f - b).abs())
            .sum::<f64>()
            / n as f64;
        println!(
            "f64 chain from decrypted raise: mean err 2^{:.1}",
            e_chain.log2()
        );
        println!("in-pipeline CtS: mean err 2^{:.1} (u units), |z| max {zmax:.1}, twin frac mean 2^{:.1}", e.log2(), fr.log2());
    }
    for (i, part) in parts.iter().enumerate() {
        let u = dec.decrypt(part, &sk).unwrap();
        let frac: Vec<f64> = u.iter().map(|v| k * v - (k * v).round()).collect();
        let fmax = frac.iter().map(|f| f.abs()).fold(0.0, f64::max);
        let imax = u.iter().map(|v| (k * v).round().abs()).fold(0.0, f64::max);
        let y = b.eval_mod(&ev, part).unwrap();
        let got = dec.decrypt(&y, &sk).unwrap();
        let errs: Vec<f64> = got
            .iter()
            .zip(&u)
            .map(|(g, v)| (g - (2.0 * PI * k * v).sin()).abs())
            .collect();
        let yc = dec.decrypt_complex(&y, &sk).unwrap();
        let imy = yc.iter().map(|z| z.im.abs()).sum::<f64>() / n as f64;
        let uc = dec.decrypt_complex(part, &sk).unwrap();
        let imu = uc.iter().map(|z| z.im.abs()).sum::<f64>() / n as f64;
        println!(
            "part {i}: mean |Im u| 2^{:.1}, mean |Im y| 2^{:.1}",
            imu.log2(),
            imy.log2()
        );
        let emax = errs.iter().cloned().fold(0.0, f64::max);
        let emean = errs.iter().sum::<f64>() / errs.len() as f64;
        println!(
            "part {i}: |I| max {imax}, |frac| max 2^{:.1}, EvalMod err max 2^{:.1} mean 2^{:.1}",
            fmax.log2(),
            emax.log2(),
            emean.log2()
        );
    }
    let y = b.eval_mod_parts(&ev, parts).unwrap();
    let y_dec = dec.decrypt_complex(&y, &sk).unwrap();
    let out = b.slots_to_coeffs(&ev, &y, ct0.scale).unwrap();
    let got = dec.decrypt_complex(&out, &sk).unwrap();
    // f64 StC of the decrypted EvalMod output, read with the same factor.
    let ms = dft::slots_to_coeffs(n, n, pr.boot.stc_levels).unwrap();
    let mut w = y_dec.clone();
    for m in &ms {
        w = m.apply(&w).unwrap();
    }
    let factor = q0 / (2.0 * PI * ct0.scale);
    let twin: Vec<f64> = w.iter().map(|z| z.re * factor).collect();
    let e_stc = got
        .iter()
        .zip(&twin)
        .map(|(g, t)| (g.re - t).abs())
        .sum::<f64>()
        / n as f64;
    let e_twin = twin.iter().zip(&v).map(|(t, x)| (t - x).abs()).sum::<f64>() / n as f64;
    let e_all = got
        .iter()
        .zip(&v)
        .map(|(g, x)| (g.re - x).abs())
        .sum::<f64>()
        / n as f64;
    println!("mean errors: StC vs its twin 2^{:.1}; twin(from decrypted EvalMod) vs input 2^{:.1}; total 2^{:.1}", e_stc.log2(), e_twin.log2(), e_all.log2());
}

#[allow(dead_code)]
fn unused() {}
