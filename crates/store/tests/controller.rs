//! A reconciler under kube-runtime's `Controller`, fed by the store's watch, converges on both
//! backends: it writes `status.observed = spec.value` and must catch up with creates and
//! spec edits, and stop being called for deleted objects.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::{Fixture, Widget, widget};
use futures::StreamExt;
use hwameistor_store::{Objects, Selector, Store, runtime};
use kube::runtime::controller::Action;
use serde_json::json;

struct Ctx {
    widgets: Objects<Widget>,
    reconciles: AtomicUsize,
}

async fn reconcile(obj: Arc<Widget>, ctx: Arc<Ctx>) -> Result<Action, hwameistor_store::Error> {
    ctx.reconciles.fetch_add(1, Ordering::SeqCst);
    let name = obj.metadata.name.clone().unwrap_or_default();
    let observed = obj.status.as_ref().and_then(|s| s.observed);
    if observed != Some(obj.spec.value) {
        ctx.widgets
            .patch_status(&name, &json!({"status": {"observed": obj.spec.value}}))
            .await?;
    }
    Ok(Action::await_change())
}

fn error_policy(_: Arc<Widget>, _: &hwameistor_store::Error, _: Arc<Ctx>) -> Action {
    Action::requeue(Duration::from_millis(50))
}

async fn converged(widgets: &Objects<Widget>, want: &[(&str, i64)]) -> bool {
    let list = widgets.list(&Selector::default()).await.unwrap();
    list.items.len() == want.len()
        && want.iter().all(|(name, value)| {
            list.items.iter().any(|w| {
                w.metadata.name.as_deref() == Some(*name)
                    && w.spec.value == *value
                    && w.status.as_ref().and_then(|s| s.observed) == Some(*value)
            })
        })
}

async fn wait_converged(widgets: &Objects<Widget>, want: &[(&str, i64)]) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !converged(widgets, want).await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "did not converge to {want:?}: {:?}",
            widgets.list(&Selector::default()).await.unwrap().items
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn as_ref(w: &[(String, i64)]) -> Vec<(&str, i64)> {
    w.iter().map(|(n, v)| (n.as_str(), *v)).collect()
}

async fn controller_converges(f: Fixture) {
    let store: Store = f.store.clone();
    let widgets = store.all::<Widget>();
    // One object exists before the controller starts (initial list), the rest arrive by watch.
    widgets.create(&widget("early", 1)).await.unwrap();

    let ctx = Arc::new(Ctx {
        widgets: widgets.clone(),
        reconciles: AtomicUsize::new(0),
    });
    let run = tokio::spawn(
        runtime::controller(widgets.clone(), Selector::default())
            .run(reconcile, error_policy, ctx.clone())
            .for_each(|_| async {}),
    );

    wait_converged(&widgets, &[("early", 1)]).await;
    for i in 0..5 {
        widgets.create(&widget(&format!("w{i}"), i)).await.unwrap();
    }
    let mut want: Vec<(String, i64)> = vec![("early".into(), 1)];
    want.extend((0..5).map(|i| (format!("w{i}"), i)));
    wait_converged(&widgets, &as_ref(&want)).await;

    // Spec edits are followed.
    widgets
        .patch("w3", &json!({"spec": {"value": 33}}))
        .await
        .unwrap();
    widgets
        .patch("early", &json!({"spec": {"value": 11}}))
        .await
        .unwrap();
    want[0].1 = 11;
    want[4].1 = 33;
    wait_converged(&widgets, &as_ref(&want)).await;

    // Deleted objects drop out; the controller keeps running.
    widgets.delete("w0").await.unwrap();
    want.remove(1);
    wait_converged(&widgets, &as_ref(&want)).await;

    // Converged means quiet: our own status writes do not cause endless reconciles.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let settled = ctx.reconciles.load(Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(ctx.reconciles.load(Ordering::SeqCst), settled);
    assert!(settled >= 8, "only {settled} reconciles");
    assert!(!run.is_finished());
    run.abort();
    f.assert_clean();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn controller_converges_on_embedded_store() {
    controller_converges(Fixture::embedded(1000)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn controller_converges_on_kube_store() {
    controller_converges(Fixture::kube(1000)).await;
}

/// When the watch position falls out of the history, the adapter re-lists (kube-runtime's
/// `Init`..`InitDone`) instead of stopping, and the controller still converges.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn controller_survives_gone_by_relisting() {
    use kube::runtime::watcher::Event as W;
    let f = Fixture::embedded(2);
    let widgets = f.store.all::<Widget>();
    widgets.create(&widget("a", 1)).await.unwrap();
    let mut events = runtime::watcher(widgets.clone(), Selector::default()).boxed();
    let mut kinds = Vec::new();
    for _ in 0..3 {
        kinds.push(match events.next().await.unwrap().unwrap() {
            W::Init => "Init",
            W::InitApply(_) => "InitApply",
            W::InitDone => "InitDone",
            W::Apply(_) => "Apply",
            W::Delete(_) => "Delete",
        });
    }
    assert_eq!(kinds, ["Init", "InitApply", "InitDone"]);
    // Overrun the two-event history before the watcher reads on.
    for i in 2..10 {
        widgets
            .patch("a", &json!({"spec": {"value": i}}))
            .await
            .unwrap();
    }
    let mut after = Vec::new();
    while after.len() < 3 {
        match tokio::time::timeout(Duration::from_secs(5), events.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap()
        {
            W::Init => after.push("Init".to_string()),
            W::InitApply(w) => after.push(format!("InitApply {}", w.spec.value)),
            W::InitDone => after.push("InitDone".to_string()),
            W::Apply(w) => panic!("stale position must not deliver {w:?}"),
            W::Delete(_) => panic!("unexpected delete"),
        }
    }
    assert_eq!(after, ["Init", "InitApply 9", "InitDone"]);
}

/// The reflector cache follows the store on both backends.
async fn cache_follows(f: Fixture) {
    let widgets = f.store.all::<Widget>();
    widgets.create(&widget("a", 1)).await.unwrap();
    let (reader, driver) = runtime::cache(widgets.clone(), Selector::default());
    let task = tokio::spawn(driver);
    tokio::time::timeout(Duration::from_secs(10), reader.wait_until_ready())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(reader.state().len(), 1);
    widgets.create(&widget("b", 2)).await.unwrap();
    widgets.delete("a").await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let names: Vec<_> = reader
            .state()
            .iter()
            .map(|w| w.metadata.name.clone().unwrap_or_default())
            .collect();
        if names == ["b"] {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "cache stuck at {names:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    task.abort();
    f.assert_clean();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cache_follows_embedded_store() {
    cache_follows(Fixture::embedded(1000)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cache_follows_kube_store() {
    cache_follows(Fixture::kube(1000)).await;
}
