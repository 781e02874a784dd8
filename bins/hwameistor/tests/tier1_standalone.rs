//! Tier 1 (root on the host): `hwameistor standalone` with every wired component (disk
//! manager, node agent with this host's engine, controllers) registers this node, shows its
//! disks through hwameictl, and stops cleanly on SIGTERM.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{Server, ctl, wait_ctl};
use hwameistor_testkit::ReleaseOnDrop;
use nix::sys::signal::Signal;
use serde_json::Value;

async fn wait_for(dir: &Path, args: &[&str], what: &str, ok: impl Fn(&str) -> bool) -> String {
    wait_ctl(dir, args, what, 30, ok).await
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "tier 1: needs root and loop devices; run by .ci/run"]
async fn standalone_runs_every_component_and_stops_cleanly() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let server = Server::start(dir, &["--node-name", "tier1-node"]);

    // the node agent registers the LocalStorageNode, the disk manager the LocalDiskNode
    let lsn = wait_for(
        dir,
        &["node", "get", "tier1-node", "-o", "json"],
        "LocalStorageNode",
        |o| serde_json::from_str::<Value>(o).is_ok_and(|v| v["status"]["state"] == "Ready"),
    )
    .await;
    assert!(lsn.contains("tier1-node"));
    let ldn = wait_for(dir, &["get", "ldn"], "LocalDiskNode", |o| {
        o.contains("tier1-node")
    })
    .await;
    assert_eq!(
        ldn.lines().next().unwrap().split_whitespace().next(),
        Some("NAME")
    );
    // the disks of this host are listed under this node
    let disks = wait_for(dir, &["get", "ld", "-o", "json"], "LocalDisks", |o| {
        serde_json::from_str::<Value>(o)
            .is_ok_and(|v| v["items"].as_array().is_some_and(|a| !a.is_empty()))
    })
    .await;
    let disks: Value = serde_json::from_str(&disks).unwrap();
    for d in disks["items"].as_array().unwrap() {
        assert_eq!(d["spec"]["nodeName"], "tier1-node");
    }

    let status = server.stop(Signal::SIGTERM);
    assert!(status.success(), "exit status {status}");
    assert!(!dir.join("server.json").exists());
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "tier 1: needs root and loop devices; run by .ci/run"]
async fn demo_creates_a_pool_and_serves_a_volume_lifecycle() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    let _cleanup = ReleaseOnDrop(dir.clone());
    let server = Server::start(
        &dir,
        &[
            "--demo",
            "--engine",
            "file",
            "--demo-disk-size",
            "2Gi",
            "--node-name",
            "demo-node",
        ],
    );

    // the two sparse disks become LocalStorage_PoolHDD
    let pools = wait_for(
        &dir,
        &["pool", "list", "-o", "json"],
        "pool from the demo disks",
        |o| serde_json::from_str::<Value>(o).is_ok_and(|v| v["items"][0]["disks"] == 2),
    )
    .await;
    let pools: Value = serde_json::from_str(&pools).unwrap();
    assert_eq!(pools["items"][0]["poolName"], "LocalStorage_PoolHDD");
    assert!(pools["items"][0]["freeCapacityBytes"].as_i64().unwrap() > 3 << 30);

    // create → Ready (default pool class: the node's)
    let (code, _, err) = ctl(&dir, &["volume", "create", "demo-vol", "--size", "1Gi"]).await;
    assert_eq!(code, 0, "{err}");
    let is = |state: &'static str| {
        move |o: &str| serde_json::from_str::<Value>(o).is_ok_and(|v| v["status"]["state"] == state)
    };
    wait_for(
        &dir,
        &["volume", "get", "demo-vol", "-o", "json"],
        "volume Ready",
        is("Ready"),
    )
    .await;
    let (_, out, _) = ctl(&dir, &["volume", "get", "demo-vol"]).await;
    assert!(out.lines().nth(1).unwrap().contains("Ready"), "{out}");

    // expand
    let (code, _, err) = ctl(&dir, &["volume", "expand", "demo-vol", "1536Mi"]).await;
    assert_eq!(code, 0, "{err}");
    wait_for(&dir, &["get", "lvr", "-o", "json"], "replica grown", |o| {
        serde_json::from_str::<Value>(o).is_ok_and(|v| {
            v["items"][0]["status"]["allocatedCapacityBytes"]
                .as_i64()
                .unwrap_or(0)
                >= 1536 << 20
        })
    })
    .await;

    // delete: the volume disappears once its replica is gone
    let (code, _, err) = ctl(&dir, &["volume", "delete", "demo-vol"]).await;
    assert_eq!(code, 0, "{err}");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (code, _, _) = ctl(&dir, &["volume", "get", "demo-vol"]).await;
        if code == hwameistor_cli::EXIT_NOT_FOUND {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "volume not deleted; log:\n{}",
            server.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let status = server.stop(Signal::SIGTERM);
    assert!(status.success(), "exit status {status}");
}
