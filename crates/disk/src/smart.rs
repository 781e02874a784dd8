//! SMART health from `smartctl --json`.
//!
//! smartctl's exit status is a bitmask, not a success flag: bit 0 = command line error, bit 1
//! = device could not be opened / has no SMART, bit 2 = a SMART command failed, bit 3 = the
//! disk reports FAILING, bit 4 = pre-fail attributes at or below threshold, bit 5 = attributes
//! were below threshold in the past, bit 6 = error log has entries, bit 7 = self-test log has
//! errors. We therefore run it with [`hwameistor_exec::Runner::output`] and read the JSON
//! whatever the exit status; only bits 0–1 without any health verdict mean "no SMART here".

use std::collections::BTreeMap;

use hwameistor_core::types::SmartHealth;
use hwameistor_exec::{Cmd, Runner};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{Error, Result};

/// Exit status bits of smartctl.
pub mod exit_bits {
    pub const COMMAND_LINE: i32 = 1 << 0;
    pub const DEVICE_OPEN: i32 = 1 << 1;
    pub const SMART_COMMAND: i32 = 1 << 2;
    pub const DISK_FAILING: i32 = 1 << 3;
    pub const PREFAIL_BELOW_THRESHOLD: i32 = 1 << 4;
    pub const USAGE_BELOW_THRESHOLD_PAST: i32 = 1 << 5;
    pub const ERROR_LOG: i32 = 1 << 6;
    pub const SELF_TEST_LOG: i32 = 1 << 7;
}

/// One ATA SMART attribute.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SmartAttribute {
    pub id: u32,
    pub name: String,
    pub value: i64,
    pub worst: i64,
    pub thresh: i64,
    pub raw: i64,
    pub prefailure: bool,
}

/// What smartctl reported for one device.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SmartReport {
    pub device: String,
    /// smartctl could talk SMART to the device.
    pub supported: bool,
    pub health: SmartHealth,
    pub exit_status: i32,
    pub model: Option<String>,
    pub serial: Option<String>,
    pub protocol: Option<String>,
    pub rotation_rate: Option<i64>,
    pub capacity_bytes: Option<i64>,
    pub temperature_celsius: Option<i64>,
    pub power_on_hours: Option<i64>,
    pub power_cycles: Option<i64>,
    pub attributes: Vec<SmartAttribute>,
    /// NVMe health log (numeric fields).
    pub nvme_health: BTreeMap<String, i64>,
    /// smartctl's messages (errors and warnings).
    pub messages: Vec<String>,
}

fn s(v: &Value, p: &str) -> Option<String> {
    v.pointer(p).and_then(Value::as_str).map(str::to_owned)
}
fn i(v: &Value, p: &str) -> Option<i64> {
    v.pointer(p).and_then(Value::as_i64)
}

