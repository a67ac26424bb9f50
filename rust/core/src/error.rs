//! Errors of the core crate. The bindings map every variant to a Python exception.

use thiserror::Error;

/// Everything that can go wrong in the core crate on user input.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum CoreError {
    /// An argument has the wrong shape, size or value (a `ValueError` in Python).
    #[error("{argument}: {message}")]
    InvalidArgument {
        argument: &'static str,
        message: String,
    },
    /// An exact count does not fit into 64 bits (an `OverflowError` in Python).
    #[error("{0}")]
    Overflow(String),
    /// The computation was interrupted (Ctrl-C reported by the caller).
    #[error("interrupted")]
    Interrupted,
}

impl CoreError {
    /// Shorthand for [`CoreError::InvalidArgument`].
    pub fn invalid(argument: &'static str, message: impl Into<String>) -> Self {
        CoreError::InvalidArgument {
            argument,
            message: message.into(),
        }
    }
}

/// Result type of the core crate.
pub type CoreResult<T> = Result<T, CoreError>;
