//! `DELETE /cluster/volumes/<name>` (what `hwameictl volume delete` calls) refuses a volume
//! that still has snapshots, with 409 and the snapshots' names; once they are being deleted
//! the request is accepted (the controller removes the replicas when they are gone).

use hwameistor_api::{LocalVolume, LocalVolumeSnapshot, LocalVolumeSnapshotSpec};
use hwameistor_http::{ApiConfig, PREFIX, router};
use hwameistor_store::{EmbeddedStore, Store};
use kube::api::ObjectMeta;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

async fn delete(app: &axum::Router, name: &str) -> (u16, Value) {
    use http_body_util::BodyExt;
    let req = axum::http::Request::builder()
        .method("DELETE")
        .uri(format!("{PREFIX}/cluster/volumes/{name}"))
        .body(axum::body::Body::empty())
        .unwrap();
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status().as_u16();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

fn snapshot(name: &str, volume: &str) -> LocalVolumeSnapshot {
    LocalVolumeSnapshot {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        spec: LocalVolumeSnapshotSpec {
            source_volume: volume.into(),
            required_capacity_bytes: 1 << 30,
            ..Default::default()
        },
        status: None,
    }
}

#[tokio::test]
async fn volume_with_snapshots_is_refused_until_they_are_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::from(EmbeddedStore::open(dir.path().join("store.redb")).unwrap());
    let app = router(
        store.clone(),
        ApiConfig::default(),
        CancellationToken::new(),
    );
    let mut lv = LocalVolume::test("pvc-1");
    lv.spec.required_capacity_bytes = 1 << 30;
    store.all::<LocalVolume>().create(&lv).await.unwrap();
    store
        .all::<LocalVolume>()
        .create(&LocalVolume::test("pvc-2"))
        .await
        .unwrap();
    let snaps = store.all::<LocalVolumeSnapshot>();
    snaps.create(&snapshot("snap-b", "pvc-1")).await.unwrap();
    snaps.create(&snapshot("snap-a", "pvc-1")).await.unwrap();
    snaps
        .create(&snapshot("snap-other", "pvc-2"))
        .await
        .unwrap();

    let (st, body) = delete(&app, "pvc-1").await;
    assert_eq!(st, 409, "{body}");
    assert_eq!(body["reason"], json!("Conflict"));
    let d = body["description"].as_str().unwrap();
    assert!(
        d.contains("volume pvc-1 has 2 snapshot(s): snap-a, snap-b; delete them first"),
        "{d}"
    );
    let v = store.all::<LocalVolume>().get("pvc-1").await.unwrap();
    assert!(!v.spec.delete, "nothing was marked");

    // Snapshots on their way out: accepted.
    for s in ["snap-a", "snap-b"] {
        snaps
            .patch(s, &json!({"spec": {"delete": true}}))
            .await
            .unwrap();
    }
    let (st, body) = delete(&app, "pvc-1").await;
    assert_eq!(st, 200, "{body}");
    assert!(
        store
            .all::<LocalVolume>()
            .get("pvc-1")
            .await
            .unwrap()
            .spec
            .delete
    );

    let (st, _) = delete(&app, "missing").await;
    assert_eq!(st, 404);
}
