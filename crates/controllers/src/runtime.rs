//! Running reconcilers with kube-runtime over our store, shared by the `volume` and
//! `snapshot` controllers: a controller fed by the store's watch adapter, extra trigger
//! streams, and the run loop with its error policy (log, requeue after a backoff).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use hwameistor_store::{Object, Objects};
use kube::runtime::controller::{Action, Config, Controller};
use kube::runtime::{WatchStreamExt, watcher as kw};
use tokio_util::sync::CancellationToken;

/// The error of a reconciler: a short machine-readable reason for logs, and how long an
/// object waits after a failed reconcile.
pub(crate) trait ReconcileError: std::error::Error + Send + Sync + 'static {
    /// How long a reconciler waits after an error before retrying the object.
    const BACKOFF: Duration;
    /// A short machine-readable reason.
    fn reason(&self) -> &'static str;
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

/// Run a kube-runtime `Controller` until `shutdown`; a failed reconcile is logged and the
/// object retried after [`ReconcileError::BACKOFF`].
pub(crate) async fn run_controller<K, Ctx, E, F, Fut>(
    name: &'static str,
    controller: Controller<K>,
    reconcile: F,
    ctx: Arc<Ctx>,
    shutdown: CancellationToken,
) where
    K: Object,
    Ctx: Send + Sync + 'static,
    E: ReconcileError,
    F: FnMut(Arc<K>, Arc<Ctx>) -> Fut + Send + 'static,
    Fut: Future<Output = Result<Action, E>> + Send + 'static,
{
    controller
        .graceful_shutdown_on(shutdown.cancelled_owned())
        .run(reconcile, error_policy::<K, Ctx, E>, ctx)
        .for_each(|res| async move {
            if let Err(e) = res {
                tracing::debug!(controller = name, error = %e, "reconcile round failed");
            }
        })
        .await;
}

fn error_policy<K: Object, Ctx, E: ReconcileError>(obj: Arc<K>, err: &E, _ctx: Arc<Ctx>) -> Action {
    let name = obj.meta().name.clone().unwrap_or_default();
    tracing::warn!(kind = %K::kind(&()), %name, reason = err.reason(), error = %err, "reconcile failed; retrying");
    Action::requeue(E::BACKOFF)
}

/// Six random lowercase alphanumerics, as in replica names `<volume>-xxxxxx`.
pub(crate) fn random_suffix() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..6].to_owned()
}
