use thiserror::Error;

/// Errors of the stores.
#[derive(Debug, Error)]
pub enum StoreError {
    /// The store cannot be reached or refused the write for a reason that may
    /// pass (a lock, an outage): worth retrying.
    #[error("the store is unavailable: {0}")]
    Unavailable(String),
    /// The data or statement was refused and retrying will not help.
    #[error("the store refused the request: {0}")]
    Rejected(String),
    /// A query that is not a single read-only statement.
    #[error("{0}")]
    NotReadOnly(String),
    /// The database file or schema is not what this version of costplane can use.
    #[error("{0}")]
    Schema(String),
    #[error("store I/O error: {0}")]
    Io(#[from] std::io::Error),
}

impl StoreError {
    /// Whether writing the same batch again may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, StoreError::Unavailable(_) | StoreError::Io(_))
    }
}
