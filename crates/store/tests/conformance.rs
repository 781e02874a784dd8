//! The store conformance suite: every test runs against the embedded store (a redb file in a
//! tempdir) and against `KubeStore` talking to the mock API server in `common::mock`, and
//! must behave the same on both. Kube-only assertions check the HTTP requests sent.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::{Fixture, Widget, WidgetStatus, labelled, summary, take_events, widget};
use futures::StreamExt;
use http::Method;
use hwameistor_store::{Deletion, Error, Event, Selector, parse_selector};
use serde_json::json;

const HISTORY: u64 = 1000;

macro_rules! conformance {
    ($($name:ident),* $(,)?) => {
        mod embedded {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::Fixture::embedded).await
                }
            )*
        }
        mod kube {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::Fixture::kube).await
                }
            )*
        }
    };
}

conformance!(
    create_get_list,
    list_by_name_prefix,
    label_selectors,
    conflict_on_stale_version,
    status_write_does_not_touch_spec,
    merge_patches,
    delete_honours_finalizers,
    watch_resumes_without_loss,
    watch_gone_for_old_version,
    watch_from_now_lists_first,
    watch_selector_transitions,
    concurrent_writers_never_lose_updates,
);

fn sel(s: &str) -> Selector {
    parse_selector(s).expect("selector")
}

fn names(items: &[Widget]) -> BTreeSet<String> {
    items
        .iter()
        .map(|w| w.metadata.name.clone().unwrap_or_default())
        .collect()
}

fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|s| s.to_string()).collect()
}

async fn create_get_list(mk: fn(u64) -> Fixture) {
    let f = mk(HISTORY);
    let widgets = f.store.all::<Widget>();

    let created = widgets.create(&widget("w1", 1)).await.unwrap();
    let meta = &created.metadata;
    assert!(!meta.resource_version.as_deref().unwrap_or("").is_empty());
    assert!(!meta.uid.as_deref().unwrap_or("").is_empty());
    assert!(meta.creation_timestamp.is_some());
    assert_eq!(meta.generation, Some(1));
    assert_eq!(created.spec.value, 1);

    let read = widgets.get("w1").await.unwrap();
    assert_eq!(format!("{read:?}"), format!("{created:?}"));
    assert!(widgets.get_opt("missing").await.unwrap().is_none());
    assert!(matches!(
        widgets.get("missing").await,
        Err(Error::NotFound { ref kind, ref name }) if kind == "Widget" && name == "missing"
    ));
    assert!(matches!(
        widgets.create(&widget("w1", 9)).await,
        Err(Error::AlreadyExists { ref name, .. }) if name == "w1"
    ));
    assert_eq!(widgets.get("w1").await.unwrap().spec.value, 1);

    // Create does not set status (status subresource semantics).
    let mut with_status = widget("w2", 2);
    with_status.status = Some(WidgetStatus {
        observed: Some(2),
        phase: None,
    });
    let second = widgets.create(&with_status).await.unwrap();
    assert_eq!(second.status, None);
    assert_ne!(second.metadata.uid, created.metadata.uid);
    assert_ne!(
        second.metadata.resource_version,
        created.metadata.resource_version
    );

    let list = widgets.list(&Selector::default()).await.unwrap();
    assert_eq!(names(&list.items), set(&["w1", "w2"]));
    assert!(!list.resource_version.is_empty());

    // generateName
    let mut generated = widget("", 3);
    generated.metadata.name = None;
    generated.metadata.generate_name = Some("gen-".into());
    let generated = widgets.create(&generated).await.unwrap();
    let name = generated.metadata.name.clone().unwrap();
    assert!(name.starts_with("gen-") && name.len() > 4, "{name}");

    if let Some(mock) = &f.mock {
        let reqs = mock.requests();
        let post = reqs.iter().find(|r| r.method == Method::POST).unwrap();
        assert_eq!(post.path, "/apis/hwameistor.io/v1alpha1/widgets");
        assert_eq!(post.body.as_ref().unwrap()["spec"]["value"], json!(1));
        assert_eq!(post.body.as_ref().unwrap()["metadata"]["name"], json!("w1"));
        assert!(reqs.iter().any(
            |r| r.method == Method::GET && r.path == "/apis/hwameistor.io/v1alpha1/widgets/w1"
        ));
        assert!(reqs.iter().any(|r| r.method == Method::GET
            && r.path == "/apis/hwameistor.io/v1alpha1/widgets"
            && !r.query.contains_key("labelSelector")
            && !r.query.contains_key("watch")));
    }
    f.assert_clean();
}

