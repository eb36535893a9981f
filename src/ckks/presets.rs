//! The named parameter sets: compute sets (`params`) and bootstrapping sets (`bootstrap`: compute
//! levels plus the levels bootstrapping spends). The list sits above both, so that `params` stays
//! literal -> checked parameters (Lattigo's `ParametersLiteral` -> `Parameters`) and knows no
//! circuit. Names spell out N, log QP, levels and scale bits; a set that is not 128-bit secure by
//! the HomomorphicEncryption.org table carries `insecure` in its name (`Parameters::new` checks).

use std::sync::Arc;

use super::params::{Parameters, ParametersLiteral};
use super::CkksError;

/// The named presets. Names spell out N, log QP, levels and scale bits.
pub fn presets() -> Vec<ParametersLiteral> {
    vec![
        // Small and fast for tests: NOT secure.
        ParametersLiteral::new("N12_QP450_L6_S40_insecure", 12, 60, 6, 40, 3),
        // 128-bit compute sets, sized like the OpenFHE peer sets (log QP 420 and 700).
        ParametersLiteral::new("N14_QP423_L6_S40", 14, 60, 6, 40, 4),
        ParametersLiteral::new("N15_QP750_L10_S45", 15, 60, 10, 45, 3),
        // 128-bit N=2^16 compute set with the full modulus (26 levels, no bootstrapping).
        ParametersLiteral::new("N16_QP1690_L26_S50", 16, 60, 26, 50, 5),
    ]
    .into_iter()
    // Bootstrapping sets: compute levels plus the levels bootstrapping spends.
    .chain(super::bootstrap::presets().into_iter().map(|b| b.params))
    .collect()
}

/// Whether a set is one of the bootstrapping presets (compute levels plus bootstrapping levels).
pub fn is_bootstrappable(p: &Parameters) -> bool {
    super::bootstrap::preset(&p.literal.name).is_ok_and(|b| b.params == p.literal)
}

impl Parameters {
    /// A named preset (`presets`). Errors: an unknown name (the message lists the known ones),
    /// or `Parameters::new`'s checks.
    pub fn preset(name: &str) -> Result<Arc<Parameters>, CkksError> {
        let all = presets();
        let lit = all
            .iter()
            .find(|p| p.name == name)
            .cloned()
            .ok_or_else(|| {
                CkksError::InvalidParameters(format!(
                    "unknown preset `{name}` (known: {})",
                    all.iter()
                        .map(|p| p.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
            })?;
        Parameters::new(lit)
    }
}
