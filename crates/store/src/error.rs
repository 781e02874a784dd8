//! The one error type of the store, shared by both backends.
//!
//! Every variant carries the object's kind and name (`namespace/name` for namespaced
//! objects) so a log line says which object failed. The mapping from Kubernetes API status
//! codes lives in [`crate::kube_backend`], in one place.

/// Errors of every store operation, whichever backend serves it.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The object does not exist (HTTP 404).
    #[error("{kind} {name:?} not found")]
    NotFound { kind: String, name: String },

    /// `create` of a name that already exists (HTTP 409, reason AlreadyExists).
    #[error("{kind} {name:?} already exists")]
    AlreadyExists { kind: String, name: String },

    /// Optimistic concurrency failure: the caller's `resourceVersion` is not the stored one
    /// (HTTP 409, reason Conflict). Re-read the object and retry.
    #[error("conflict writing {kind} {name:?} at resourceVersion {resource_version:?}: {reason}")]
    Conflict {
        kind: String,
        name: String,
        /// The resourceVersion the caller sent.
        resource_version: String,
        reason: String,
    },

    /// The requested watch start version is no longer (or not yet) retained (HTTP 410).
    /// Re-list and watch from the list's resourceVersion.
    #[error("resourceVersion {resource_version:?} of {kind} is gone: {reason}")]
    Gone {
        kind: String,
        resource_version: String,
        reason: String,
    },

    /// The request is malformed: missing name, missing resourceVersion on replace, bad label
    /// selector, adding finalizers to an object being deleted (HTTP 400/422).
    #[error("invalid request for {kind} {name:?}: {reason}")]
    Invalid {
        kind: String,
        name: String,
        reason: String,
    },

    /// The backend failed (database, serialization, transport, other API errors).
    #[error("store backend failed for {kind} {name:?} during {operation}: {source}")]
    Backend {
        kind: String,
        name: String,
        operation: &'static str,
        #[source]
        source: Box<BackendError>,
    },
}

/// The underlying cause of an [`Error::Backend`].
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error("embedded database: {0}")]
    Database(#[from] redb::Error),
    #[error("json: {0}")]
    Json(#[from] serde_json::Error),
    #[error("kubernetes api: {0}")]
    Kube(#[from] kube::Error),
    #[error("background task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
    #[error("{0}")]
    Other(String),
}

impl Error {
    /// An [`Error::Backend`].
    pub fn backend(
        kind: impl Into<String>,
        name: impl Into<String>,
        operation: &'static str,
        source: impl Into<BackendError>,
    ) -> Self {
        Error::Backend {
            kind: kind.into(),
            name: name.into(),
            operation,
            source: Box::new(source.into()),
        }
    }

    /// The short machine-readable reason, for metric labels and logs.
    pub fn reason(&self) -> &'static str {
        match self {
            Error::NotFound { .. } => "NotFound",
            Error::AlreadyExists { .. } => "AlreadyExists",
            Error::Conflict { .. } => "Conflict",
            Error::Gone { .. } => "Gone",
            Error::Invalid { .. } => "Invalid",
            Error::Backend { .. } => "Backend",
        }
    }

    /// The HTTP status code the Kubernetes API server would use for this error.
    pub fn http_status(&self) -> u16 {
        match self {
            Error::NotFound { .. } => 404,
            Error::AlreadyExists { .. } | Error::Conflict { .. } => 409,
            Error::Gone { .. } => 410,
            Error::Invalid { .. } => 422,
            Error::Backend { .. } => 500,
        }
    }

    pub fn is_not_found(&self) -> bool {
        matches!(self, Error::NotFound { .. })
    }

    pub fn is_conflict(&self) -> bool {
        matches!(self, Error::Conflict { .. })
    }

    pub fn is_gone(&self) -> bool {
        matches!(self, Error::Gone { .. })
    }
}

/// Result with the store's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
