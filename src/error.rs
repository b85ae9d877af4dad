//! How domain errors reach CRI clients.
//!
//! Each domain module has its own error enum and says, through [`Classify`],
//! which kind each variant is; `server::to_status` turns kinds into gRPC codes in
//! exactly one place. Messages name the object and the field at fault.

/// The client-visible class of a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The request itself is wrong (a missing or malformed field).
    InvalidArgument,
    /// The named object does not exist.
    NotFound,
    /// An object with the same identity exists.
    AlreadyExists,
    /// The object is not in a state that allows the call.
    FailedPrecondition,
    /// The call's deadline or a timeout it carries expired.
    DeadlineExceeded,
    /// Credentials were missing or refused (by a registry).
    Unauthenticated,
    /// Credentials were accepted but do not allow the access.
    PermissionDenied,
    /// Something crius depends on (a registry) cannot be reached now.
    Unavailable,
    /// Not implemented (yet); the message names what.
    Unimplemented,
    /// Anything else: the node or crius itself failed.
    Internal,
}

/// Implemented by every domain error enum.
pub trait Classify: std::error::Error {
    fn kind(&self) -> ErrorKind;
}
