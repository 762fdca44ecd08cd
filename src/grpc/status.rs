//! The one place where library errors become gRPC statuses.
use tonic::{Code, Status};

use crate::error::Error;

pub fn code(e: &Error) -> Code {
    match e {
        Error::InvalidArgument { .. } => Code::InvalidArgument,
        Error::NotFound { .. } => Code::NotFound,
        Error::FailedPrecondition(_) | Error::ModelRejected(_) => Code::FailedPrecondition,
        Error::OutOfRange(_) => Code::OutOfRange,
        Error::Unavailable(_) => Code::Unavailable,
        Error::ResourceExhausted(_) => Code::ResourceExhausted,
        Error::Internal(_) => Code::Internal,
    }
}

impl From<Error> for Status {
    fn from(e: Error) -> Status {
        if matches!(e, Error::Internal(_)) {
            tracing::error!(error = %e, "internal error");
        }
        Status::new(code(&e), e.to_string())
    }
}
