use umbra::ckks::params::{presets, Parameters};
fn main() {
    for mut lit in presets() {
        lit.name.push_str("_insecure");
        match Parameters::new(lit.clone()) {
            Ok(p) => {
                println!("{} logqp {:.1} P {:?}", lit.name, p.log_qp, p.p_primes.iter().map(|&q| format!("{:.2}", (q as f64).log2())).collect::<Vec<_>>());
                for (l, g) in p.q_groups.iter().enumerate() {
                    println!("  L{l}: scale 2^{:.3} group {:?}", p.default_scales[l].log2(), g.iter().map(|&q| format!("{:.2}", (q as f64).log2())).collect::<Vec<_>>());
                }
            }
            Err(e) => println!("{}: {e}", lit.name),
        }
    }
}
