//! Shared test fixtures: the test CRD, backends, and the mock API server.

#![allow(dead_code)]

pub mod mock;

use std::collections::BTreeMap;
use std::time::Duration;

use futures::StreamExt;
use hwameistor_store::embedded::EmbeddedOptions;
use hwameistor_store::{EmbeddedStore, Event, KubeStore, Store, WatchStream};
use kube::CustomResource;
use kube::api::ObjectMeta;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A tiny cluster-scoped CRD for tests: `widgets.hwameistor.io`.
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema, Default)]
#[kube(
    group = "hwameistor.io",
    version = "v1alpha1",
    kind = "Widget",
    plural = "widgets",
    status = "WidgetStatus"
)]
pub struct WidgetSpec {
    pub value: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema, Default)]
pub struct WidgetStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
}

pub fn widget(name: &str, value: i64) -> Widget {
    Widget::new(name, WidgetSpec { value, note: None })
}

pub fn labelled(name: &str, value: i64, labels: &[(&str, &str)]) -> Widget {
    let mut w = widget(name, value);
    w.metadata = ObjectMeta {
        name: Some(name.into()),
        labels: Some(
            labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<BTreeMap<_, _>>(),
        ),
        ..Default::default()
    };
    w
}

/// One backend under test, plus what it needs to stay alive.
pub struct Fixture {
    pub store: Store,
    /// The mock API server's request log (kube backend only).
    pub mock: Option<mock::MockApiServer<Widget>>,
    pub dir: Option<tempfile::TempDir>,
    pub backend: &'static str,
}

impl Fixture {
    pub fn embedded(history: u64) -> Fixture {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = EmbeddedStore::open_with(
            dir.path().join("store.redb"),
            EmbeddedOptions {
                history,
                ..Default::default()
            },
        )
        .expect("open embedded store");
        Fixture {
            store: store.into(),
            mock: None,
            dir: Some(dir),
            backend: "embedded",
        }
    }

    pub fn kube(history: u64) -> Fixture {
        let backing = EmbeddedStore::in_memory_with(EmbeddedOptions {
            history,
            ..Default::default()
        })
        .expect("memory store");
        let mock = mock::MockApiServer::<Widget>::new(backing.into());
        let client = mock.client();
        Fixture {
            store: KubeStore::new(client).into(),
            mock: Some(mock),
            dir: None,
            backend: "kube",
        }
    }

    /// Panics if the mock API server saw a request it does not understand.
    pub fn assert_clean(&self) {
        if let Some(mock) = &self.mock {
            let bad = mock.violations();
            assert!(bad.is_empty(), "unexpected requests: {bad:#?}");
        }
    }
}

/// Take the next `n` events, failing after a timeout.
pub async fn take_events(stream: &mut WatchStream<Widget>, n: usize) -> Vec<Event<Widget>> {
    let mut out = Vec::new();
    while out.len() < n {
        let next = tokio::time::timeout(Duration::from_secs(10), stream.next())
            .await
            .unwrap_or_else(|_| panic!("timed out after {} of {n} events: {out:?}", out.len()));
        match next {
            Some(Ok(e)) => out.push(e),
            Some(Err(e)) => panic!("watch failed after {out:?}: {e}"),
            None => panic!("watch ended after {out:?}"),
        }
    }
    out
}

/// `(type, name, spec.value)` of events, for compact assertions.
pub fn summary(events: &[Event<Widget>]) -> Vec<(&'static str, String, i64)> {
    events
        .iter()
        .map(|e| {
            let t = match e {
                Event::Added(_) => "Added",
                Event::Modified(_) => "Modified",
                Event::Deleted(_) => "Deleted",
            };
            let o = e.object();
            (t, o.metadata.name.clone().unwrap_or_default(), o.spec.value)
        })
        .collect()
}