/// Parse smartctl's JSON (`--json`), with the process exit status (`None` when killed).
pub fn parse_smartctl(device: &str, json: &str, exit: Option<i32>) -> Result<SmartReport> {
    let v: Value = serde_json::from_str(json).map_err(|e| Error::Parse {
        what: "smartctl --json".into(),
        detail: e.to_string(),
    })?;
    let exit_status = i(&v, "/smartctl/exit_status")
        .map(|x| x as i32)
        .or(exit)
        .unwrap_or(-1);
    let passed = v.pointer("/smart_status/passed").and_then(Value::as_bool);
    let health = match passed {
        Some(true) => SmartHealth::Passed,
        Some(false) => SmartHealth::Failed,
        None if exit_status >= 0 && exit_status & exit_bits::DISK_FAILING != 0 => {
            SmartHealth::Failed
        }
        None => SmartHealth::Unknown,
    };
    let fatal =
        exit_status < 0 || exit_status & (exit_bits::COMMAND_LINE | exit_bits::DEVICE_OPEN) != 0;
    let supported = passed.is_some()
        || v.pointer("/smart_support/available")
            .and_then(Value::as_bool)
            .unwrap_or(false)
        || (!fatal && v.get("device").is_some());
    let attributes = v
        .pointer("/ata_smart_attributes/table")
        .and_then(Value::as_array)
        .map(|t| {
            t.iter()
                .map(|a| SmartAttribute {
                    id: a.get("id").and_then(Value::as_u64).unwrap_or(0) as u32,
                    name: s(a, "/name").unwrap_or_default(),
                    value: i(a, "/value").unwrap_or(0),
                    worst: i(a, "/worst").unwrap_or(0),
                    thresh: i(a, "/thresh").unwrap_or(0),
                    raw: i(a, "/raw/value").unwrap_or(0),
                    prefailure: a
                        .pointer("/flags/prefailure")
                        .and_then(Value::as_bool)
                        .unwrap_or(false),
                })
                .collect()
        })
        .unwrap_or_default();
    let nvme_health = v
        .get("nvme_smart_health_information_log")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, x)| x.as_i64().map(|n| (k.clone(), n)))
                .collect()
        })
        .unwrap_or_default();
    let messages = v
        .pointer("/smartctl/messages")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(|m| s(m, "/string")).collect())
        .unwrap_or_default();
    Ok(SmartReport {
        device: device.to_owned(),
        supported,
        health,
        exit_status,
        model: s(&v, "/model_name"),
        serial: s(&v, "/serial_number"),
        protocol: s(&v, "/device/protocol"),
        rotation_rate: i(&v, "/rotation_rate"),
        capacity_bytes: i(&v, "/user_capacity/bytes"),
        temperature_celsius: i(&v, "/temperature/current"),
        power_on_hours: i(&v, "/power_on_time/hours"),
        power_cycles: i(&v, "/power_cycle_count"),
        attributes,
        nvme_health,
        messages,
    })
}

/// One device of `smartctl --scan --json`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScannedDevice {
    pub name: String,
    /// `-d` type, e.g. `sat`, `nvme`, `megaraid,0`.
    pub dev_type: String,
}

/// Parse `smartctl --scan --json`.
pub fn parse_scan(json: &str) -> Result<Vec<ScannedDevice>> {
    let v: Value = serde_json::from_str(json).map_err(|e| Error::Parse {
        what: "smartctl --scan --json".into(),
        detail: e.to_string(),
    })?;
    Ok(v.get("devices")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|d| {
                    Some(ScannedDevice {
                        name: s(d, "/name")?,
                        dev_type: s(d, "/type").unwrap_or_default(),
                    })
                })
                .collect()
        })
        .unwrap_or_default())
}

fn valid_dev_type(t: &str) -> bool {
    !t.is_empty()
        && !t.starts_with('-')
        && t.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, ',' | '_' | '+' | '-'))
}

/// Run `smartctl --all --json [--device TYPE] DEV` and parse it whatever the exit status.
pub async fn check(
    runner: &dyn Runner,
    dev_path: &str,
    dev_type: Option<&str>,
) -> Result<SmartReport> {
    if !dev_path.starts_with("/dev/") || dev_path.contains("..") {
        return Err(Error::Parse {
            what: "device path".into(),
            detail: format!("{dev_path:?} is not under /dev"),
        });
    }
    let mut cmd = Cmd::new("smartctl").args(["--all", "--json"]);
    if let Some(t) = dev_type {
        if !valid_dev_type(t) {
            return Err(Error::Parse {
                what: "smartctl device type".into(),
                detail: format!("{t:?}"),
            });
        }
        cmd = cmd.args(["--device", t]);
    }
    let cmd = cmd.arg(dev_path);
    let out = runner.output(&cmd).await?;
    parse_smartctl(dev_path, &out.stdout, out.code)
}

/// Run `smartctl --scan --json`.
pub async fn scan(runner: &dyn Runner) -> Result<Vec<ScannedDevice>> {
    let out = runner
        .output(&Cmd::new("smartctl").args(["--scan", "--json"]))
        .await?;
    parse_scan(&out.stdout)
}

#[cfg(test)]
mod tests {
    use super::*;
    use hwameistor_exec::{Output, RecordingRunner};

