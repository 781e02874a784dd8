//! hwameictl against the real REST router on 127.0.0.1:0 (in-process), asserting what it
//! prints and its exit codes.

use hwameistor_http::{ApiConfig, router, serve};
use hwameistor_store::{EmbeddedStore, Store};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

struct Server {
    url: String,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<()>,
    _dir: tempfile::TempDir,
}

impl Server {
    async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::from(EmbeddedStore::open(dir.path().join("store.redb")).unwrap());
        let shutdown = CancellationToken::new();
        let app = router(store, ApiConfig::default(), shutdown.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let s = shutdown.clone();
        let task = tokio::spawn(async move { serve(listener, app, s).await.unwrap() });
        Server {
            url,
            shutdown,
            task,
            _dir: dir,
        }
    }

    /// Run hwameictl with `args`; (exit code, stdout, stderr).
    async fn ctl(&self, args: &[&str]) -> (i32, String, String) {
        let mut argv = vec!["hwameictl", "--server", &self.url];
        argv.extend_from_slice(args);
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let code = hwameistor_cli::main_with_args(argv, &mut out, &mut err).await;
        (
            code,
            String::from_utf8(out).unwrap(),
            String::from_utf8(err).unwrap(),
        )
    }

    async fn post(&self, plural: &str, body: Value) -> Value {
        let c = reqwest_client();
        let r = c
            .post(format!("{}/apis/hwameistor.io/v1alpha1/{plural}", self.url))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "{}", r.text().await.unwrap());
        r.json().await.unwrap()
    }

    async fn put_status(&self, plural: &str, obj: Value) {
        let name = obj["metadata"]["name"].as_str().unwrap().to_string();
        let r = reqwest_client()
            .put(format!(
                "{}/apis/hwameistor.io/v1alpha1/{plural}/{name}/status",
                self.url
            ))
            .json(&obj)
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "{}", r.text().await.unwrap());
    }

    async fn stop(self) {
        self.shutdown.cancel();
        self.task.await.unwrap();
    }
}

fn reqwest_client() -> reqwest::Client {
    reqwest::Client::new()
}

fn header(out: &str) -> Vec<&str> {
    out.lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect()
}

async fn add_node(s: &Server, name: &str, ip: &str, free: i64) {
    let mut n = s
        .post(
            "localstoragenodes",
            json!({"metadata": {"name": name}, "spec": {"hostname": name, "storageIP": ip}}),
        )
        .await;
    n["status"] = json!({"state": "Ready", "pools": {"LocalStorage_PoolHDD": {
        "name": "LocalStorage_PoolHDD", "class": "HDD", "type": "REGULAR",
        "totalCapacityBytes": free, "usedCapacityBytes": 0, "freeCapacityBytes": free,
        "volumeCapacityBytesLimit": free, "totalVolumeCount": 1000, "usedVolumeCount": 0,
        "freeVolumeCount": 1000, "disks": [{"devPath": "/dev/sdb", "capacityBytes": free}]}}});
    s.put_status("localstoragenodes", n).await;
}

#[tokio::test]
async fn get_lsn_prints_kubectl_columns() {
    let s = Server::start().await;
    let (code, out, err) = s.ctl(&["get", "lsn"]).await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "");
    assert!(err.contains("No resources found"));

    add_node(&s, "10-6-234-40", "10.6.234.40", 10737418240).await;
    add_node(&s, "10-6-234-41", "10.6.234.41", 5368709120).await;
    for kind in [
        "lsn",
        "localstoragenodes",
        "LocalStorageNode",
        "localstoragenode",
    ] {
        let (code, out, err) = s.ctl(&["get", kind]).await;
        assert_eq!(code, 0, "{err}");
        assert_eq!(header(&out), ["NAME", "IP", "STATUS", "AGE"], "{out}");
        let row: Vec<_> = out.lines().nth(1).unwrap().split_whitespace().collect();
        assert_eq!(&row[..3], ["10-6-234-40", "10.6.234.40", "Ready"]);
        assert!(row[3].ends_with('s'), "{out}");
        assert_eq!(out.lines().count(), 3);
    }
    // -o wide adds the pools' free capacity
    let (_, out, _) = s.ctl(&["get", "lsn", "-o", "wide"]).await;
    let h = out.lines().next().unwrap();
    assert!(
        h.starts_with("NAME") && h.contains("POOLHDD") && h.ends_with("AGE"),
        "{h}"
    );
    assert!(out.contains("10737418240"));
    // node list is the same table
    let (_, out2, _) = s.ctl(&["node", "list"]).await;
    assert_eq!(header(&out2), ["NAME", "IP", "STATUS", "AGE"]);
    let (code, out, _) = s.ctl(&["node", "get", "10-6-234-41"]).await;
    assert_eq!(code, 0);
    assert_eq!(out.lines().count(), 2);
    // pool list
    let (code, out, _) = s.ctl(&["pool", "list"]).await;
    assert_eq!(code, 0);
    assert_eq!(
        header(&out),
        [
            "POOL", "NODE", "CLASS", "TOTAL", "USED", "FREE", "VOLUMES", "DISKS"
        ]
    );
    assert!(
        out.contains("LocalStorage_PoolHDD   10-6-234-40   HDD"),
        "{out}"
    );
    s.stop().await;
}

