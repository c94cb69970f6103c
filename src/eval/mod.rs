//! Evaluation: annealed importance sampling for `log Z`, average log-likelihood given `log Z`,
//! variational lower bounds, reconstruction error and pseudo-likelihood, all on batches
//! through the executor.
//!
//! Invariant: every estimate says what it is (exact given `Z`, or a bound) in its type.

mod ais;
pub mod dbn;
pub mod enumerate;
mod ll;
pub mod split;

pub use ais::{ais, ais_summing, base_from_data, base_from_posterior, AisConfig, AisResult, Betas};
pub use ll::{log_likelihood, pseudo_likelihood, reconstruction_error, LogLik};

#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum EvalError {
    #[error(
        "AIS needs a base for real group `{0}`: its units' own (unary) precision must be positive"
    )]
    RealGroup(String),
    #[error("the data has fewer matrices than the model has visible groups")]
    DataGroups,
    #[error("the beta schedule must rise from 0 to 1 with at least two values")]
    Betas,
    #[error("pseudo-likelihood needs binary or spin visibles and every hidden group summed out")]
    PseudoLikelihood,
}
