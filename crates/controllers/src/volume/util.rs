//! Small helpers shared by the local-storage reconcilers.

use std::future::Future;
use std::sync::Arc;

use futures::StreamExt;
use hwameistor_store::{Object, Objects};
use kube::runtime::controller::{Action, Config, Controller};
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

/// Six random lowercase alphanumerics, as in replica names `<volume>-xxxxxx`.
pub(crate) fn random_suffix() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..6].to_owned()
}

/// Run a kube-runtime `Controller` for `objects`, with extra trigger streams mapped to objects
/// of the main kind, until `shutdown`.
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

/// Most reconciles one cluster-side controller runs at once: no bound (`0`). kube-runtime
/// never runs two reconciles of the same object at once (further triggers of a busy object
/// wait), and a bound here lets volumes that keep failing placement crowd out the ones that
/// are making progress.
pub(crate) const RECONCILE_CONCURRENCY: u16 = 0;

/// A kube-runtime controller over `objects` fed by the store's watch adapter, reconciling up
/// to `concurrency` objects at once (`0`: no bound).
pub(crate) fn controller_with<K: Object>(objects: Objects<K>, concurrency: u16) -> Controller<K> {
    hwameistor_store::runtime::controller(objects, Default::default())
        .with_config(Config::default().concurrency(concurrency))
}

/// [`controller_with`] at [`RECONCILE_CONCURRENCY`].
pub(crate) fn controller_for<K: Object>(objects: Objects<K>) -> Controller<K> {
    controller_with(objects, RECONCILE_CONCURRENCY)
}

/// A trigger stream of touched objects of another kind, for `Controller::watches_stream`.
pub(crate) fn touched<K: Object>(
    objects: Objects<K>,
) -> impl futures::Stream<Item = Result<K, kw::Error>> + Send + 'static {
    hwameistor_store::runtime::watcher(objects, Default::default())
        .default_backoff()
        .touched_objects()
}