#[tokio::test]
async fn volume_lifecycle_and_lv_columns() {
    let s = Server::start().await;
    add_node(&s, "n1", "10.0.0.1", 10737418240).await;
    let (code, out, err) = s
        .ctl(&[
            "volume",
            "create",
            "vol-1",
            "--size",
            "1Gi",
            "--param",
            "replicaNumber=1",
        ])
        .await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.trim(), "localvolume.hwameistor.io/vol-1 created");

    for args in [
        &["get", "lv"][..],
        &["volume", "list"],
        &["volume", "get", "vol-1"],
        &["get", "localvolume", "vol-1"],
    ] {
        let (code, out, err) = s.ctl(args).await;
        assert_eq!(code, 0, "{err}");
        assert_eq!(
            header(&out),
            [
                "NAME",
                "POOL",
                "REPLICAS",
                "CAPACITY",
                "USED",
                "STATE",
                "PUBLISHED",
                "AGE"
            ],
            "{out}"
        );
        let row: Vec<_> = out.lines().nth(1).unwrap().split_whitespace().collect();
        // USED, STATE and PUBLISHED are empty until the controller reports
        assert_eq!(
            &row[..4],
            ["vol-1", "LocalStorage_PoolHDD", "1", "1073741824"],
            "{out}"
        );
    }
    let (_, out, _) = s.ctl(&["get", "lv", "-o", "wide"]).await;
    assert_eq!(
        header(&out),
        [
            "NAME",
            "POOL",
            "REPLICAS",
            "CAPACITY",
            "USED",
            "STATE",
            "RESOURCE",
            "PUBLISHED",
            "FSTYPE",
            "GROUP",
            "AGE"
        ]
    );

    // JSON and YAML output
    let (_, out, _) = s.ctl(&["volume", "get", "vol-1", "-o", "json"]).await;
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["spec"]["requiredCapacityBytes"], json!(1073741824i64));
    let (_, out, _) = s.ctl(&["get", "lv", "-o", "yaml"]).await;
    assert!(
        out.contains("kind: LocalVolumeList") && out.contains("name: vol-1"),
        "{out}"
    );

    // a bad parameter is refused by the shared parser, naming it
    let (code, _, err) = s
        .ctl(&[
            "volume",
            "create",
            "vol-2",
            "--size",
            "1Gi",
            "-p",
            "poolClass=Tape",
        ])
        .await;
    assert_eq!(code, 1);
    assert!(err.contains("poolClass"), "{err}");
    let (code, _, err) = s.ctl(&["volume", "create", "vol-1", "--size", "1Gi"]).await;
    assert_eq!(code, 1);
    assert!(err.contains("already exists"), "{err}");

    let (code, out, err) = s.ctl(&["volume", "expand", "vol-1", "2Gi"]).await;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("expanding"));
    let (code, out, _) = s.ctl(&["get", "lvexpand"]).await;
    assert_eq!(code, 0);
    assert!(out.contains("2147483648"), "{out}");
    let (code, _, err) = s.ctl(&["volume", "expand", "vol-1", "1Mi"]).await;
    assert_eq!(code, 1);
    assert!(err.contains("cannot shrink"), "{err}");

    let (code, out, _) = s.ctl(&["volume", "delete", "vol-1"]).await;
    assert_eq!(code, 0);
    assert!(out.contains("deleted"));
    let (_, out, _) = s.ctl(&["volume", "get", "vol-1", "-o", "json"]).await;
    assert_eq!(
        serde_json::from_str::<Value>(&out).unwrap()["spec"]["delete"],
        json!(true)
    );
    s.stop().await;
}

#[tokio::test]
async fn every_kind_and_short_name_works() {
    let s = Server::start().await;
    for word in [
        "ld",
        "ldc",
        "ldn",
        "ldv",
        "lda",
        "lsn",
        "lv",
        "lvr",
        "lvrr",
        "lvg",
        "lvgr",
        "lvconvert",
        "lvexpand",
        "lvmigrate",
        "lvmmigrate",
        "lvs",
        "lvss",
        "lvrs",
        "lvsrestore",
        "lvsnaprestore",
        "lvrsrestore",
        "lvrsnaprestore",
        "evt",
        "hmcluster",
        "resizepolicy",
        "resizepolicies",
        "ResizePolicy",
        "tpc",
        "localdisks.hwameistor.io",
    ] {
        let (code, _, err) = s.ctl(&["get", word]).await;
        assert_eq!(code, 0, "get {word}: {err}");
        assert!(err.contains("No resources found"), "get {word}: {err}");
    }
    let (code, _, err) = s.ctl(&["get", "nosuchkind"]).await;
    assert_eq!(code, 1);
    assert!(err.contains("doesn't have a resource type"), "{err}");
    // a kind without printer columns prints NAME and AGE
    s.post(
        "resizepolicies",
        json!({"metadata": {"name": "p1"}, "spec": {}}),
    )
    .await;
    let (code, out, err) = s.ctl(&["get", "resizepolicy"]).await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(header(&out), ["NAME", "AGE"]);
    s.stop().await;
}

