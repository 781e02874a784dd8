//! The built `hwameistor` binary: help, unimplemented components, and `standalone`
//! (objects created through hwameictl survive SIGTERM and a restart).
//!
//! The server runs as a child process (see `common`); `run_bin` runs the binary to
//! completion with `std::process::Command` for the same reason (test-only).

#![allow(clippy::disallowed_methods)]

mod common;

use std::process::{Command, ExitStatus};

use common::{BIN, Server, ctl};
use nix::sys::signal::Signal;
use serde_json::{Value, json};

fn run_bin(args: &[&str]) -> (ExitStatus, String, String) {
    let out = Command::new(BIN).args(args).output().unwrap();
    (
        out.status,
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

#[test]
fn help_lists_every_component() {
    let (status, out, _) = run_bin(&["--help"]);
    assert!(status.success());
    for c in [
        "node",
        "controller",
        "scheduler",
        "webhook",
        "apiserver",
        "exporter",
        "standalone",
        "crdgen",
    ] {
        assert!(
            out.lines().any(|l| l.trim_start().starts_with(c)),
            "{c} missing from:\n{out}"
        );
    }
}

#[test]
fn unimplemented_components_say_so_and_fail() {
    for (c, what) in [
        ("scheduler", "scheduler extender"),
        ("webhook", "admission webhook"),
        ("exporter", "exporter"),
    ] {
        let (status, _, err) = run_bin(&[c]);
        assert!(!status.success(), "{c} succeeded");
        assert!(
            err.contains(what) && err.contains("not implemented yet"),
            "{c}: {err}"
        );
    }
}

#[test]
fn crdgen_prints_every_crd() {
    let (status, out, _) = run_bin(&["crdgen"]);
    assert!(status.success());
    assert_eq!(
        out.matches("kind: CustomResourceDefinition").count(),
        hwameistor_api::all_crds().len()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn objects_survive_sigterm_and_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let server = Server::start(dir, &["--api-only"]);
    assert!(server.url.starts_with("http://127.0.0.1:"));

    let (code, out, err) = ctl(
        dir,
        &[
            "volume",
            "create",
            "vol-a",
            "--size",
            "1Gi",
            "-p",
            "poolClass=HDD",
        ],
    )
    .await;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("vol-a created"));
    let (code, out, err) = ctl(dir, &["get", "lv"]).await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out.lines()
            .next()
            .unwrap()
            .split_whitespace()
            .collect::<Vec<_>>(),
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
    assert!(out.contains("vol-a"));
    let (_, before, _) = ctl(dir, &["volume", "get", "vol-a", "-o", "json"]).await;
    let before: Value = serde_json::from_str(&before).unwrap();

    let status = server.stop(Signal::SIGTERM);
    assert!(status.success(), "exit status {status}");
    assert!(!dir.join("server.json").exists(), "server.json left behind");
    // with the server gone, hwameictl fails cleanly
    let (code, _, err) = ctl(dir, &["get", "lv"]).await;
    assert_eq!(code, 1);
    assert!(err.contains("server.json"), "{err}");

    // the second run logs JSON lines
    let server = Server::start(dir, &["--api-only", "--log-format", "json"]);
    let (code, after, err) = ctl(dir, &["volume", "get", "vol-a", "-o", "json"]).await;
    assert_eq!(code, 0, "{err}");
    let after: Value = serde_json::from_str(&after).unwrap();
    assert_eq!(after["metadata"]["uid"], before["metadata"]["uid"]);
    assert_eq!(
        after["metadata"]["resourceVersion"],
        before["metadata"]["resourceVersion"]
    );
    assert_eq!(after["spec"]["requiredCapacityBytes"], json!(1073741824i64));
    let (code, _, _) = ctl(dir, &["volume", "get", "vol-b"]).await;
    assert_eq!(code, hwameistor_cli::EXIT_NOT_FOUND);

    let status = server.stop(Signal::SIGINT);
    assert!(status.success(), "exit status {status}");
    let log = std::fs::read_to_string(dir.join("server.log")).unwrap();
    assert!(log.contains("shutting down"), "{log}");
    for line in log.lines().filter(|l| !l.trim().is_empty()) {
        let v: Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(v["level"].is_string() && v["fields"].is_object(), "{line}");
    }
}

#[test]
fn a_second_server_on_the_same_data_dir_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let first = Server::start(tmp.path(), &["--api-only"]);
    let out = Command::new(BIN)
        .args([
            "standalone",
            "--api-only",
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            tmp.path().to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("store.redb"), "{err}");
    // the first one still runs and owns server.json
    let info: Value =
        serde_json::from_str(&std::fs::read_to_string(tmp.path().join("server.json")).unwrap())
            .unwrap();
    assert!(
        first.url.ends_with(
            &info["listen"]
                .as_str()
                .unwrap()
                .rsplit(':')
                .next()
                .unwrap()
                .to_string()
        )
    );
    assert!(first.stop(Signal::SIGTERM).success());
}