async fn label_selectors(mk: fn(u64) -> Fixture) {
    let f = mk(HISTORY);
    let widgets = f.store.all::<Widget>();
    widgets
        .create(&labelled("a", 1, &[("app", "x"), ("tier", "1")]))
        .await
        .unwrap();
    widgets
        .create(&labelled("b", 2, &[("app", "y"), ("tier", "2")]))
        .await
        .unwrap();
    widgets
        .create(&labelled("c", 3, &[("app", "z")]))
        .await
        .unwrap();
    widgets.create(&widget("d", 4)).await.unwrap();

    let cases = [
        ("", set(&["a", "b", "c", "d"])),
        ("app=x", set(&["a"])),
        ("app==y", set(&["b"])),
        ("app!=x", set(&["b", "c", "d"])),
        ("app in (x,z)", set(&["a", "c"])),
        ("app notin (x,z)", set(&["b", "d"])),
        ("tier", set(&["a", "b"])),
        ("!tier", set(&["c", "d"])),
        ("app in (x, y),tier!=1", set(&["b"])),
        ("app=nothing", set(&[])),
    ];
    for (selector, want) in cases {
        let list = widgets.list(&sel(selector)).await.unwrap();
        assert_eq!(names(&list.items), want, "selector {selector:?}");
    }

    if let Some(mock) = &f.mock {
        let sent: Vec<String> = mock
            .requests()
            .iter()
            .filter(|r| r.method == Method::GET && r.path == "/apis/hwameistor.io/v1alpha1/widgets")
            .filter_map(|r| r.query.get("labelSelector").cloned())
            .collect();
        assert!(sent.contains(&"app in (x,z)".to_string()), "{sent:?}");
        assert!(sent.contains(&"!tier".to_string()), "{sent:?}");
        assert!(
            sent.contains(&"app in (x,y),tier!=1".to_string()),
            "{sent:?}"
        );
    }
    f.assert_clean();
}

async fn list_by_name_prefix(mk: fn(u64) -> Fixture) {
    let f = mk(HISTORY);
    let widgets = f.store.all::<Widget>();
    for (i, n) in [
        "vol-1-aaaa",
        "vol-1-bbbb",
        "vol-10-cccc",
        "vol-1",
        "vol-2-dddd",
        "vom-1-e",
    ]
    .iter()
    .enumerate()
    {
        widgets.create(&widget(n, i as i64)).await.unwrap();
    }
    let got = |items: Vec<Widget>| -> Vec<String> {
        items.into_iter().filter_map(|w| w.metadata.name).collect()
    };
    assert_eq!(
        got(widgets.list_prefixed("vol-1-").await.unwrap()),
        ["vol-1-aaaa", "vol-1-bbbb"]
    );
    assert_eq!(
        got(widgets.list_prefixed("vol-1").await.unwrap()),
        ["vol-1", "vol-1-aaaa", "vol-1-bbbb", "vol-10-cccc"]
    );
    assert!(widgets.list_prefixed("vol-3").await.unwrap().is_empty());
    assert_eq!(widgets.list_prefixed("").await.unwrap().len(), 6);
    // the objects are whole (spec and all)
    let one = widgets.list_prefixed("vol-2").await.unwrap();
    assert_eq!(one[0].spec.value, 4);
    f.assert_clean();
}