#[tokio::test]
async fn disks_reserve_owner_and_not_found_exit_code() {
    let s = Server::start().await;
    s.post(
        "localdisks",
        json!({"metadata": {"name": "localdisk-abc"}, "spec": {"nodeName": "n1", "devicePath": "/dev/sdb",
                "state": "Active", "capacity": 1073741824i64}}),
    )
    .await;
    let (code, out, err) = s.ctl(&["disk", "list"]).await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        header(&out),
        [
            "NAME",
            "NODEMATCH",
            "DEVICEPATH",
            "OWNER",
            "PHASE",
            "STATE",
            "AGE"
        ],
        "{out}"
    );
    assert!(out.contains("localdisk-abc") && out.contains("/dev/sdb"));

    let (code, out, err) = s
        .ctl(&["disk", "reserve", "n1", "/dev/sdb", "-o", "wide"])
        .await;
    assert_eq!(code, 0, "{err}");
    assert!(header(&out).contains(&"RESERVED"), "{out}");
    // the RESERVED cell sits under its header
    let col = out.lines().next().unwrap().find("RESERVED").unwrap();
    assert_eq!(&out.lines().nth(1).unwrap()[col..col + 4], "true", "{out}");
    let (code, out, _) = s.ctl(&["disk", "get", "n1", "sdb", "-o", "json"]).await;
    assert_eq!(code, 0);
    assert_eq!(
        serde_json::from_str::<Value>(&out).unwrap()["spec"]["reserved"],
        json!(true)
    );
    let (code, _, _) = s.ctl(&["disk", "unreserve", "localdisk-abc"]).await;
    assert_eq!(code, 0);
    let (_, out, _) = s.ctl(&["disk", "get", "localdisk-abc", "-o", "json"]).await;
    assert_ne!(
        serde_json::from_str::<Value>(&out).unwrap()["spec"]["reserved"],
        json!(true)
    );
    // the original's form: reserve <node> <devPath> <true|false>
    let (code, _, _) = s.ctl(&["disk", "reserve", "n1", "sdb", "true"]).await;
    assert_eq!(code, 0);

    let (code, out, err) = s
        .ctl(&["disk", "owner", "n1", "sdb", "local-disk-manager"])
        .await;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("local-disk-manager"), "{out}");
    let (code, _, _) = s
        .ctl(&["disk", "owner", "localdisk-abc", "local-storage"])
        .await;
    assert_eq!(code, 0);

    // not found → exit code 3, with the server's description
    let (code, _, err) = s.ctl(&["disk", "get", "localdisk-nope"]).await;
    assert_eq!(code, hwameistor_cli::EXIT_NOT_FOUND);
    assert!(err.contains("localdisk-nope"), "{err}");
    let (code, _, _) = s.ctl(&["disk", "reserve", "n2", "sdb"]).await;
    assert_eq!(code, hwameistor_cli::EXIT_NOT_FOUND);
    let (code, _, _) = s.ctl(&["volume", "get", "nope"]).await;
    assert_eq!(code, hwameistor_cli::EXIT_NOT_FOUND);
    s.stop().await;
}

#[tokio::test]
async fn usage_and_connection_errors_exit_1() {
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let code =
        hwameistor_cli::main_with_args(["hwameictl", "frobnicate"], &mut out, &mut err).await;
    assert_eq!(code, 1);
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let code = hwameistor_cli::main_with_args(["hwameictl", "--help"], &mut out, &mut err).await;
    assert_eq!(code, 0);
    let help = String::from_utf8(out).unwrap();
    for c in ["get", "node", "disk", "pool", "volume"] {
        assert!(help.contains(c), "{help}");
    }
    // nothing listens on port 9 of localhost
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let code = hwameistor_cli::main_with_args(
        ["hwameictl", "--server", "127.0.0.1:9", "get", "lv"],
        &mut out,
        &mut err,
    )
    .await;
    assert_eq!(code, 1);
    assert!(
        String::from_utf8(err)
            .unwrap()
            .contains("cannot reach the server")
    );
    // data dir without server.json
    let d = tempfile::tempdir().unwrap();
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let code = hwameistor_cli::main_with_args(
        [
            "hwameictl",
            "--data-dir",
            d.path().to_str().unwrap(),
            "get",
            "lv",
        ],
        &mut out,
        &mut err,
    )
    .await;
    assert_eq!(code, 1);
    assert!(String::from_utf8(err).unwrap().contains("server.json"));
}
