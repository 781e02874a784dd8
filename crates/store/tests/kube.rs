//! KubeStore-only behaviour: URL paths of the real CRD types, and answers of the API server
//! the mock in `common` does not produce (Status on delete, server errors).

mod common;

use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use common::mock::MockApiServer;
use http::{Request, Response};
use http_body_util::Full;
use hwameistor_store::{Deletion, EmbeddedStore, Error, KubeStore, Selector, Store};
use k8s_openapi::api::core::v1::ConfigMap;
use serde_json::{Value, json};

#[tokio::test]
async fn local_volume_uses_its_plural_path() {
    use hwameistor_api::LocalVolume;
    let mock = MockApiServer::<LocalVolume>::new(EmbeddedStore::in_memory().unwrap().into());
    let store: Store = KubeStore::new(mock.client()).into();
    let volumes = store.all::<LocalVolume>();
    volumes.create(&LocalVolume::test("pvc-1")).await.unwrap();
    let got = volumes.get("pvc-1").await.unwrap();
    assert_eq!(got.metadata.generation, Some(1));
    assert_eq!(
        volumes
            .list(&Selector::default())
            .await
            .unwrap()
            .items
            .len(),
        1
    );
    let paths: Vec<String> = mock.requests().into_iter().map(|r| r.path).collect();
    assert_eq!(
        paths,
        [
            "/apis/hwameistor.io/v1alpha1/localvolumes",
            "/apis/hwameistor.io/v1alpha1/localvolumes/pvc-1",
            "/apis/hwameistor.io/v1alpha1/localvolumes",
        ]
    );
    assert!(mock.violations().is_empty());
}

/// A fixed-answer API server: replies with `(status, body)` and records request paths.
fn fixed(code: u16, body: Value) -> (kube::Client, Arc<Mutex<Vec<String>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    let service = tower::service_fn(move |req: Request<kube::client::Body>| {
        log.lock()
            .unwrap()
            .push(format!("{} {}", req.method(), req.uri()));
        let body = body.clone();
        async move {
            Ok::<_, Infallible>(
                Response::builder()
                    .status(code)
                    .header("content-type", "application/json")
                    .body(Full::new(Bytes::from(serde_json::to_vec(&body).unwrap())))
                    .unwrap(),
            )
        }
    });
    (kube::Client::new(service, "default"), seen)
}

#[tokio::test]
async fn delete_answered_with_status_is_a_deletion() {
    let (client, seen) = fixed(
        200,
        json!({"apiVersion": "v1", "kind": "Status", "status": "Success", "metadata": {},
               "details": {"name": "cfg", "kind": "configmaps", "uid": "u-1"}}),
    );
    let store: Store = KubeStore::new(client).into();
    match store
        .namespaced::<ConfigMap>("ns")
        .delete("cfg")
        .await
        .unwrap()
    {
        Deletion::Deleted(cm) => {
            assert_eq!(cm.metadata.name.as_deref(), Some("cfg"));
            assert_eq!(cm.metadata.uid.as_deref(), Some("u-1"));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        seen.lock().unwrap().as_slice(),
        ["DELETE /api/v1/namespaces/ns/configmaps/cfg?"]
    );
}

fn status(code: u16, reason: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Status", "status": "Failure", "metadata": {},
           "code": code, "reason": reason, "message": format!("{reason} says the server")})
}

#[tokio::test]
async fn api_errors_map_to_store_errors() {
    let cases: [(u16, &str, &str); 6] = [
        (404, "NotFound", "NotFound"),
        (409, "AlreadyExists", "AlreadyExists"),
        (409, "Conflict", "Conflict"),
        (410, "Expired", "Gone"),
        (422, "Invalid", "Invalid"),
        (500, "InternalError", "Backend"),
    ];
    for (code, reason, want) in cases {
        let (client, _) = fixed(code, status(code, reason));
        let store: Store = KubeStore::new(client).into();
        let mut w = common::widget("w", 1);
        w.metadata.resource_version = Some("7".into());
        let err = store.all::<common::Widget>().replace(&w).await.unwrap_err();
        assert_eq!(err.reason(), want, "{code} {reason}: {err}");
        if let Error::Conflict {
            resource_version, ..
        } = &err
        {
            assert_eq!(resource_version, "7");
        }
    }
}
