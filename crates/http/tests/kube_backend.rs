//! The same router over the KubeStore (the cluster's `apiserver` component): requests go to
//! the Kubernetes API paths, answers come back as tables and errors keep their statuses.
//! The Kubernetes API is a mock tower service.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use hwameistor_http::{ApiConfig, PREFIX, router};
use hwameistor_store::{KubeStore, Store};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

fn lv(name: &str) -> Value {
    json!({
        "apiVersion": "hwameistor.io/v1alpha1", "kind": "LocalVolume",
        "metadata": {"name": name, "resourceVersion": "7", "creationTimestamp": "2024-01-01T00:00:00Z"},
        "spec": {"requiredCapacityBytes": 1073741824i64, "poolName": "LocalStorage_PoolSSD", "replicaNumber": 1},
        "status": {"state": "Ready", "publishedNode": "n1"},
    })
}

/// A Kubernetes API that knows one LocalVolume and records the paths it was asked for.
fn mock_client(seen: Arc<Mutex<Vec<String>>>) -> kube::Client {
    let service = tower::service_fn(move |req: Request<kube::client::Body>| {
        let seen = seen.clone();
        async move {
            let path = req.uri().path().to_string();
            seen.lock()
                .unwrap()
                .push(format!("{} {}", req.method(), req.uri()));
            let base = "/apis/hwameistor.io/v1alpha1/localvolumes";
            let (status, body) = if path == base {
                (
                    200,
                    json!({"apiVersion": "hwameistor.io/v1alpha1", "kind": "LocalVolumeList",
                             "metadata": {"resourceVersion": "9"}, "items": [lv("pvc-1")]}),
                )
            } else if path == format!("{base}/pvc-1") {
                (200, lv("pvc-1"))
            } else {
                (
                    404,
                    json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound",
                             "code": 404, "message": "localvolumes.hwameistor.io \"x\" not found"}),
                )
            };
            let resp = axum::http::Response::builder()
                .status(status)
                .header("content-type", "application/json")
                .body(kube::client::Body::from(body.to_string().into_bytes()))
                .unwrap();
            Ok::<_, Infallible>(resp)
        }
    });
    kube::Client::new(service, "default")
}

async fn get(app: &axum::Router, uri: &str) -> (StatusCode, Value) {
    let resp = app
        .clone()
        .oneshot(Request::get(uri).body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = resp.status();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&bytes).unwrap())
}

#[tokio::test]
async fn router_over_kube_store() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let store = Store::from(KubeStore::new(mock_client(seen.clone())));
    let app = router(store, ApiConfig::default(), CancellationToken::new());

    let (st, t) = get(&app, &format!("{PREFIX}/localvolumes?table=1")).await;
    assert_eq!(st, StatusCode::OK, "{t}");
    assert_eq!(t["rows"][0]["cells"][0], json!("pvc-1"));
    assert_eq!(t["rows"][0]["cells"][1], json!("LocalStorage_PoolSSD"));
    assert_eq!(t["rows"][0]["cells"][5], json!("Ready"));

    let (st, v) = get(&app, &format!("{PREFIX}/localvolumes/pvc-1")).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(v["status"]["publishedNode"], json!("n1"));

    let (st, e) = get(&app, &format!("{PREFIX}/localvolumes/missing")).await;
    assert_eq!(st, StatusCode::NOT_FOUND, "{e}");
    assert_eq!(e["errcode"], json!(404));

    let (st, list) = get(&app, &format!("{PREFIX}/cluster/volumes?state=Ready")).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(list["items"].as_array().unwrap().len(), 1);

    let seen = seen.lock().unwrap().clone();
    assert!(
        seen.iter()
            .any(|r| r.starts_with("GET /apis/hwameistor.io/v1alpha1/localvolumes")),
        "{seen:?}"
    );
    assert!(
        seen.iter()
            .any(|r| r == "GET /apis/hwameistor.io/v1alpha1/localvolumes/missing"),
        "{seen:?}"
    );
}