async fn conflict_on_stale_version(mk: fn(u64) -> Fixture) {
    let f = mk(HISTORY);
    let widgets = f.store.all::<Widget>();
    let v1 = widgets.create(&widget("w", 1)).await.unwrap();

    let mut change = v1.clone();
    change.spec.value = 2;
    let v2 = widgets.replace(&change).await.unwrap();
    assert_eq!(v2.spec.value, 2);
    assert_eq!(v2.metadata.generation, Some(2));
    assert_ne!(v2.metadata.resource_version, v1.metadata.resource_version);
    assert_eq!(v2.metadata.uid, v1.metadata.uid);

    // A writer still holding v1 loses.
    let mut stale = v1.clone();
    stale.spec.value = 3;
    let err = widgets.replace(&stale).await.unwrap_err();
    assert!(
        matches!(&err, Error::Conflict { name, resource_version, .. }
            if name == "w" && Some(resource_version) == v1.metadata.resource_version.as_ref()),
        "{err:?}"
    );
    assert_eq!(widgets.get("w").await.unwrap().spec.value, 2);

    // Blind writes are refused.
    let mut blind = widget("w", 4);
    blind.metadata.resource_version = None;
    assert!(matches!(
        widgets.replace(&blind).await,
        Err(Error::Invalid { .. })
    ));

    // Replacing something that does not exist.
    let mut ghost = widget("ghost", 1);
    ghost.metadata.resource_version = Some("1".into());
    assert!(matches!(
        widgets.replace(&ghost).await,
        Err(Error::NotFound { .. })
    ));

    // Metadata-only change: new version, same generation. No-op: nothing changes.
    let mut relabel = v2.clone();
    relabel.metadata.labels = Some([("k".to_string(), "v".to_string())].into());
    let v3 = widgets.replace(&relabel).await.unwrap();
    assert_eq!(v3.metadata.generation, Some(2));
    assert_ne!(v3.metadata.resource_version, v2.metadata.resource_version);
    let v4 = widgets.replace(&v3).await.unwrap();
    assert_eq!(v4.metadata.resource_version, v3.metadata.resource_version);

    if let Some(mock) = &f.mock {
        let puts: Vec<_> = mock
            .requests()
            .into_iter()
            .filter(|r| r.method == Method::PUT)
            .collect();
        let paths: Vec<&str> = puts.iter().map(|r| r.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "/apis/hwameistor.io/v1alpha1/widgets/w",
                "/apis/hwameistor.io/v1alpha1/widgets/w",
                "/apis/hwameistor.io/v1alpha1/widgets/ghost",
                "/apis/hwameistor.io/v1alpha1/widgets/w",
                "/apis/hwameistor.io/v1alpha1/widgets/w",
            ],
            "the blind write must not reach the server"
        );
        // The stale write sent the stale version for the server to refuse.
        assert_eq!(
            puts[1].body.as_ref().unwrap()["metadata"]["resourceVersion"],
            json!(v1.metadata.resource_version.clone().unwrap())
        );
    }
    f.assert_clean();
}

async fn status_write_does_not_touch_spec(mk: fn(u64) -> Fixture) {
    let f = mk(HISTORY);
    let widgets = f.store.all::<Widget>();
    let v1 = widgets.create(&widget("w", 1)).await.unwrap();
    assert_eq!(v1.status, None);

    // A status write carrying a changed spec changes only status.
    let mut obj = v1.clone();
    obj.spec.value = 100;
    obj.status = Some(WidgetStatus {
        observed: Some(1),
        phase: Some("Ready".into()),
    });
    let v2 = widgets.replace_status(&obj).await.unwrap();
    assert_eq!(v2.spec.value, 1);
    assert_eq!(v2.status.as_ref().unwrap().phase.as_deref(), Some("Ready"));
    assert_eq!(v2.metadata.generation, Some(1));
    assert_ne!(v2.metadata.resource_version, v1.metadata.resource_version);

    // A main-resource write ignores status.
    let mut obj = v2.clone();
    obj.spec.value = 2;
    obj.status = None;
    let v3 = widgets.replace(&obj).await.unwrap();
    assert_eq!(v3.spec.value, 2);
    assert_eq!(v3.status, v2.status);
    assert_eq!(v3.metadata.generation, Some(2));

    // Status writes are optimistic too.
    let err = widgets.replace_status(&v2).await.unwrap_err();
    assert!(err.is_conflict(), "{err:?}");

    // Status merge patch.
    let v4 = widgets
        .patch_status(
            "w",
            &json!({"status": {"observed": 2}, "spec": {"value": 50}}),
        )
        .await
        .unwrap();
    assert_eq!(v4.spec.value, 2);
    assert_eq!(
        v4.status,
        Some(WidgetStatus {
            observed: Some(2),
            phase: Some("Ready".into())
        })
    );
    assert_eq!(v4.metadata.generation, Some(2));

    if let Some(mock) = &f.mock {
        let reqs = mock.requests();
        assert!(reqs.iter().any(|r| r.method == Method::PUT
            && r.path == "/apis/hwameistor.io/v1alpha1/widgets/w/status"));
        assert!(reqs.iter().any(|r| r.method == Method::PATCH
            && r.path == "/apis/hwameistor.io/v1alpha1/widgets/w/status"
            && r.content_type.as_deref() == Some("application/merge-patch+json")));
    }
    f.assert_clean();
}

