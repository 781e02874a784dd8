//! The crate's error type and its mapping to HTTP responses, in one place.
//!
//! Every handler returns [`Result`]; [`Error`]'s `IntoResponse` picks the status code and
//! writes the original apiserver's error body `{"errcode": <status>, "description": "..."}`,
//! plus `reason` (the Kubernetes `Status.reason` word: `NotFound`, `AlreadyExists`,
//! `Conflict`, `Gone`, `Invalid`, ...) so clients can branch without parsing text.
//!
//! | error | status |
//! |---|---|
//! | store `NotFound`, unknown resource | 404 |
//! | store `AlreadyExists`, `Conflict`; a refused change (volume with snapshots) | 409 |
//! | store `Gone` (watch start too old) | 410 |
//! | store `Invalid`, body that is not a valid object, bad parameter | 422 |
//! | malformed request (query, JSON syntax, selector) | 400 |
//! | missing or unknown token when auth is on, bad credentials | 401 |
//! | store backend failure, I/O | 500 |

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// Errors of the REST API and of serving it.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An object store operation failed.
    #[error(transparent)]
    Store(#[from] hwameistor_store::Error),

    /// The path names no resource type of `hwameistor.io/v1alpha1`.
    #[error("the server doesn't have a resource type {resource:?}")]
    UnknownResource { resource: String },

    /// A named thing outside the store does not exist (a pool, a disk by node and path).
    #[error("{what} {name:?} not found")]
    NotFound { what: &'static str, name: String },

    /// The request is syntactically malformed.
    #[error("bad request: {reason}")]
    BadRequest { reason: String },

    /// The request is well-formed but its content is invalid (object shape, parameters).
    #[error("invalid {what}: {reason}")]
    Invalid { what: String, reason: String },

    /// The request conflicts with the state of the objects (e.g. deleting a volume that
    /// still has snapshots): 409 with the reason.
    #[error("{reason}")]
    Refused { reason: String },

    /// Authentication is enabled and the request carries no valid token, or login failed.
    #[error("unauthorized: {reason}")]
    Unauthorized { reason: String },

    /// Binding or serving the listener failed.
    #[error("serving the API on {address}: {source}")]
    Serve {
        address: String,
        #[source]
        source: std::io::Error,
    },

    /// Serializing a response failed.
    #[error("encoding {what} as JSON: {source}")]
    Json {
        what: &'static str,
        #[source]
        source: serde_json::Error,
    },
}

/// Result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// The HTTP status of this error (the one mapping of the crate).
    pub fn status(&self) -> StatusCode {
        use hwameistor_store::Error as S;
        match self {
            Error::Store(e) => match e {
                S::NotFound { .. } => StatusCode::NOT_FOUND,
                S::AlreadyExists { .. } | S::Conflict { .. } => StatusCode::CONFLICT,
                S::Gone { .. } => StatusCode::GONE,
                S::Invalid { .. } => StatusCode::UNPROCESSABLE_ENTITY,
                S::Backend { .. } => StatusCode::INTERNAL_SERVER_ERROR,
            },
            Error::UnknownResource { .. } | Error::NotFound { .. } => StatusCode::NOT_FOUND,
            Error::BadRequest { .. } => StatusCode::BAD_REQUEST,
            Error::Invalid { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            Error::Refused { .. } => StatusCode::CONFLICT,
            Error::Unauthorized { .. } => StatusCode::UNAUTHORIZED,
            Error::Serve { .. } | Error::Json { .. } => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The Kubernetes-style reason word.
    pub fn reason(&self) -> &'static str {
        match self {
            Error::Store(e) => e.reason(),
            Error::UnknownResource { .. } | Error::NotFound { .. } => "NotFound",
            Error::BadRequest { .. } => "BadRequest",
            Error::Invalid { .. } => "Invalid",
            Error::Refused { .. } => "Conflict",
            Error::Unauthorized { .. } => "Unauthorized",
            Error::Serve { .. } | Error::Json { .. } => "InternalError",
        }
    }

    /// The JSON error body.
    pub fn body(&self) -> serde_json::Value {
        json!({
            "errcode": self.status().as_u16(),
            "reason": self.reason(),
            "description": self.to_string(),
        })
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            tracing::error!(error = %self, "request failed");
        } else {
            tracing::debug!(error = %self, status = status.as_u16(), "request refused");
        }
        (status, Json(self.body())).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hwameistor_store::Error as S;

    #[test]
    fn store_errors_map_to_kubernetes_statuses() {
        let cases = [
            (
                S::NotFound {
                    kind: "LocalVolume".into(),
                    name: "v".into(),
                },
                404,
                "NotFound",
            ),
            (
                S::AlreadyExists {
                    kind: "LocalVolume".into(),
                    name: "v".into(),
                },
                409,
                "AlreadyExists",
            ),
            (
                S::Conflict {
                    kind: "LocalVolume".into(),
                    name: "v".into(),
                    resource_version: "3".into(),
                    reason: "stale".into(),
                },
                409,
                "Conflict",
            ),
            (
                S::Gone {
                    kind: "LocalVolume".into(),
                    resource_version: "1".into(),
                    reason: "old".into(),
                },
                410,
                "Gone",
            ),
            (
                S::Invalid {
                    kind: "LocalVolume".into(),
                    name: "v".into(),
                    reason: "x".into(),
                },
                422,
                "Invalid",
            ),
        ];
        for (e, code, reason) in cases {
            let e = Error::from(e);
            assert_eq!(e.status().as_u16(), code, "{e}");
            let body = e.body();
            assert_eq!(body["errcode"], json!(code));
            assert_eq!(body["reason"], json!(reason));
            assert!(body["description"].as_str().unwrap().contains("\"v\"") || code == 410);
        }
        assert_eq!(
            Error::UnknownResource {
                resource: "foo".into()
            }
            .status(),
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            Error::BadRequest { reason: "x".into() }.status(),
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            Error::Unauthorized { reason: "x".into() }.status(),
            StatusCode::UNAUTHORIZED
        );
    }
}
