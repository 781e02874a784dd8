//! Embedded-store-only behaviour: persistence across reopen, namespaces, version checks, and
//! the real CRD types of hwameistor-api.

mod common;

use std::time::Duration;

use common::{Widget, WidgetStatus, take_events, widget};
use futures::StreamExt;
use hwameistor_store::embedded::EmbeddedOptions;
use hwameistor_store::{EmbeddedStore, Error, Event, Selector, Store};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::ObjectMeta;
use serde_json::json;

#[tokio::test]
async fn survives_close_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.redb");
    let (before, mark) = {
        let store: Store = EmbeddedStore::open(&path).unwrap().into();
        let widgets = store.all::<Widget>();
        let mut w = widgets.create(&widget("keep", 1)).await.unwrap();
        w.spec.value = 2;
        let w = widgets.replace(&w).await.unwrap();
        let mut s = w.clone();
        s.status = Some(WidgetStatus {
            observed: Some(2),
            phase: None,
        });
        widgets.replace_status(&s).await.unwrap();
        widgets.create(&widget("gone", 1)).await.unwrap();
        widgets.delete("gone").await.unwrap();
        let mark = widgets
            .list(&Selector::default())
            .await
            .unwrap()
            .resource_version;
        (widgets.get("keep").await.unwrap(), mark)
    };
    // All handles dropped: the file is closed. Reopen it.
    let store: Store = EmbeddedStore::open(&path).unwrap().into();
    let widgets = store.all::<Widget>();
    let after = widgets.get("keep").await.unwrap();
    assert_eq!(format!("{after:?}"), format!("{before:?}"));
    assert!(widgets.get_opt("gone").await.unwrap().is_none());
    assert_eq!(
        widgets
            .list(&Selector::default())
            .await
            .unwrap()
            .resource_version,
        mark,
        "the version counter is persisted"
    );

    // Versions keep increasing, and a watch started before the restart resumes after it:
    // the event history is in the file.
    let created = widgets.create(&widget("new", 3)).await.unwrap();
    let rv: u64 = created.metadata.resource_version.unwrap().parse().unwrap();
    assert!(rv > mark.parse::<u64>().unwrap());
    let first_rv = before.metadata.resource_version.clone().unwrap();
    let first: u64 = first_rv.parse().unwrap();
    let mut s = widgets
        .watch(&Selector::default(), &(first - 1).to_string())
        .await
        .unwrap();
    let events = take_events(&mut s, 4).await;
    let kinds: Vec<_> = events
        .iter()
        .map(|e| match e {
            Event::Added(o) => format!("Added {}", o.metadata.name.clone().unwrap()),
            Event::Modified(o) => format!("Modified {}", o.metadata.name.clone().unwrap()),
            Event::Deleted(o) => format!("Deleted {}", o.metadata.name.clone().unwrap()),
        })
        .collect();
    assert_eq!(
        kinds,
        ["Modified keep", "Added gone", "Deleted gone", "Added new"]
    );
}

#[tokio::test]
async fn second_open_of_an_open_file_fails() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.redb");
    let _first = EmbeddedStore::open(&path).unwrap();
    let err = EmbeddedStore::open(&path).unwrap_err();
    assert!(matches!(err, Error::Backend { .. }), "{err:?}");
}

#[tokio::test]
async fn watch_versions_outside_the_store_are_rejected() {
    let store: Store = EmbeddedStore::in_memory().unwrap().into();
    let widgets = store.all::<Widget>();
    widgets.create(&widget("a", 1)).await.unwrap();
    let err = widgets
        .watch(&Selector::default(), "999")
        .await
        .err()
        .unwrap();
    assert!(err.is_gone(), "{err:?}");
    let err = widgets
        .watch(&Selector::default(), "abc")
        .await
        .err()
        .unwrap();
    assert!(matches!(err, Error::Invalid { .. }), "{err:?}");
}

fn config_map(name: &str, ns: Option<&str>, value: &str) -> ConfigMap {
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: ns.map(str::to_string),
            ..Default::default()
        },
        data: Some([("k".to_string(), value.to_string())].into()),
        ..Default::default()
    }
}

