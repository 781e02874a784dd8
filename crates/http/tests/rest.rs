//! REST handler tests: the real router over an EmbeddedStore in a tempdir, driven with
//! `tower::ServiceExt::oneshot` (no sockets).

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use http_body_util::BodyExt;
use hwameistor_http::{ApiConfig, Credentials, PREFIX, router};
use hwameistor_store::{EmbeddedStore, Store};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

struct Fixture {
    app: Router,
    _dir: tempfile::TempDir,
}

fn fixture_with(cfg: ApiConfig) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(dir.path().join("store.redb")).unwrap();
    let app = router(Store::from(store), cfg, CancellationToken::new());
    Fixture { app, _dir: dir }
}

fn fixture() -> Fixture {
    fixture_with(ApiConfig::default())
}

impl Fixture {
    async fn send(
        &self,
        method: Method,
        uri: &str,
        body: Option<Value>,
        headers: &[(&str, &str)],
    ) -> (StatusCode, Value) {
        let mut req = Request::builder().method(method).uri(uri);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = match body {
            Some(b) => req
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(b.to_string())),
            None => req.body(Body::empty()),
        }
        .unwrap();
        let resp = self.app.clone().oneshot(req).await.unwrap();
        let status = resp.status();
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        let v = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()));
        (status, v)
    }

    async fn call(&self, method: Method, uri: &str, body: Option<Value>) -> (StatusCode, Value) {
        self.send(method, uri, body, &[]).await
    }
}

fn lsn(name: &str, ip: &str, labels: Value) -> Value {
    json!({
        "apiVersion": "hwameistor.io/v1alpha1",
        "kind": "LocalStorageNode",
        "metadata": {"name": name, "labels": labels},
        "spec": {"hostname": name, "storageIP": ip},
    })
}

fn lv(name: &str) -> Value {
    json!({
        "metadata": {"name": name},
        "spec": {"requiredCapacityBytes": 1073741824i64, "poolName": "LocalStorage_PoolHDD", "replicaNumber": 1},
    })
}

#[tokio::test]
async fn create_get_list_and_selector() {
    let f = fixture();
    let url = format!("{PREFIX}/localstoragenodes");
    let (st, created) = f
        .call(
            Method::POST,
            &url,
            Some(lsn("n1", "10.0.0.1", json!({"zone": "a"}))),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{created}");
    assert!(
        created["metadata"]["resourceVersion"]
            .as_str()
            .is_some_and(|s| !s.is_empty())
    );
    assert!(created["metadata"]["creationTimestamp"].is_string());
    f.call(
        Method::POST,
        &url,
        Some(lsn("n2", "10.0.0.2", json!({"zone": "b"}))),
    )
    .await;

    let (st, got) = f.call(Method::GET, &format!("{url}/n1"), None).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(got["spec"]["storageIP"], json!("10.0.0.1"));
    assert_eq!(got["kind"], json!("LocalStorageNode"));

    let (st, list) = f.call(Method::GET, &url, None).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(list["kind"], json!("LocalStorageNodeList"));
    assert_eq!(list["items"].as_array().unwrap().len(), 2);
    assert!(list["metadata"]["resourceVersion"].is_string());

    let (st, list) = f
        .call(Method::GET, &format!("{url}?labelSelector=zone%3Db"), None)
        .await;
    assert_eq!(st, StatusCode::OK);
    let names: Vec<_> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["metadata"]["name"].clone())
        .collect();
    assert_eq!(names, vec![json!("n2")]);

    let (st, body) = f
        .call(
            Method::GET,
            &format!("{url}?labelSelector=zone%20in%20(("),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["errcode"], json!(400));
}

