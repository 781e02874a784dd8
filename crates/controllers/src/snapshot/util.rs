//! Small helpers of the snapshot reconcilers.

use std::future::Future;
use std::sync::Arc;

use futures::StreamExt;
use hwameistor_store::{Object, Objects, Selector};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::{WatchStreamExt, watcher as kw};
use tokio_util::sync::CancellationToken;

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

/// Six random lowercase alphanumerics.
pub(crate) fn random_suffix() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..6].to_owned()
}

/// Run a kube-runtime `Controller` until `shutdown`.
pub(crate) async fn run_controller<K, Ctx, F, Fut>(
    name: &'static str,
    controller: Controller<K>,
    reconcile: F,
    ctx: Arc<Ctx>,
    shutdown: CancellationToken,
) where
    K: Object,
    Ctx: Send + Sync + 'static,
    F: FnMut(Arc<K>, Arc<Ctx>) -> Fut + Send + 'static,
    Fut: Future<Output = Result<Action>> + Send + 'static,
{
    controller
        .graceful_shutdown_on(shutdown.cancelled_owned())
        .run(reconcile, error_policy::<K, Ctx>, ctx)
        .for_each(|res| async move {
            if let Err(e) = res {
                tracing::debug!(controller = name, error = %e, "reconcile round failed");
            }
        })
        .await;
}

fn error_policy<K: Object, Ctx>(obj: Arc<K>, err: &Error, _ctx: Arc<Ctx>) -> Action {
    let name = obj.meta().name.clone().unwrap_or_default();
    tracing::warn!(kind = %K::kind(&()), %name, reason = err.reason(), error = %err, "reconcile failed; retrying");
    Action::requeue(super::ERROR_BACKOFF)
}

/// A kube-runtime controller over `objects` fed by the store's watch adapter.
pub(crate) fn controller_for<K: Object>(objects: Objects<K>) -> Controller<K> {
    hwameistor_store::runtime::controller(objects, Default::default())
}

/// A trigger stream of touched objects of another kind, for `Controller::watches_stream`.
pub(crate) fn touched<K: Object>(
    objects: Objects<K>,
) -> impl futures::Stream<Item = Result<K, kw::Error>> + Send + 'static {
    hwameistor_store::runtime::watcher(objects, Default::default())
        .default_backoff()
        .touched_objects()
}