async fn merge_patches(mk: fn(u64) -> Fixture) {
    let f = mk(HISTORY);
    let widgets = f.store.all::<Widget>();
    let v1 = widgets
        .create(&labelled("w", 1, &[("a", "1"), ("b", "2")]))
        .await
        .unwrap();

    let v2 = widgets
        .patch(
            "w",
            &json!({"metadata": {"labels": {"a": null, "c": "3"}}, "spec": {"note": "hi"}, "status": {"observed": 9}}),
        )
        .await
        .unwrap();
    let labels = v2.metadata.labels.clone().unwrap();
    assert_eq!(labels.keys().cloned().collect::<Vec<_>>(), ["b", "c"]);
    assert_eq!(v2.spec.note.as_deref(), Some("hi"));
    assert_eq!(v2.spec.value, 1);
    assert_eq!(v2.status, None, "patch of the main resource ignores status");
    assert_eq!(v2.metadata.generation, Some(2));
    assert_eq!(v2.metadata.uid, v1.metadata.uid);

    // Conditional patch.
    let stale = json!({"metadata": {"resourceVersion": v1.metadata.resource_version}, "spec": {"value": 5}});
    assert!(widgets.patch("w", &stale).await.unwrap_err().is_conflict());
    let fresh = json!({"metadata": {"resourceVersion": v2.metadata.resource_version}, "spec": {"value": 5}});
    assert_eq!(widgets.patch("w", &fresh).await.unwrap().spec.value, 5);

    assert!(matches!(
        widgets
            .patch("missing", &json!({"spec": {"value": 1}}))
            .await,
        Err(Error::NotFound { .. })
    ));
    f.assert_clean();
}

async fn delete_honours_finalizers(mk: fn(u64) -> Fixture) {
    let f = mk(HISTORY);
    let widgets = f.store.all::<Widget>();

    // Without finalizers: gone at once.
    widgets.create(&widget("plain", 1)).await.unwrap();
    match widgets.delete("plain").await.unwrap() {
        Deletion::Deleted(o) => assert_eq!(o.metadata.name.as_deref(), Some("plain")),
        other => panic!("{other:?}"),
    }
    assert!(widgets.get_opt("plain").await.unwrap().is_none());
    assert!(matches!(
        widgets.delete("plain").await,
        Err(Error::NotFound { .. })
    ));

    // With a finalizer: marked, kept until the finalizer is removed.
    let mut w = widget("held", 1);
    w.metadata.finalizers = Some(vec!["hwameistor.io/protect".into()]);
    let created = widgets.create(&w).await.unwrap();
    let mut events = widgets
        .watch(
            &Selector::default(),
            created.metadata.resource_version.as_deref().unwrap(),
        )
        .await
        .unwrap();

    let marked = match widgets.delete("held").await.unwrap() {
        Deletion::Finalizing(o) => o,
        other => panic!("{other:?}"),
    };
    assert!(marked.metadata.deletion_timestamp.is_some());
    let still = widgets.get("held").await.unwrap();
    assert!(still.metadata.deletion_timestamp.is_some());
    assert!(matches!(
        widgets.delete("held").await.unwrap(),
        Deletion::Finalizing(_)
    ));

    // No new finalizers on a terminating object.
    let mut more = still.clone();
    more.metadata.finalizers = Some(vec!["hwameistor.io/protect".into(), "other/x".into()]);
    assert!(matches!(
        widgets.replace(&more).await,
        Err(Error::Invalid { .. })
    ));

    // Spec edits still work while terminating; removing the last finalizer deletes.
    let mut release = widgets.get("held").await.unwrap();
    release.metadata.finalizers = Some(vec![]);
    widgets.replace(&release).await.unwrap();
    assert!(widgets.get_opt("held").await.unwrap().is_none());

    let seen = take_events(&mut events, 2).await;
    assert!(matches!(&seen[0], Event::Modified(o) if o.metadata.deletion_timestamp.is_some()));
    assert!(matches!(&seen[1], Event::Deleted(o) if o.metadata.name.as_deref() == Some("held")));

    if let Some(mock) = &f.mock {
        assert!(
            mock.requests().iter().any(|r| r.method == Method::DELETE
                && r.path == "/apis/hwameistor.io/v1alpha1/widgets/held")
        );
    }
    f.assert_clean();
}