#[tokio::test]
async fn namespaces_are_separate() {
    let store: Store = EmbeddedStore::in_memory().unwrap().into();
    let a = store.namespaced::<ConfigMap>("a");
    let b = store.namespaced::<ConfigMap>("b");
    let mut watch_a = a.watch(&Selector::default(), "").await.unwrap();

    let in_a = a.create(&config_map("cfg", None, "1")).await.unwrap();
    assert_eq!(in_a.metadata.namespace.as_deref(), Some("a"));
    b.create(&config_map("cfg", Some("b"), "2")).await.unwrap();
    assert!(matches!(
        a.create(&config_map("other", Some("b"), "x")).await,
        Err(Error::Invalid { .. })
    ));
    assert_eq!(a.get("cfg").await.unwrap().data.unwrap()["k"], "1");
    assert_eq!(b.get("cfg").await.unwrap().data.unwrap()["k"], "2");
    assert_eq!(b.list(&Selector::default()).await.unwrap().items.len(), 1);
    let everywhere = store
        .all::<ConfigMap>()
        .list(&Selector::default())
        .await
        .unwrap();
    assert_eq!(everywhere.items.len(), 2);

    b.delete("cfg").await.unwrap();
    a.patch("cfg", &json!({"data": {"k": "3"}})).await.unwrap();
    let events = take_cm_events(&mut watch_a, 2).await;
    assert_eq!(events, ["Added a/cfg", "Modified a/cfg"]);
    // Core types without a status keep working: the whole object is replaced.
    let mut cm = a.get("cfg").await.unwrap();
    cm.data = Some([("k".to_string(), "4".to_string())].into());
    assert_eq!(a.replace(&cm).await.unwrap().data.unwrap()["k"], "4");
}

