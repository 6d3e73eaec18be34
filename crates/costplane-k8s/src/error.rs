use thiserror::Error;

/// Errors of Kubernetes allocation and FOCUS import.
#[derive(Debug, Error)]
pub enum K8sError {
    /// A `[kubernetes]` setting that cannot be used.
    #[error("kubernetes config: {0}")]
    Config(String),
    /// Stored Kubernetes usage that cannot be read back.
    #[error("kubernetes usage: {0}")]
    Usage(String),
    /// A FOCUS file that cannot be read at all (I/O, gzip, manifest).
    #[error("{file}: {message}")]
    Read { file: String, message: String },
    /// A FOCUS file whose header lacks a mandatory column.
    #[error("{file}: missing mandatory column {column}")]
    MissingColumn { file: String, column: String },
    /// One bad cell: the file, the 1-based data row (the header is row 0) and the column.
    #[error("{file}: row {row}, column {column}: {message}")]
    Cell { file: String, row: usize, column: String, message: String },
}