    const ATA: &str = include_str!("../tests/fixtures/smartctl_ata_hdd.json");
    const NVME: &str = include_str!("../tests/fixtures/smartctl_nvme_failing.json");
    const VIRTIO: &str = include_str!("../tests/fixtures/smartctl_virtio_unsupported.json");

    #[test]
    fn ata_disk_passes_with_attributes() {
        let r = parse_smartctl("/dev/sda", ATA, Some(0)).unwrap();
        assert!(r.supported);
        assert_eq!(r.health, SmartHealth::Passed);
        assert_eq!(r.rotation_rate, Some(7200));
        assert_eq!(r.serial.as_deref(), Some("ZC1A2B3C"));
        assert_eq!(r.capacity_bytes, Some(4000787030016));
        assert_eq!(r.temperature_celsius, Some(36));
        assert_eq!(r.power_on_hours, Some(25810));
        assert_eq!(r.attributes.len(), 4);
        let realloc = r.attributes.iter().find(|a| a.id == 5).unwrap();
        assert_eq!(
            (
                realloc.name.as_str(),
                realloc.thresh,
                realloc.raw,
                realloc.prefailure
            ),
            ("Reallocated_Sector_Ct", 10, 0, true)
        );
    }

    #[test]
    fn failing_nvme_is_failed_despite_nonzero_exit() {
        let r = parse_smartctl("/dev/nvme0", NVME, Some(8)).unwrap();
        assert!(r.supported);
        assert_eq!(r.health, SmartHealth::Failed);
        assert_eq!(r.exit_status, 8);
        assert_eq!(r.nvme_health.get("media_errors"), Some(&12));
        assert_eq!(r.nvme_health.get("percentage_used"), Some(&103));
        assert_eq!(r.protocol.as_deref(), Some("NVMe"));
        assert!(r.messages[0].contains("FAILED"));
    }

    #[test]
    fn failing_bit_without_verdict_is_failed() {
        let json = r#"{"smartctl":{"exit_status":8},"device":{"name":"/dev/sdb"}}"#;
        assert_eq!(
            parse_smartctl("/dev/sdb", json, Some(8)).unwrap().health,
            SmartHealth::Failed
        );
        // bit 6 alone (error log entries) leaves health unknown without a verdict
        let json = r#"{"smartctl":{"exit_status":64},"device":{"name":"/dev/sdb"}}"#;
        assert_eq!(
            parse_smartctl("/dev/sdb", json, Some(64)).unwrap().health,
            SmartHealth::Unknown
        );
    }

    #[test]
    fn captured_virtio_output_means_unsupported() {
        let r = parse_smartctl("/dev/vda", VIRTIO, Some(1)).unwrap();
        assert!(!r.supported);
        assert_eq!(r.health, SmartHealth::Unknown);
        assert!(r.messages[0].contains("Unable to detect device type"));
        assert!(parse_smartctl("/dev/vda", "not json", Some(1)).is_err());
    }

    #[test]
    fn scan_output() {
        let j = r#"{"devices":[{"name":"/dev/sda","info_name":"/dev/sda [SAT]","type":"sat","protocol":"ATA"},
                              {"name":"/dev/bus/0","info_name":"/dev/bus/0 [megaraid_disk_00]","type":"megaraid,0","protocol":"SCSI"}]}"#;
        let d = parse_scan(j).unwrap();
        assert_eq!(
            d[1],
            ScannedDevice {
                name: "/dev/bus/0".into(),
                dev_type: "megaraid,0".into()
            }
        );
    }

    #[tokio::test]
    async fn check_builds_argv_and_tolerates_exit_bits() {
        let r = RecordingRunner::new();
        r.respond(
            &[
                "smartctl",
                "--all",
                "--json",
                "--device",
                "megaraid,0",
                "/dev/sda",
            ],
            Output {
                code: Some(4),
                stdout: ATA.into(),
                stderr: String::new(),
            },
        );
        let rep = check(&r, "/dev/sda", Some("megaraid,0")).await.unwrap();
        assert_eq!(rep.health, SmartHealth::Passed);
        assert!(check(&r, "/dev/sda", Some("-x;rm")).await.is_err());
        assert!(check(&r, "/etc/passwd", None).await.is_err());
    }
}