async fn watch_resumes_without_loss(mk: fn(u64) -> Fixture) {
    let f = mk(HISTORY);
    let widgets = f.store.all::<Widget>();
    widgets.create(&widget("before", 0)).await.unwrap();
    let list = widgets.list(&Selector::default()).await.unwrap();

    let mut stream = widgets
        .watch(&Selector::default(), &list.resource_version)
        .await
        .unwrap();
    // A writer racing the watcher.
    let writer = {
        let widgets = widgets.clone();
        tokio::spawn(async move {
            for i in 0..5 {
                widgets.create(&widget(&format!("w{i}"), i)).await.unwrap();
            }
            for i in 0..5 {
                let mut w = widgets.get(&format!("w{i}")).await.unwrap();
                w.spec.value += 10;
                widgets.replace(&w).await.unwrap();
            }
            widgets.delete("w0").await.unwrap();
        })
    };
    let first = take_events(&mut stream, 4).await;
    drop(stream);
    writer.await.unwrap();

    let resume_from = first
        .last()
        .unwrap()
        .object()
        .metadata
        .resource_version
        .clone()
        .unwrap();
    let mut resumed = widgets
        .watch(&Selector::default(), &resume_from)
        .await
        .unwrap();
    let rest = take_events(&mut resumed, 7).await;

    let mut all = summary(&first);
    all.extend(summary(&rest));
    let mut want: Vec<(&str, String, i64)> =
        (0..5).map(|i| ("Added", format!("w{i}"), i)).collect();
    want.extend((0..5).map(|i| ("Modified", format!("w{i}"), i + 10)));
    want.push(("Deleted", "w0".into(), 10));
    assert_eq!(all, want);

    // Versions strictly increase along the stream (compared as the store's opaque strings
    // parse as numbers on both backends here).
    let versions: Vec<u64> = first
        .iter()
        .chain(rest.iter())
        .map(|e| {
            e.object()
                .metadata
                .resource_version
                .as_ref()
                .unwrap()
                .parse()
                .unwrap()
        })
        .collect();
    assert!(versions.windows(2).all(|w| w[0] < w[1]), "{versions:?}");

    // Nothing more is pending.
    let extra = tokio::time::timeout(Duration::from_millis(300), resumed.next()).await;
    assert!(extra.is_err(), "unexpected event {extra:?}");

    if let Some(mock) = &f.mock {
        let watches: Vec<_> = mock
            .requests()
            .into_iter()
            .filter(|r| r.query.get("watch").map(String::as_str) == Some("true"))
            .collect();
        assert!(
            watches
                .iter()
                .all(|r| r.path == "/apis/hwameistor.io/v1alpha1/widgets")
        );
        assert_eq!(
            watches[0].query.get("resourceVersion"),
            Some(&list.resource_version)
        );
        assert!(
            watches
                .iter()
                .any(|r| r.query.get("resourceVersion") == Some(&resume_from))
        );
        // The mock closes each watch after 3 events: the store must have re-watched.
        assert!(watches.len() >= 4, "{} watch requests", watches.len());
    }
    f.assert_clean();
}