#[tokio::test]
async fn errors_map_to_statuses_with_json_body() {
    let f = fixture();
    let url = format!("{PREFIX}/localvolumes");
    let (st, body) = f.call(Method::GET, &format!("{url}/missing"), None).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    assert_eq!(body["errcode"], json!(404));
    assert_eq!(body["reason"], json!("NotFound"));
    assert!(body["description"].as_str().unwrap().contains("missing"));

    let (st, _) = f.call(Method::POST, &url, Some(lv("v1"))).await;
    assert_eq!(st, StatusCode::CREATED);
    let (st, body) = f.call(Method::POST, &url, Some(lv("v1"))).await;
    assert_eq!(st, StatusCode::CONFLICT);
    assert_eq!(body["reason"], json!("AlreadyExists"));

    let (st, body) = f
        .call(Method::GET, &format!("{PREFIX}/nosuchthings"), None)
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    assert_eq!(body["errcode"], json!(404));

    // wrong kind in the body, wrong field type, wrong apiVersion: 422
    let mut wrong = lv("v2");
    wrong["kind"] = json!("LocalDisk");
    let (st, body) = f.call(Method::POST, &url, Some(wrong)).await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let (st, _) = f
        .call(
            Method::POST,
            &url,
            Some(json!({"metadata": {"name": "v3"}, "spec": {"requiredCapacityBytes": "lots"}})),
        )
        .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY);
    let mut wrong = lv("v4");
    wrong["apiVersion"] = json!("v1");
    let (st, _) = f.call(Method::POST, &url, Some(wrong)).await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY);

    // malformed JSON: 400 with our body
    let req = Request::post(&url)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from("{nope"))
        .unwrap();
    let resp = f.app.clone().oneshot(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let b: Value =
        serde_json::from_slice(&resp.into_body().collect().await.unwrap().to_bytes()).unwrap();
    assert_eq!(b["errcode"], json!(400));
}