async fn take_cm_events(s: &mut hwameistor_store::WatchStream<ConfigMap>, n: usize) -> Vec<String> {
    let mut out = Vec::new();
    while out.len() < n {
        let e = tokio::time::timeout(Duration::from_secs(5), s.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        let (t, o) = match &e {
            Event::Added(o) => ("Added", o),
            Event::Modified(o) => ("Modified", o),
            Event::Deleted(o) => ("Deleted", o),
        };
        out.push(format!(
            "{t} {}/{}",
            o.metadata.namespace.clone().unwrap_or_default(),
            o.metadata.name.clone().unwrap_or_default()
        ));
    }
    out
}

#[tokio::test]
async fn hwameistor_local_volume_round_trips() {
    use hwameistor_api::LocalVolume;
    let dir = tempfile::tempdir().unwrap();
    let store: Store =
        EmbeddedStore::open_with(dir.path().join("s.redb"), EmbeddedOptions::default())
            .unwrap()
            .into();
    let volumes = store.all::<LocalVolume>();
    let lv = LocalVolume::test("pvc-1");
    let created = volumes.create(&lv).await.unwrap();
    assert_eq!(created.spec.pool_name, lv.spec.pool_name);
    assert_eq!(created.metadata.generation, Some(1));
    let mut status = created.clone();
    status.status.get_or_insert_with(Default::default).replicas = vec!["pvc-1-node-1".into()];
    let updated = volumes.replace_status(&status).await.unwrap();
    assert_eq!(updated.status.unwrap().replicas, ["pvc-1-node-1"]);
    let listed = volumes.list(&Selector::default()).await.unwrap();
    assert_eq!(listed.items.len(), 1);
    // Different kinds do not see each other.
    assert!(
        store
            .all::<Widget>()
            .list(&Selector::default())
            .await
            .unwrap()
            .items
            .is_empty()
    );
}

/// Figures for the report: `cargo test -p hwameistor-store --test embedded -- --ignored --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "measurement: prints throughput figures; run with --ignored --nocapture"]
async fn measure_throughput() {
    use std::time::Instant;
    let dir = tempfile::tempdir().unwrap();
    let store: Store = EmbeddedStore::open(dir.path().join("m.redb"))
        .unwrap()
        .into();
    let widgets = store.all::<Widget>();
    const N: i64 = 500;

    let t = Instant::now();
    for i in 0..N {
        widgets.create(&widget(&format!("w{i}"), i)).await.unwrap();
    }
    let create = t.elapsed();

    let t = Instant::now();
    for i in 0..N {
        widgets
            .patch_status(&format!("w{i}"), &json!({"status": {"observed": i}}))
            .await
            .unwrap();
    }
    let status = t.elapsed();

    let t = Instant::now();
    let list = widgets.list(&Selector::default()).await.unwrap();
    let list_time = t.elapsed();
    assert_eq!(list.items.len(), N as usize);

    let mut s = widgets
        .watch(&Selector::default(), &list.resource_version)
        .await
        .unwrap();
    let mut latencies = Vec::new();
    for i in 0..50 {
        let t = Instant::now();
        widgets
            .patch(&format!("w{i}"), &json!({"spec": {"value": -1}}))
            .await
            .unwrap();
        take_events(&mut s, 1).await;
        latencies.push(t.elapsed());
    }
    latencies.sort();

    let t = Instant::now();
    let tasks: Vec<_> = (0..8)
        .map(|k| {
            let widgets = widgets.clone();
            tokio::spawn(async move {
                for i in 0..50 {
                    widgets
                        .create(&widget(&format!("c{k}-{i}"), i))
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let concurrent = t.elapsed();

    let per_sec = |n: i64, d: Duration| n as f64 / d.as_secs_f64();
    println!(
        "create:       {:.0}/s ({N} sequential, durable commits)",
        per_sec(N, create)
    );
    println!("patch_status: {:.0}/s", per_sec(N, status));
    println!("list {N}:     {list_time:?}");
    println!(
        "write->watch event: median {:?}, p90 {:?}",
        latencies[latencies.len() / 2],
        latencies[latencies.len() * 9 / 10]
    );
    println!("create, 8 tasks x 50: {:.0}/s", per_sec(400, concurrent));
    println!(
        "file size: {} KiB",
        std::fs::metadata(dir.path().join("m.redb")).unwrap().len() / 1024
    );
}

/// Group commit: a burst of concurrent writes is committed in shared transactions, yet every
/// write gets its own answer as if they ran one after another (one create of a name wins,
/// the others are AlreadyExists; conditional replaces on one version: one wins, the rest
/// conflict), every watcher sees every change once and in version order, and everything
/// acknowledged is in the file after it is closed and reopened.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writes_share_commits_and_keep_every_answer() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.redb");
    let acknowledged = {
        let store: Store = EmbeddedStore::open(&path).unwrap().into();
        let widgets = store.all::<Widget>();
        let base = widgets.create(&widget("shared", 0)).await.unwrap();
        let mut watch = widgets
            .watch(
                &Selector::default(),
                base.metadata.resource_version.as_deref().unwrap(),
            )
            .await
            .unwrap();

        // 100 distinct creates, 20 creates of one name, 20 replaces of one version: at once.
        let mut tasks = Vec::new();
        for i in 0..100 {
            let w = widgets.clone();
            tasks.push(tokio::spawn(async move {
                w.create(&widget(&format!("w{i}"), i))
                    .await
                    .map(|_| "created")
            }));
        }
        for _ in 0..20 {
            let w = widgets.clone();
            tasks.push(tokio::spawn(async move {
                match w.create(&widget("dup", 1)).await {
                    Ok(_) => Ok("dup created"),
                    Err(Error::AlreadyExists { .. }) => Ok("dup exists"),
                    Err(e) => Err(e),
                }
            }));
        }
        for i in 0..20 {
            let (w, mut b) = (widgets.clone(), base.clone());
            tasks.push(tokio::spawn(async move {
                b.spec.value = 1000 + i;
                match w.replace(&b).await {
                    Ok(_) => Ok("replaced"),
                    Err(e) if e.is_conflict() => Ok("conflict"),
                    Err(e) => Err(e),
                }
            }));
        }
        let mut counts = std::collections::BTreeMap::<&str, usize>::new();
        for t in tasks {
            *counts.entry(t.await.unwrap().unwrap()).or_default() += 1;
        }
        assert_eq!(counts["created"], 100);
        assert_eq!(counts["dup created"], 1, "{counts:?}");
        assert_eq!(counts["dup exists"], 19, "{counts:?}");
        assert_eq!(counts["replaced"], 1, "{counts:?}");
        assert_eq!(counts["conflict"], 19, "{counts:?}");

        // 102 changes (100 + dup + the replace), each seen once, versions strictly increasing.
        let events = take_events(&mut watch, 102).await;
        let versions: Vec<u64> = events
            .iter()
            .map(|e| {
                e.object()
                    .metadata
                    .resource_version
                    .as_deref()
                    .unwrap()
                    .parse()
                    .unwrap()
            })
            .collect();
        assert!(versions.windows(2).all(|w| w[0] < w[1]), "{versions:?}");
        let list = widgets.list(&Selector::default()).await.unwrap();
        assert_eq!(list.items.len(), 102);
        assert_eq!(list.resource_version, versions[101].to_string());
        list.items
            .into_iter()
            .map(|w| (w.metadata.name.unwrap(), w.spec.value))
            .collect::<std::collections::BTreeMap<_, _>>()
    };
    let store: Store = EmbeddedStore::open(&path).unwrap().into();
    let reopened: std::collections::BTreeMap<_, _> = store
        .all::<Widget>()
        .list(&Selector::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|w| (w.metadata.name.unwrap(), w.spec.value))
        .collect();
    assert_eq!(
        reopened, acknowledged,
        "every acknowledged write is durable"
    );
}
