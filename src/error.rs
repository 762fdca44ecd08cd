//! The one error type of the library; grpc/status.rs maps each variant to a gRPC code.
use std::fmt;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Error {
    /// A request field is malformed; `field` is its path, e.g. `lead.attributes[age]`.
    #[error("{field}: {reason}")]
    InvalidArgument { field: String, reason: String },
    #[error("{what} {id:?} not found")]
    NotFound { what: &'static str, id: String },
    /// The request is well formed but the current state forbids it.
    #[error("{0}")]
    FailedPrecondition(String),
    /// A backing service (the store) cannot be reached; the caller may retry.
    #[error("{0}")]
    Unavailable(String),
    /// A bounded resource is full (the memory store's lead limit); the caller may retry later.
    #[error("{0}")]
    ResourceExhausted(String),
    /// A resume cursor older than what the event log still keeps.
    #[error("{0}")]
    OutOfRange(String),
    /// A model artifact was refused; the live model keeps serving.
    #[error("model refused: {0}")]
    ModelRejected(String),
    /// A bug or broken invariant; never the caller's fault.
    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    pub fn invalid(field: impl Into<String>, reason: impl fmt::Display) -> Error {
        Error::InvalidArgument {
            field: field.into(),
            reason: reason.to_string(),
        }
    }

    /// The same error with its field path under `prefix` (`rows[3]` + `lead.id` ->
    /// `rows[3].lead.id`); other kinds unchanged.
    pub fn within(self, prefix: &str) -> Error {
        match self {
            Error::InvalidArgument { field, reason } => Error::InvalidArgument {
                field: format!("{prefix}.{field}"),
                reason,
            },
            other => other,
        }
    }

    pub fn not_found(what: &'static str, id: impl Into<String>) -> Error {
        Error::NotFound {
            what,
            id: id.into(),
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