#[tokio::test]
async fn replace_conflict_status_and_delete() {
    let f = fixture();
    let url = format!("{PREFIX}/localvolumes");
    let (_, created) = f.call(Method::POST, &url, Some(lv("v1"))).await;
    let rv1 = created["metadata"]["resourceVersion"].clone();

    let mut update = created.clone();
    update["spec"]["requiredCapacityBytes"] = json!(2147483648i64);
    update["status"] = json!({"state": "Ready"});
    let (st, replaced) = f
        .call(Method::PUT, &format!("{url}/v1"), Some(update.clone()))
        .await;
    assert_eq!(st, StatusCode::OK, "{replaced}");
    assert_eq!(
        replaced["spec"]["requiredCapacityBytes"],
        json!(2147483648i64)
    );
    // replace ignores status, like a CRD with the status subresource
    assert_ne!(replaced["status"]["state"], json!("Ready"));
    assert_ne!(replaced["metadata"]["resourceVersion"], rv1);

    // a stale resourceVersion conflicts
    let (st, body) = f
        .call(Method::PUT, &format!("{url}/v1"), Some(update.clone()))
        .await;
    assert_eq!(st, StatusCode::CONFLICT);
    assert_eq!(body["reason"], json!("Conflict"));

    // name in body must match the URL
    let (st, _) = f
        .call(Method::PUT, &format!("{url}/other"), Some(replaced.clone()))
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);

    // status write changes only status
    let mut s = replaced.clone();
    s["status"] = json!({"state": "Ready", "usedCapacityBytes": 4096});
    s["spec"]["replicaNumber"] = json!(2);
    let (st, after) = f
        .call(Method::PUT, &format!("{url}/v1/status"), Some(s))
        .await;
    assert_eq!(st, StatusCode::OK, "{after}");
    assert_eq!(after["status"]["state"], json!("Ready"));
    assert_eq!(after["spec"]["replicaNumber"], json!(1));

    // merge patch
    let (st, patched) = f
        .call(
            Method::PATCH,
            &format!("{url}/v1"),
            Some(json!({"spec": {"delete": true}})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{patched}");
    assert_eq!(patched["spec"]["delete"], json!(true));

    let (st, gone) = f.call(Method::DELETE, &format!("{url}/v1"), None).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(gone["metadata"]["name"], json!("v1"));
    let (st, _) = f.call(Method::GET, &format!("{url}/v1"), None).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let (st, _) = f.call(Method::DELETE, &format!("{url}/v1"), None).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn table_output_has_kubectl_columns() {
    let f = fixture();
    f.call(
        Method::POST,
        &format!("{PREFIX}/localstoragenodes"),
        Some(lsn("n1", "10.6.234.40", json!({}))),
    )
    .await;
    let (st, t) = f
        .send(
            Method::GET,
            &format!("{PREFIX}/localstoragenodes"),
            None,
            &[(
                "accept",
                "application/json;as=Table;v=v1;g=meta.k8s.io,application/json",
            )],
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(t["kind"], json!("Table"));
    let cols: Vec<(String, i64)> = t["columnDefinitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["name"].as_str().unwrap().to_uppercase(),
                c["priority"].as_i64().unwrap(),
            )
        })
        .collect();
    let narrow: Vec<_> = cols
        .iter()
        .filter(|(_, p)| *p == 0)
        .map(|(n, _)| n.as_str())
        .collect();
    assert_eq!(narrow, ["NAME", "IP", "STATUS", "AGE"]);
    assert!(
        cols.iter().any(|(n, p)| n.contains("HDD") && *p == 1),
        "{cols:?}"
    );
    let row = &t["rows"][0]["cells"];
    assert_eq!(row[0], json!("n1"));
    assert_eq!(row[1], json!("10.6.234.40"));
    assert!(
        row.as_array()
            .unwrap()
            .last()
            .unwrap()
            .as_str()
            .unwrap()
            .ends_with('s'),
        "{row}"
    );

    // ?table=1 works too, and for a single object
    f.call(
        Method::POST,
        &format!("{PREFIX}/localvolumes"),
        Some(lv("v1")),
    )
    .await;
    let (_, t) = f
        .call(
            Method::GET,
            &format!("{PREFIX}/localvolumes/v1?table=1"),
            None,
        )
        .await;
    let narrow: Vec<String> = t["columnDefinitions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["priority"] == json!(0))
        .map(|c| c["name"].as_str().unwrap().to_uppercase())
        .collect();
    assert_eq!(
        narrow,
        [
            "NAME",
            "POOL",
            "REPLICAS",
            "CAPACITY",
            "USED",
            "STATE",
            "PUBLISHED",
            "AGE"
        ]
    );
    assert_eq!(t["rows"][0]["cells"][1], json!("LocalStorage_PoolHDD"));
    assert_eq!(t["rows"][0]["cells"][3], json!(1073741824i64));
}

#[tokio::test]
async fn discovery_lists_every_kind_with_short_names() {
    let f = fixture();
    let (st, d) = f.call(Method::GET, PREFIX, None).await;
    assert_eq!(st, StatusCode::OK);
    let res = d["resources"].as_array().unwrap();
    let find = |plural: &str| res.iter().find(|r| r["name"] == json!(plural)).cloned();
    for (plural, short) in [
        ("localdisks", "ld"),
        ("localdiskclaims", "ldc"),
        ("localdisknodes", "ldn"),
        ("localstoragenodes", "lsn"),
        ("localvolumes", "lv"),
        ("localvolumereplicas", "lvr"),
        ("localvolumesnapshots", "lvs"),
        ("events", "evt"),
        ("clusters", "hmcluster"),
    ] {
        let r = find(plural).unwrap_or_else(|| panic!("{plural} missing"));
        assert!(
            r["shortNames"].as_array().unwrap().contains(&json!(short)),
            "{r}"
        );
    }
    assert!(find("resizepolicies").is_some());
    // every CRD the api crate defines is served
    for crd in hwameistor_api::all_crds() {
        assert!(
            find(&crd.spec.names.plural).is_some(),
            "{} not served",
            crd.spec.names.plural
        );
    }
}

#[tokio::test]
async fn auth_when_enabled() {
    let f = fixture_with(ApiConfig {
        auth: Some(Credentials {
            access_id: "admin".into(),
            secret_key: "s3cret".into(),
        }),
    });
    let url = format!("{PREFIX}/localvolumes");
    let (st, body) = f.call(Method::GET, &url, None).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    assert_eq!(body["errcode"], json!(401));
    let (st, _) = f.call(Method::GET, "/healthz", None).await;
    assert_eq!(st, StatusCode::OK);
    let (_, info) = f
        .call(Method::GET, &format!("{PREFIX}/cluster/auth/info"), None)
        .await;
    assert_eq!(info["enabled"], json!(true));

    let (st, _) = f
        .call(
            Method::POST,
            &format!("{PREFIX}/cluster/auth/auth"),
            Some(json!({"accessId": "admin", "secretKey": "no"})),
        )
        .await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    let (st, tok) = f
        .call(
            Method::POST,
            &format!("{PREFIX}/cluster/auth/auth"),
            Some(json!({"accessId": "admin", "secretKey": "s3cret"})),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    let token = tok["token"].as_str().unwrap().to_string();
    assert!(tok["expireAt"].as_i64().unwrap() > 0);

    let (st, _) = f
        .send(Method::GET, &url, None, &[("authorization", &token)])
        .await;
    assert_eq!(st, StatusCode::OK);
    let bearer = format!("Bearer {token}");
    let (st, _) = f
        .send(Method::GET, &url, None, &[("authorization", &bearer)])
        .await;
    assert_eq!(st, StatusCode::OK);
    let (st, _) = f
        .send(Method::GET, &url, None, &[("authorization", "forged")])
        .await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);

    let (st, _) = f
        .send(
            Method::POST,
            &format!("{PREFIX}/cluster/auth/logout"),
            None,
            &[("authorization", &token)],
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    let (st, _) = f
        .send(Method::GET, &url, None, &[("authorization", &token)])
        .await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn auth_is_off_by_default() {
    let f = fixture();
    let (st, _) = f
        .call(Method::GET, &format!("{PREFIX}/localvolumes"), None)
        .await;
    assert_eq!(st, StatusCode::OK);
    let (_, info) = f
        .call(Method::GET, &format!("{PREFIX}/cluster/auth/info"), None)
        .await;
    assert_eq!(info["enabled"], json!(false));
}

#[tokio::test]
async fn cluster_volume_create_validates_params() {
    let f = fixture();
    let url = format!("{PREFIX}/cluster/volumes");
    // no pools anywhere and no poolClass: refused with a message naming the parameter
    let (st, body) = f
        .call(
            Method::POST,
            &url,
            Some(json!({"name": "v1", "capacity": "1Gi"})),
        )
        .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(body["description"].as_str().unwrap().contains("poolClass"));

    let (st, body) = f
        .call(Method::POST, &url, Some(json!({"name": "v1", "capacity": "1Gi", "parameters": {"poolClass": "SSD", "bogus": "1"}})))
        .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        body["description"].as_str().unwrap().contains("bogus"),
        "{body}"
    );

    let (st, body) = f
        .call(
            Method::POST,
            &url,
            Some(json!({"name": "v1", "capacity": "lots", "parameters": {"poolClass": "SSD"}})),
        )
        .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{body}");

    // a node with an SSD pool makes SSD the default
    let mut node = lsn("n1", "10.0.0.1", json!({}));
    let (_, created) = f
        .call(
            Method::POST,
            &format!("{PREFIX}/localstoragenodes"),
            Some(node.clone()),
        )
        .await;
    node = created;
    node["status"] = json!({"state": "Ready", "pools": {"LocalStorage_PoolSSD": {
        "name": "LocalStorage_PoolSSD", "class": "SSD", "type": "REGULAR",
        "totalCapacityBytes": 10737418240i64, "usedCapacityBytes": 0, "freeCapacityBytes": 10737418240i64,
        "volumeCapacityBytesLimit": 10737418240i64, "totalVolumeCount": 1000, "usedVolumeCount": 0,
        "freeVolumeCount": 1000}}});
    let (st, b) = f
        .call(
            Method::PUT,
            &format!("{PREFIX}/localstoragenodes/n1/status"),
            Some(node),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{b}");

    let (st, v) = f
        .call(
            Method::POST,
            &url,
            Some(json!({"name": "v1", "capacity": "1Gi", "parameters": {"replicaNumber": "1"}})),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    assert_eq!(v["spec"]["poolName"], json!("LocalStorage_PoolSSD"));
    assert_eq!(v["spec"]["requiredCapacityBytes"], json!(1073741824i64));
    assert_eq!(v["spec"]["replicaNumber"], json!(1));

    let (_, list) = f
        .call(Method::GET, &format!("{url}?state=Ready"), None)
        .await;
    assert_eq!(list["items"].as_array().unwrap().len(), 0);
    let (_, list) = f.call(Method::GET, &url, None).await;
    assert_eq!(list["items"].as_array().unwrap().len(), 1);

    // pools
    let (_, pools) = f
        .call(Method::GET, &format!("{PREFIX}/cluster/pools"), None)
        .await;
    assert_eq!(pools["items"][0]["poolName"], json!("LocalStorage_PoolSSD"));
    assert_eq!(pools["items"][0]["nodeName"], json!("n1"));
    let (st, _) = f
        .call(
            Method::GET,
            &format!("{PREFIX}/cluster/pools/LocalStorage_PoolHDD"),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND);

    // expand: shrinking refused, growing creates a LocalVolumeExpand named after the volume
    let (st, _) = f
        .call(
            Method::POST,
            &format!("{url}/v1/expand"),
            Some(json!({"targetCapacity": "512Mi"})),
        )
        .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY);
    let (st, e) = f
        .call(
            Method::POST,
            &format!("{url}/v1/expand"),
            Some(json!({"targetCapacity": "2Gi"})),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{e}");
    let (_, e) = f
        .call(
            Method::GET,
            &format!("{PREFIX}/localvolumeexpands/v1"),
            None,
        )
        .await;
    assert_eq!(e["spec"]["requiredCapacityBytes"], json!(2147483648i64));
    assert_eq!(e["spec"]["volumeName"], json!("v1"));

    // delete marks spec.delete
    let (st, v) = f.call(Method::DELETE, &format!("{url}/v1"), None).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(v["spec"]["delete"], json!(true));
}

#[tokio::test]
async fn disk_reserve_and_owner_by_path_or_name() {
    let f = fixture();
    let disk = json!({"metadata": {"name": "localdisk-1"}, "spec": {"nodeName": "n1", "devicePath": "/dev/sdb"}});
    let (st, b) = f
        .call(Method::POST, &format!("{PREFIX}/localdisks"), Some(disk))
        .await;
    assert_eq!(st, StatusCode::CREATED, "{b}");
    let (st, d) = f
        .call(
            Method::POST,
            &format!("{PREFIX}/cluster/nodes/n1/disks/sdb"),
            Some(json!({"reserve": true})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{d}");
    assert_eq!(d["spec"]["reserved"], json!(true));
    let (st, d) = f
        .call(
            Method::POST,
            &format!("{PREFIX}/cluster/nodes/n1/disks/%2Fdev%2Fsdb/owner"),
            Some(json!({"owner": "local-disk-manager"})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{d}");
    assert_eq!(d["spec"]["owner"], json!("local-disk-manager"));
    let (st, d) = f
        .call(
            Method::POST,
            &format!("{PREFIX}/cluster/disks/localdisk-1/reserve"),
            Some(json!({"reserve": false})),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    // false is the default and not serialized
    assert_ne!(d["spec"]["reserved"], json!(true));
    let (st, _) = f
        .call(
            Method::POST,
            &format!("{PREFIX}/cluster/nodes/n2/disks/sdb"),
            Some(json!({"reserve": true})),
        )
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let (_, disks) = f
        .call(
            Method::GET,
            &format!("{PREFIX}/cluster/nodes/n1/disks"),
            None,
        )
        .await;
    assert_eq!(disks["items"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn watch_streams_json_lines_from_a_resource_version() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::from(EmbeddedStore::open(dir.path().join("s.redb")).unwrap());
    let shutdown = CancellationToken::new();
    let app = router(store, ApiConfig::default(), shutdown.clone());
    let create = |name: &str| {
        Request::post(format!("{PREFIX}/localvolumes"))
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(lv(name).to_string()))
            .unwrap()
    };
    let resp = app.clone().oneshot(create("a")).await.unwrap();
    let a: Value =
        serde_json::from_slice(&resp.into_body().collect().await.unwrap().to_bytes()).unwrap();
    let rv = a["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_string();
    app.clone().oneshot(create("b")).await.unwrap();

    let resp = app
        .clone()
        .oneshot(
            Request::get(format!(
                "{PREFIX}/localvolumes?watch=true&resourceVersion={rv}"
            ))
            .body(Body::empty())
            .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let mut body = resp.into_body();
    app.clone().oneshot(create("c")).await.unwrap();
    let mut buf = String::new();
    while buf.lines().count() < 2 {
        let frame = tokio::time::timeout(std::time::Duration::from_secs(5), body.frame())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        buf.push_str(std::str::from_utf8(frame.data_ref().unwrap()).unwrap());
    }
    let events: Vec<Value> = buf
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(events[0]["type"], json!("ADDED"));
    assert_eq!(events[0]["object"]["metadata"]["name"], json!("b"));
    assert_eq!(events[1]["object"]["metadata"]["name"], json!("c"));
    // shutdown ends the stream
    shutdown.cancel();
    let end = tokio::time::timeout(std::time::Duration::from_secs(5), body.frame())
        .await
        .unwrap();
    assert!(end.is_none());
}
