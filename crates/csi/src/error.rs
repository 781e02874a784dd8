//! The crate's error type and its mapping to gRPC status codes.
//!
//! Every failure inside the services is an [`Error`]; the one conversion
//! `impl From<Error> for tonic::Status` below is the only place that decides which gRPC code
//! a failure gets, following the error tables of the CSI spec:
//!
//! | condition | code |
//! |---|---|
//! | missing or ill-formed request field, bad StorageClass parameter | `INVALID_ARGUMENT` (names the field / parameter) |
//! | unknown volume, snapshot, node, source, or path | `NOT_FOUND` |
//! | same name, incompatible request; published incompatibly | `ALREADY_EXISTS` |
//! | no pool can hold the volume | `RESOURCE_EXHAUSTED` |
//! | capacity outside what we can provide | `OUT_OF_RANGE` |
//! | state forbids it (published elsewhere, in use, wrong node) | `FAILED_PRECONDITION` |
//! | another operation on the same volume is in flight; write conflict; stale list token | `ABORTED` |
//! | not ready yet / timed out waiting for the reconcilers | `UNAVAILABLE` |
//! | the key does not open an encrypted volume | `PERMISSION_DENIED` |
//! | RPC or feature we do not provide | `UNIMPLEMENTED` |
//! | backend or host failure | `INTERNAL` |

use hwameistor_core::params::ParamError;

use crate::backend::BackendError;
use crate::node::NodeOpsError;

/// Result of the CSI services.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why a CSI call failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{field} is required")]
    MissingField { field: &'static str },
    #[error("{field} is invalid: {reason}")]
    InvalidField { field: &'static str, reason: String },
    #[error("invalid StorageClass parameter: {0}")]
    Param(#[from] ParamError),
    #[error("volume {id:?} not found")]
    VolumeNotFound { id: String },
    #[error("snapshot {id:?} not found")]
    SnapshotNotFound { id: String },
    #[error("node {node:?} not found")]
    NodeNotFound { node: String },
    #[error("path {path:?} not found")]
    PathNotFound { path: String },
    #[error("{what} {name:?} already exists with different properties: {reason}")]
    AlreadyExists {
        what: &'static str,
        name: String,
        reason: String,
    },
    #[error("not enough storage: {reason}")]
    Exhausted { reason: String },
    #[error("capacity out of range: {reason}")]
    OutOfRange { reason: String },
    #[error("{reason}")]
    Precondition { reason: String },
    #[error("an operation on {id:?} is already in progress")]
    InFlight { id: String },
    #[error("starting_token {token:?} is invalid or stale; list again from the start")]
    BadToken { token: String },
    #[error("{reason}")]
    NotReady { reason: String },
    #[error("{what} is not supported by {driver}")]
    Unsupported { what: String, driver: &'static str },
    #[error("object store: {context}: {source}")]
    Backend {
        context: String,
        #[source]
        source: BackendError,
    },
    #[error("node operation {op} failed: {source}")]
    Node {
        op: &'static str,
        #[source]
        source: NodeOpsError,
    },
}

impl Error {
    /// Wrap a backend error with what we were doing.
    pub fn backend(context: impl Into<String>) -> impl FnOnce(BackendError) -> Error {
        let context = context.into();
        move |source| Error::Backend { context, source }
    }

    /// Wrap a node-side error with the operation.
    pub fn node(op: &'static str) -> impl FnOnce(NodeOpsError) -> Error {
        move |source| Error::Node { op, source }
    }

    /// The gRPC code this error maps to.
    pub fn code(&self) -> tonic::Code {
        use tonic::Code;
        match self {
            Error::MissingField { .. } | Error::InvalidField { .. } | Error::Param(_) => {
                Code::InvalidArgument
            }
            Error::VolumeNotFound { .. }
            | Error::SnapshotNotFound { .. }
            | Error::NodeNotFound { .. }
            | Error::PathNotFound { .. } => Code::NotFound,
            Error::AlreadyExists { .. } => Code::AlreadyExists,
            Error::Exhausted { .. } => Code::ResourceExhausted,
            Error::OutOfRange { .. } => Code::OutOfRange,
            Error::Precondition { .. } => Code::FailedPrecondition,
            Error::InFlight { .. } | Error::BadToken { .. } => Code::Aborted,
            Error::NotReady { .. } => Code::Unavailable,
            Error::Unsupported { .. } => Code::Unimplemented,
            Error::Backend { source, .. } => match source {
                // Lost an optimistic-concurrency race: the caller retries.
                BackendError::Conflict(_) => Code::Aborted,
                BackendError::NotFound(_) => Code::NotFound,
                BackendError::AlreadyExists(_) => Code::Aborted,
                BackendError::Other(_) => Code::Internal,
            },
            Error::Node { source, .. } => match source {
                NodeOpsError::NotFound(_) => Code::NotFound,
                NodeOpsError::Busy(_) => Code::FailedPrecondition,
                NodeOpsError::WrongKey(_) => Code::PermissionDenied,
                _ => Code::Internal,
            },
        }
    }
}

impl From<Error> for tonic::Status {
    fn from(e: Error) -> Self {
        let code = e.code();
        if code == tonic::Code::Internal {
            tracing::warn!(error = %e, "CSI call failed");
        } else {
            tracing::debug!(error = %e, ?code, "CSI call refused");
        }
        tonic::Status::new(code, e.to_string())
    }
}
