use thiserror::Error;

/// Errors of the cost engine.
#[derive(Debug, Error)]
pub enum CostError {
    /// A price catalog or override file that cannot be used.
    #[error("price catalog error: {0}")]
    Catalog(String),
}
