//! Small helpers shared by the local-storage reconcilers.

use super::{Error, Result};

/// Attach store context to a store result.
pub(crate) trait StoreExt<T> {
    fn ctx(self, op: &'static str, kind: &'static str, name: &str) -> Result<T>;
}

impl<T> StoreExt<T> for hwameistor_store::Result<T> {
    fn ctx(self, op: &'static str, kind: &'static str, name: &str) -> Result<T> {
        self.map_err(|source| Error::Store {
            op,
            kind,
            name: name.to_owned(),
            source: Box::new(source),
        })
    }
}

/// Current time as RFC 3339.
pub(crate) fn now_rfc3339() -> String {
    jiff::Timestamp::now().to_string()
}

/// Current time as a Kubernetes `Time`.
pub(crate) fn now_time() -> k8s_openapi::apimachinery::pkg::apis::meta::v1::Time {
    k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(jiff::Timestamp::now())
}

/// Seconds since an RFC 3339 timestamp; `None` if absent or unparsable.
pub(crate) fn age_secs(ts: Option<&String>) -> Option<u64> {
    let t: jiff::Timestamp = ts?.parse().ok()?;
    let d = jiff::Timestamp::now().duration_since(t);
    Some(d.as_secs().max(0) as u64)
}

pub(crate) use crate::runtime::{
    controller_for, controller_with, random_suffix, run_controller, touched,
};