async fn watch_gone_for_old_version(mk: fn(u64) -> Fixture) {
    let f = mk(4);
    let widgets = f.store.all::<Widget>();
    let start = widgets.create(&widget("w", 0)).await.unwrap();
    let old = start.metadata.resource_version.clone().unwrap();
    for i in 1..=10 {
        let mut w = widgets.get("w").await.unwrap();
        w.spec.value = i;
        widgets.replace(&w).await.unwrap();
    }
    let outcome = match widgets.watch(&Selector::default(), &old).await {
        Err(e) => Err(e),
        Ok(mut s) => match tokio::time::timeout(Duration::from_secs(5), s.next()).await {
            Ok(Some(Err(e))) => Err(e),
            other => Ok(format!("{other:?}")),
        },
    };
    assert!(
        matches!(&outcome, Err(Error::Gone { resource_version, .. }) if *resource_version == old),
        "{outcome:?}"
    );

    // The current version is fine.
    let list = widgets.list(&Selector::default()).await.unwrap();
    let mut s = widgets
        .watch(&Selector::default(), &list.resource_version)
        .await
        .unwrap();
    let mut w = widgets.get("w").await.unwrap();
    w.spec.value = 42;
    widgets.replace(&w).await.unwrap();
    assert_eq!(
        summary(&take_events(&mut s, 1).await),
        [("Modified", "w".into(), 42)]
    );
    f.assert_clean();
}

async fn watch_from_now_lists_first(mk: fn(u64) -> Fixture) {
    let f = mk(HISTORY);
    let widgets = f.store.all::<Widget>();
    widgets.create(&widget("a", 1)).await.unwrap();
    widgets.create(&widget("b", 2)).await.unwrap();
    let mut s = widgets.watch(&Selector::default(), "").await.unwrap();
    let initial = take_events(&mut s, 2).await;
    let mut got = summary(&initial);
    got.sort();
    assert_eq!(got, [("Added", "a".into(), 1), ("Added", "b".into(), 2)]);
    widgets.create(&widget("c", 3)).await.unwrap();
    assert_eq!(
        summary(&take_events(&mut s, 1).await),
        [("Added", "c".into(), 3)]
    );
    f.assert_clean();
}

async fn watch_selector_transitions(mk: fn(u64) -> Fixture) {
    let f = mk(HISTORY);
    let widgets = f.store.all::<Widget>();
    let list = widgets.list(&Selector::default()).await.unwrap();
    let mut s = widgets
        .watch(&sel("app=db"), &list.resource_version)
        .await
        .unwrap();

    widgets
        .create(&labelled("other", 0, &[("app", "web")]))
        .await
        .unwrap();
    widgets
        .create(&labelled("x", 1, &[("app", "db")]))
        .await
        .unwrap();
    widgets
        .patch("x", &json!({"spec": {"value": 2}}))
        .await
        .unwrap();
    widgets
        .patch("x", &json!({"metadata": {"labels": {"app": "web"}}}))
        .await
        .unwrap();
    widgets
        .patch("other", &json!({"spec": {"value": 5}}))
        .await
        .unwrap();
    widgets
        .patch("other", &json!({"metadata": {"labels": {"app": "db"}}}))
        .await
        .unwrap();

    let got = summary(&take_events(&mut s, 4).await);
    assert_eq!(
        got,
        [
            ("Added", "x".into(), 1),
            ("Modified", "x".into(), 2),
            ("Deleted", "x".into(), 2),
            ("Added", "other".into(), 5),
        ]
    );
    if let Some(mock) = &f.mock {
        assert!(
            mock.requests()
                .iter()
                .any(|r| r.query.get("watch").map(String::as_str) == Some("true")
                    && r.query.get("labelSelector").map(String::as_str) == Some("app=db"))
        );
    }
    f.assert_clean();
}

async fn concurrent_writers_never_lose_updates(mk: fn(u64) -> Fixture) {
    let f = mk(HISTORY);
    let widgets = f.store.all::<Widget>();
    widgets.create(&widget("counter", 0)).await.unwrap();
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let widgets = widgets.clone();
            tokio::spawn(async move {
                let mut conflicts = 0;
                for _ in 0..5 {
                    loop {
                        let mut w = widgets.get("counter").await.unwrap();
                        w.spec.value += 1;
                        match widgets.replace(&w).await {
                            Ok(_) => break,
                            Err(e) if e.is_conflict() => conflicts += 1,
                            Err(e) => panic!("{e}"),
                        }
                    }
                }
                conflicts
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let w = widgets.get("counter").await.unwrap();
    assert_eq!(w.spec.value, 40);
    assert_eq!(w.metadata.generation, Some(41));
    f.assert_clean();
}
