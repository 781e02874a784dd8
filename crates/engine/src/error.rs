//! The one error type of the engine crate.
//!
//! Every variant carries enough context (operation, pool, volume, device) for a human to see
//! what failed without reading logs. Callers that must react to a specific condition match on
//! the variant: placement code looks for [`Error::InsufficientSpace`], the node agent treats
//! [`Error::Unsupported`] as permanent, and [`Error::Command`] keeps the failing command's
//! stderr (the LocalStorageNode `ExpandFailure` condition shows it).

use std::fmt;
use std::path::PathBuf;

use hwameistor_core::names::NameError;

use crate::types::EngineKind;

/// Where an operation was acting: any of pool, volume and device, for messages.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Context {
    pub pool: Option<String>,
    pub volume: Option<String>,
    pub device: Option<String>,
}

impl Context {
    /// Context naming a pool.
    pub fn pool(pool: &str) -> Self {
        Context {
            pool: Some(pool.to_owned()),
            ..Default::default()
        }
    }

    /// Context naming a volume in a pool.
    pub fn volume(pool: &str, volume: &str) -> Self {
        Context {
            pool: Some(pool.to_owned()),
            volume: Some(volume.to_owned()),
            device: None,
        }
    }

    /// Context naming a device (a disk, a loop device, a mount point).
    pub fn device(device: impl fmt::Display) -> Self {
        Context {
            device: Some(device.to_string()),
            ..Default::default()
        }
    }

    /// Add a device to this context.
    pub fn with_device(mut self, device: impl fmt::Display) -> Self {
        self.device = Some(device.to_string());
        self
    }
}

impl fmt::Display for Context {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        if let Some(p) = &self.pool {
            parts.push(format!("pool {p}"));
        }
        if let Some(v) = &self.volume {
            parts.push(format!("volume {v}"));
        }
        if let Some(d) = &self.device {
            parts.push(format!("device {d}"));
        }
        if parts.is_empty() {
            f.write_str("-")
        } else {
            f.write_str(&parts.join(", "))
        }
    }
}

/// Errors of the volume engines, the fs helpers and the QoS helpers.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A name was refused before it reached a command line or a path.
    #[error("invalid name: {0}")]
    InvalidName(#[from] NameError),

    /// An argument is out of range or inconsistent (zero size, empty disk list, ...).
    #[error("{op} ({ctx}): invalid argument: {message}")]
    InvalidArgument {
        op: &'static str,
        ctx: Context,
        message: String,
    },

    /// A host command failed (the source keeps argv, exit code and stderr).
    #[error("{op} ({ctx}): {source}")]
    Command {
        op: &'static str,
        ctx: Context,
        #[source]
        source: Box<hwameistor_exec::Error>,
    },

    /// A command's output could not be understood.
    #[error("{op} ({ctx}): cannot parse {message}")]
    Parse {
        op: &'static str,
        ctx: Context,
        /// What could not be parsed and why (`output of lvs: ...`).
        message: String,
    },

    /// A file or sysfs/cgroup operation failed.
    #[error("{op} ({ctx}): {path}: {source}", path = path.display())]
    Io {
        op: &'static str,
        ctx: Context,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// The pool does not exist (or is not ours).
    #[error("{op}: pool {pool} not found")]
    PoolNotFound { op: &'static str, pool: String },

    /// The volume does not exist in the pool (or is not ours).
    #[error("{op}: volume {volume} not found in pool {pool}")]
    VolumeNotFound {
        op: &'static str,
        pool: String,
        volume: String,
    },

    /// The pool has not enough free space for the request. Placement code recognises this.
    #[error(
        "{op}: pool {pool} has {available} bytes free, volume {volume} needs {requested} bytes"
    )]
    InsufficientSpace {
        op: &'static str,
        pool: String,
        volume: String,
        requested: u64,
        available: u64,
    },

    /// Volumes never shrink.
    #[error(
        "{op}: volume {volume} in pool {pool} is {current} bytes; shrinking to {requested} bytes is refused"
    )]
    Shrink {
        op: &'static str,
        pool: String,
        volume: String,
        current: u64,
        requested: u64,
    },

    /// The host holds something that contradicts the request: an existing volume of another
    /// size or layout, a device with another filesystem, a mount point used by another
    /// device, a volume group or volume that is not tagged as ours.
    #[error("{op} ({ctx}): conflict: {message}")]
    Conflict {
        op: &'static str,
        ctx: Context,
        message: String,
    },

    /// The engine (or this host) does not implement the operation.
    #[error("{op} is not supported by the {engine} engine{}", detail.as_deref().map(|d| format!(": {d}")).unwrap_or_default())]
    Unsupported {
        op: &'static str,
        engine: EngineKind,
        detail: Option<String>,
    },
}

impl Error {
    /// Wrap a runner error with context.
    pub fn command(op: &'static str, ctx: Context, source: hwameistor_exec::Error) -> Self {
        Error::Command {
            op,
            ctx,
            source: Box::new(source),
        }
    }

    /// Wrap an io error with context.
    pub fn io(
        op: &'static str,
        ctx: Context,
        path: impl Into<PathBuf>,
        source: std::io::Error,
    ) -> Self {
        Error::Io {
            op,
            ctx,
            path: path.into(),
            source,
        }
    }

    /// An unsupported operation without further detail.
    pub fn unsupported(op: &'static str, engine: EngineKind) -> Self {
        Error::Unsupported {
            op,
            engine,
            detail: None,
        }
    }

    /// The stderr of the failing command, if this error comes from one (for conditions such
    /// as ExpandFailure that show the command's message).
    pub fn command_stderr(&self) -> Option<&str> {
        match self {
            Error::Command { source, .. } => Some(source.stderr()),
            _ => None,
        }
    }

    /// True for errors that retrying cannot fix (bad input, unsupported, conflicts).
    pub fn is_permanent(&self) -> bool {
        matches!(
            self,
            Error::InvalidName(_)
                | Error::InvalidArgument { .. }
                | Error::Unsupported { .. }
                | Error::Shrink { .. }
                | Error::Conflict { .. }
        )
    }
}

/// Result with the engine [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
