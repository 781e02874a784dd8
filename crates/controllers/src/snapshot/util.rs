//! Small helpers of the snapshot reconcilers.

use hwameistor_store::{Object, Objects, Selector};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

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

/// Every object of a kind.
pub(crate) async fn list_all<K: Object>(objects: &Objects<K>) -> Result<Vec<K>> {
    Ok(objects
        .list(&Selector::default())
        .await
        .ctx("list", kind_name::<K>(), "*")?
        .items)
}

/// Delete, treating "already gone" as success.
pub(crate) async fn delete_quiet<K: Object>(objects: &Objects<K>, name: &str) -> Result<()> {
    match objects.delete(name).await {
        Ok(_) => Ok(()),
        Err(e) if e.is_not_found() => Ok(()),
        Err(e) => Err(e).ctx("delete", kind_name::<K>(), name),
    }
}

fn kind_name<K: Object>() -> &'static str {
    // The static kind names of our CRDs; `K::kind` returns a Cow.
    match K::kind(&()).as_ref() {
        "LocalVolumeSnapshot" => "LocalVolumeSnapshot",
        "LocalVolumeReplicaSnapshot" => "LocalVolumeReplicaSnapshot",
        "LocalVolumeSnapshotRestore" => "LocalVolumeSnapshotRestore",
        "LocalVolumeReplicaSnapshotRestore" => "LocalVolumeReplicaSnapshotRestore",
        "LocalVolume" => "LocalVolume",
        "LocalVolumeReplica" => "LocalVolumeReplica",
        _ => "object",
    }
}

/// Name of an object (empty if unnamed).
pub(crate) fn name_of<K: kube::Resource>(o: &K) -> String {
    o.meta().name.clone().unwrap_or_default()
}

/// Current time as a Kubernetes `Time`.
pub(crate) fn now_time() -> Time {
    Time(jiff::Timestamp::now())
}

/// Seconds since the epoch of a `Time`.
pub(crate) fn secs(t: &Time) -> i64 {
    t.0.as_second()
}

/// A `Time` from seconds since the epoch (the epoch itself if out of range).
pub(crate) fn time_of(secs: i64) -> Time {
    Time(jiff::Timestamp::from_second(secs).unwrap_or(jiff::Timestamp::UNIX_EPOCH))
}

pub(crate) use crate::runtime::{controller_for, random_suffix, run_controller, touched};
