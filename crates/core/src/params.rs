//! StorageClass and VolumeSnapshotClass parameters of the two CSI drivers, and Kubernetes
//! resource quantities.
//!
//! A StorageClass carries free-form `parameters: map<string,string>` that Kubernetes passes
//! unchanged to the driver's `CreateVolume` (and the external-provisioner adds
//! `csi.storage.k8s.io/pvc/name`, `.../pvc/namespace` and `.../pv/name` when started with
//! `--extra-create-metadata`). This module turns such a map into typed values:
//!
//! - [`LvmParams::parse`] for `lvm.hwameistor.io` (LVM or file-engine volumes, one per PVC,
//!   carved out of a node's `LocalStorage_Pool<class>`),
//! - [`DiskParams::parse`] for `disk.hwameistor.io` (a whole raw disk per PVC),
//! - [`SnapshotParams::parse`] for VolumeSnapshotClasses of `lvm.hwameistor.io`.
//!
//! Every key is either honoured or refused: an unknown key, an ill-formed value or a value
//! we do not implement is a [`ParamError`] whose message names the parameter, so the CSI
//! layer can answer `INVALID_ARGUMENT` with a message a user can act on. The same parser is
//! used by `hwameictl`, so a bad parameter is caught before anything is created.
//!
//! [`parse_quantity`] parses Kubernetes quantities (`"1Gi"`, `"100M"`, `"500"`, `"1.5Gi"`,
//! `"1e3"`) into a whole number, rounding a fractional result up as
//! `resource.Quantity.Value()` does.

use std::collections::BTreeMap;

use thiserror::Error;

use crate::names;
use crate::types::{DiskType, EncryptType, PoolClass};

/// Parameter keys, exactly as they appear in a StorageClass.
pub mod keys {
    /// Pool class (`HDD`, `SSD`, `NVMe`) of the LVM pool to allocate from.
    pub const POOL_CLASS: &str = "poolClass";
    /// Number of replicas (1, or 2 for HA).
    pub const REPLICA_NUMBER: &str = "replicaNumber";
    /// `true`: a single replica that can later be converted to HA.
    pub const CONVERTIBLE: &str = "convertible";
    /// Striping across the pool's disks.
    pub const STRIPED: &str = "striped";
    /// Kind of volume; only `LVM`.
    pub const VOLUME_KIND: &str = "volumeKind";
    /// Type of pool; only `REGULAR`.
    pub const POOL_TYPE: &str = "poolType";
    /// Filesystem to create on a filesystem volume.
    pub const FS_TYPE: &str = "csi.storage.k8s.io/fstype";
    /// IOPS limit applied when the volume is created (a quantity).
    pub const IOPS: &str = "provision-iops-on-creation";
    /// Throughput limit in bytes/s applied when the volume is created (a quantity).
    pub const THROUGHPUT: &str = "provision-throughput-on-creation";
    /// `namespace/name` of the Secret holding the encryption key.
    pub const ENCRYPT_SECRET: &str = "encryptSecret";
    /// Encryption scheme; only `LUKS`.
    pub const ENCRYPT_TYPE: &str = "encryptType";
    /// `true`: a thin volume in the pool's thin pool.
    pub const THIN: &str = "thin";
    /// Name of the PVC, injected by the external-provisioner.
    pub const PVC_NAME: &str = "csi.storage.k8s.io/pvc/name";
    /// Namespace of the PVC, injected by the external-provisioner.
    pub const PVC_NAMESPACE: &str = "csi.storage.k8s.io/pvc/namespace";
    /// Name of the PV, injected by the external-provisioner.
    pub const PV_NAME: &str = "csi.storage.k8s.io/pv/name";
    /// Disk type of a raw-disk volume (`HDD`, `SSD`, `NVMe`).
    pub const DISK_TYPE: &str = "diskType";
    /// Minimum capacity of a raw-disk volume (a quantity).
    pub const MIN_CAP: &str = "minCap";
    /// Size of the snapshot's copy-on-write area (a quantity), on VolumeSnapshotClasses.
    pub const SNAPSIZE: &str = "snapsize";
}

/// Smallest volume or snapshot the LVM engine allocates: 4 MiB (one physical extent).
pub const MIN_VOLUME_BYTES: u64 = 4 * 1024 * 1024;

/// Filesystems the node service can create.
pub const SUPPORTED_FS_TYPES: &[&str] = &["ext4", "xfs"];

/// A parameter was refused. Every variant names the parameter.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ParamError {
    #[error("parameter {param:?} is required")]
    Missing { param: String },
    #[error("parameter {param:?} has invalid value {value:?}: {reason}")]
    Invalid {
        param: String,
        value: String,
        reason: String,
    },
    #[error("parameter {param:?}={value:?} is not supported: {reason}")]
    Unsupported {
        param: String,
        value: String,
        reason: String,
    },
    #[error("parameter {param:?} conflicts with {other:?}: {reason}")]
    Conflict {
        param: String,
        other: String,
        reason: String,
    },
    #[error("parameter {param:?} is not known to {driver}")]
    Unknown { param: String, driver: &'static str },
}

impl ParamError {
    /// The parameter the error is about.
    pub fn param(&self) -> &str {
        match self {
            ParamError::Missing { param }
            | ParamError::Invalid { param, .. }
            | ParamError::Unsupported { param, .. }
            | ParamError::Conflict { param, .. }
            | ParamError::Unknown { param, .. } => param,
        }
    }

    fn invalid(param: &str, value: &str, reason: impl Into<String>) -> Self {
        ParamError::Invalid {
            param: param.into(),
            value: value.into(),
            reason: reason.into(),
        }
    }

    fn unsupported(param: &str, value: &str, reason: impl Into<String>) -> Self {
        ParamError::Unsupported {
            param: param.into(),
            value: value.into(),
            reason: reason.into(),
        }
    }
}

/// Why a quantity string was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum QuantityError {
    #[error("empty quantity")]
    Empty,
    #[error("quantity {0:?} is not a number with an optional suffix (e.g. 500, 100M, 1Gi)")]
    Syntax(String),
    #[error(
        "quantity {0:?} has unknown suffix {1:?}; use one of Ki Mi Gi Ti Pi Ei, k M G T P E, m"
    )]
    Suffix(String, String),
    #[error("quantity {0:?} is negative")]
    Negative(String),
    #[error("quantity {0:?} is too large")]
    Overflow(String),
}

/// Parse a Kubernetes resource quantity into a whole number (bytes, IOPS, ...).
///
/// Accepts an optional `+`/`-` sign, digits with an optional fraction, and either a suffix
/// (binary `Ki Mi Gi Ti Pi Ei`, decimal `n u m k M G T P E`) or an exponent (`1e3`,
/// `2E-1`). Fractional results are rounded up. Negative quantities are refused.
pub fn parse_quantity(s: &str) -> Result<u64, QuantityError> {
    let t = s.trim();
    if t.is_empty() {
        return Err(QuantityError::Empty);
    }
    let syntax = || QuantityError::Syntax(s.to_owned());
    let (negative, body) = match t.as_bytes()[0] {
        b'-' => (true, &t[1..]),
        b'+' => (false, &t[1..]),
        _ => (false, t),
    };
    let num_end = body
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(body.len());
    let (number, suffix) = body.split_at(num_end);
    let (int_part, frac_part) = match number.split_once('.') {
        Some((i, f)) => (i, f),
        None => (number, ""),
    };
    if (int_part.is_empty() && frac_part.is_empty()) || frac_part.contains('.') {
        return Err(syntax());
    }
    // Multiplier as (base, exponent): 2^e or 10^e.
    let (two_pow, ten_pow): (u32, i32) = match suffix {
        "" => (0, 0),
        "Ki" => (10, 0),
        "Mi" => (20, 0),
        "Gi" => (30, 0),
        "Ti" => (40, 0),
        "Pi" => (50, 0),
        "Ei" => (60, 0),
        "n" => (0, -9),
        "u" => (0, -6),
        "m" => (0, -3),
        "k" => (0, 3),
        "M" => (0, 6),
        "G" => (0, 9),
        "T" => (0, 12),
        "P" => (0, 15),
        "E" => (0, 18),
        other if other.starts_with(['e', 'E']) => {
            let exp: i32 = other[1..].parse().map_err(|_| syntax())?;
            if !(-30..=30).contains(&exp) {
                return Err(QuantityError::Overflow(s.to_owned()));
            }
            (0, exp)
        }
        other => return Err(QuantityError::Suffix(s.to_owned(), other.to_owned())),
    };
    let digits = format!("{int_part}{frac_part}");
    let digits = digits.trim_start_matches('0');
    if digits.len() > 30 {
        return Err(QuantityError::Overflow(s.to_owned()));
    }
    let mantissa: u128 = if digits.is_empty() {
        0
    } else {
        digits.parse().map_err(|_| syntax())?
    };
    if negative && mantissa != 0 {
        return Err(QuantityError::Negative(s.to_owned()));
    }
    let overflow = || QuantityError::Overflow(s.to_owned());
    let ten_exp = ten_pow - frac_part.len() as i32;
    let mut num = mantissa
        .checked_mul(1u128 << two_pow)
        .ok_or_else(overflow)?;
    let mut den: u128 = 1;
    if ten_exp >= 0 {
        num = num
            .checked_mul(10u128.pow(ten_exp as u32))
            .ok_or_else(overflow)?;
    } else {
        den = 10u128.checked_pow((-ten_exp) as u32).ok_or_else(overflow)?;
    }
    let value = num.div_ceil(den);
    u64::try_from(value).map_err(|_| overflow())
}

/// Format bytes the way a person reads them (`1Gi`, `512Mi`, `1000`): the largest binary
/// suffix that divides the value exactly. [`parse_quantity`] reads it back.
pub fn format_quantity(bytes: u64) -> String {
    const SUFFIXES: [(&str, u32); 6] = [
        ("Ei", 60),
        ("Pi", 50),
        ("Ti", 40),
        ("Gi", 30),
        ("Mi", 20),
        ("Ki", 10),
    ];
    if bytes != 0 {
        for (suffix, shift) in SUFFIXES {
            if bytes.trailing_zeros() >= shift {
                return format!("{}{suffix}", bytes >> shift);
            }
        }
    }
    bytes.to_string()
}

fn parse_bool(param: &str, value: &str) -> Result<bool, ParamError> {
    match value.trim().to_ascii_lowercase().as_str() {
        "true" => Ok(true),
        "false" | "" => Ok(false),
        _ => Err(ParamError::invalid(
            param,
            value,
            "expected \"true\" or \"false\"",
        )),
    }
}

fn parse_positive_quantity(param: &str, value: &str) -> Result<u64, ParamError> {
    let q = parse_quantity(value).map_err(|e| ParamError::invalid(param, value, e.to_string()))?;
    if q == 0 {
        return Err(ParamError::invalid(
            param,
            value,
            "must be greater than zero",
        ));
    }
    Ok(q)
}

fn parse_fs_type(value: &str) -> Result<Option<String>, ParamError> {
    let v = value.trim().to_ascii_lowercase();
    if v.is_empty() {
        return Ok(None);
    }
    if SUPPORTED_FS_TYPES.contains(&v.as_str()) {
        Ok(Some(v))
    } else {
        Err(ParamError::unsupported(
            keys::FS_TYPE,
            value,
            format!("supported filesystems: {}", SUPPORTED_FS_TYPES.join(", ")),
        ))
    }
}

/// Check a filesystem type given outside the parameters (e.g. a CSI MountVolume's
/// `fs_type`); same rules as `csi.storage.k8s.io/fstype`.
pub fn validate_fs_type(value: &str) -> Result<Option<String>, ParamError> {
    parse_fs_type(value)
}

/// The PVC a volume was provisioned for, when the provisioner told us.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PvcRef {
    pub namespace: Option<String>,
    pub name: Option<String>,
    /// The PV name (`csi.storage.k8s.io/pv/name`), normally equal to the volume id.
    pub pv_name: Option<String>,
}

impl PvcRef {
    fn take(params: &mut BTreeMap<String, String>) -> Result<Self, ParamError> {
        let mut take_name = |key: &str| -> Result<Option<String>, ParamError> {
            match params.remove(key) {
                None => Ok(None),
                Some(v) if v.is_empty() => Ok(None),
                Some(v) => {
                    if v.len() > 253 || v.chars().any(|c| c.is_control() || c == '/') {
                        Err(ParamError::invalid(key, &v, "not a Kubernetes object name"))
                    } else {
                        Ok(Some(v))
                    }
                }
            }
        };
        Ok(PvcRef {
            namespace: take_name(keys::PVC_NAMESPACE)?,
            name: take_name(keys::PVC_NAME)?,
            pv_name: take_name(keys::PV_NAME)?,
        })
    }
}

/// Encryption of a volume at rest.
#[derive(Clone, PartialEq, Eq)]
pub struct EncryptParams {
    /// Namespace of the Secret with the key (data key `key`).
    pub secret_namespace: String,
    /// Name of that Secret.
    pub secret_name: String,
    pub kind: EncryptType,
}

impl std::fmt::Debug for EncryptParams {
    // The secret reference is not the key itself, but it is printed anyway only as a
    // reference; the key material never passes through this module.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EncryptParams")
            .field(
                "secret",
                &format_args!("{}/{}", self.secret_namespace, self.secret_name),
            )
            .field("kind", &self.kind)
            .finish()
    }
}

/// Parse an `encryptSecret` value `"<namespace>/<name>"`.
///
/// Both parts must be Kubernetes names (lowercase letters, digits, `-`, and `.` in the
/// name; starting and ending with a letter or digit; namespace at most 63, name at most
/// 253 bytes), which also makes them safe as file names: the standalone key store keeps the
/// key in `<secrets-dir>/<namespace>/<name>`.
pub fn parse_secret_ref(value: &str) -> Result<crate::types::NamespacedName, ParamError> {
    let bad = |reason: &str| ParamError::invalid(keys::ENCRYPT_SECRET, value, reason);
    let (ns, name) = value
        .trim()
        .split_once('/')
        .ok_or_else(|| bad("expected \"namespace/name\""))?;
    let k8s_name = |s: &str, max: usize, dots: bool| {
        !s.is_empty()
            && s.len() <= max
            && s.bytes().all(|b| {
                b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || (dots && b == b'.')
            })
            && s.starts_with(|c: char| c.is_ascii_alphanumeric())
            && s.ends_with(|c: char| c.is_ascii_alphanumeric())
    };
    if ns.is_empty() || name.is_empty() || name.contains('/') {
        return Err(bad("expected \"namespace/name\""));
    }
    if !k8s_name(ns, 63, false) {
        return Err(bad(
            "the namespace must be a DNS label (lowercase letters, digits and '-')",
        ));
    }
    if !k8s_name(name, 253, true) {
        return Err(bad(
            "the Secret name must be a DNS subdomain (lowercase letters, digits, '-' and '.')",
        ));
    }
    Ok(crate::types::NamespacedName {
        namespace: ns.to_owned(),
        name: name.to_owned(),
    })
}

/// Parsed parameters of a `lvm.hwameistor.io` StorageClass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LvmParams {
    pub pool_class: PoolClass,
    /// 1 (non-HA) or 2 (HA, DRBD).
    pub replica_number: u8,
    /// DRBD-backed; always true when `replica_number >= 2`.
    pub convertible: bool,
    /// Thin volume in the pool's thin pool.
    pub thin: bool,
    /// Stripe the volume across every disk of the pool (LVM `-i <#PVs>`; linear when the
    /// pool has one disk). The file engine cannot stripe and creates such volumes linear,
    /// saying so on the replica.
    pub striped: bool,
    /// Filesystem for filesystem volumes; `None` = the node's default.
    pub fs_type: Option<String>,
    /// IOPS limit (read and write each).
    pub iops: Option<u64>,
    /// Throughput limit in bytes per second (read and write each).
    pub throughput: Option<u64>,
    pub encrypt: Option<EncryptParams>,
    pub pvc: PvcRef,
}

impl LvmParams {
    /// Maximum replica number a StorageClass may ask for.
    pub const MAX_REPLICAS: u8 = 2;

    /// Parse and validate. `replicaNumber` defaults to 1 when absent (hwameictl and the
    /// standalone mode have no StorageClass); `poolClass` is required.
    pub fn parse(params: &BTreeMap<String, String>) -> Result<Self, ParamError> {
        let mut p = params.clone();
        let pool_class = match p.remove(keys::POOL_CLASS) {
            None => {
                return Err(ParamError::Missing {
                    param: keys::POOL_CLASS.into(),
                });
            }
            Some(v) => PoolClass::parse_lenient(v.trim()).map_err(|_| {
                ParamError::invalid(keys::POOL_CLASS, &v, "expected HDD, SSD or NVMe")
            })?,
        };
        let replica_number = match p.remove(keys::REPLICA_NUMBER) {
            None => 1,
            Some(v) => {
                let n: u8 = v.trim().parse().map_err(|_| {
                    ParamError::invalid(keys::REPLICA_NUMBER, &v, "expected an integer")
                })?;
                if n == 0 || n > Self::MAX_REPLICAS {
                    return Err(ParamError::invalid(
                        keys::REPLICA_NUMBER,
                        &v,
                        format!("must be between 1 and {}", Self::MAX_REPLICAS),
                    ));
                }
                n
            }
        };
        let convertible_param = match p.remove(keys::CONVERTIBLE) {
            None => false,
            Some(v) => parse_bool(keys::CONVERTIBLE, &v)?,
        };
        let convertible = convertible_param || replica_number >= 2;
        let thin = match p.remove(keys::THIN) {
            None => false,
            Some(v) => parse_bool(keys::THIN, &v)?,
        };
        if thin && replica_number != 1 {
            return Err(ParamError::Conflict {
                param: keys::THIN.into(),
                other: keys::REPLICA_NUMBER.into(),
                reason: "thin volumes have exactly one replica".into(),
            });
        }
        if thin && convertible {
            return Err(ParamError::Conflict {
                param: keys::THIN.into(),
                other: keys::CONVERTIBLE.into(),
                reason: "thin volumes cannot be converted to HA".into(),
            });
        }
        let striped = match p.remove(keys::STRIPED) {
            None => false,
            Some(v) => parse_bool(keys::STRIPED, &v)?,
        };
        if striped && thin {
            return Err(ParamError::Conflict {
                param: keys::STRIPED.into(),
                other: keys::THIN.into(),
                reason: "thin volumes live in the pool's thin pool and cannot be striped".into(),
            });
        }
        if let Some(v) = p.remove(keys::VOLUME_KIND)
            && !v.trim().eq_ignore_ascii_case("LVM")
        {
            return Err(ParamError::unsupported(
                keys::VOLUME_KIND,
                &v,
                "only \"LVM\" exists",
            ));
        }
        if let Some(v) = p.remove(keys::POOL_TYPE)
            && !v.trim().eq_ignore_ascii_case("REGULAR")
        {
            return Err(ParamError::unsupported(
                keys::POOL_TYPE,
                &v,
                "only \"REGULAR\" exists",
            ));
        }
        let fs_type = match p.remove(keys::FS_TYPE) {
            None => None,
            Some(v) => parse_fs_type(&v)?,
        };
        let iops = p
            .remove(keys::IOPS)
            .map(|v| parse_positive_quantity(keys::IOPS, &v))
            .transpose()?;
        let throughput = p
            .remove(keys::THROUGHPUT)
            .map(|v| parse_positive_quantity(keys::THROUGHPUT, &v))
            .transpose()?;
        let encrypt_type = match p.remove(keys::ENCRYPT_TYPE) {
            None => None,
            Some(v) if v.trim().is_empty() => None,
            Some(v) => Some(v.trim().parse::<EncryptType>().map_err(|_| {
                ParamError::unsupported(keys::ENCRYPT_TYPE, &v, "only \"LUKS\" is supported")
            })?),
        };
        let encrypt = match p.remove(keys::ENCRYPT_SECRET) {
            Some(v) if !v.trim().is_empty() => {
                let r = parse_secret_ref(&v)?;
                Some(EncryptParams {
                    secret_namespace: r.namespace,
                    secret_name: r.name,
                    kind: encrypt_type.unwrap_or_default(),
                })
            }
            _ => {
                if encrypt_type.is_some() {
                    return Err(ParamError::Missing {
                        param: keys::ENCRYPT_SECRET.into(),
                    });
                }
                None
            }
        };
        let pvc = PvcRef::take(&mut p)?;
        reject_unknown(&p, "lvm.hwameistor.io")?;
        Ok(LvmParams {
            pool_class,
            replica_number,
            convertible,
            thin,
            striped,
            fs_type,
            iops,
            throughput,
            encrypt,
            pvc,
        })
    }
}

fn reject_unknown(rest: &BTreeMap<String, String>, driver: &'static str) -> Result<(), ParamError> {
    match rest.keys().next() {
        Some(k) => Err(ParamError::Unknown {
            param: k.clone(),
            driver,
        }),
        None => Ok(()),
    }
}

/// Parsed parameters of a `disk.hwameistor.io` StorageClass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskParams {
    /// Media type of the disk to hand out (never `Unknown`).
    pub disk_type: DiskType,
    /// The volume gets a disk of at least `max(request, min_cap)` bytes.
    pub min_cap: Option<u64>,
    pub fs_type: Option<String>,
    pub pvc: PvcRef,
}

impl DiskParams {
    /// Parse and validate; `diskType` is required.
    pub fn parse(params: &BTreeMap<String, String>) -> Result<Self, ParamError> {
        let mut p = params.clone();
        let disk_type = match p.remove(keys::DISK_TYPE) {
            None => {
                return Err(ParamError::Missing {
                    param: keys::DISK_TYPE.into(),
                });
            }
            Some(v) => PoolClass::parse_lenient(v.trim())
                .map(DiskType::from)
                .map_err(|_| {
                    ParamError::invalid(keys::DISK_TYPE, &v, "expected HDD, SSD or NVMe")
                })?,
        };
        let min_cap = p
            .remove(keys::MIN_CAP)
            .map(|v| parse_positive_quantity(keys::MIN_CAP, &v))
            .transpose()?;
        let fs_type = match p.remove(keys::FS_TYPE) {
            None => None,
            Some(v) => parse_fs_type(&v)?,
        };
        let pvc = PvcRef::take(&mut p)?;
        reject_unknown(&p, "disk.hwameistor.io")?;
        Ok(DiskParams {
            disk_type,
            min_cap,
            fs_type,
            pvc,
        })
    }

    /// Bytes the disk must have for a request of `requested` bytes.
    pub fn required_bytes(&self, requested: u64) -> u64 {
        requested.max(self.min_cap.unwrap_or(0))
    }
}

/// Parsed parameters of a VolumeSnapshotClass of `lvm.hwameistor.io`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SnapshotParams {
    /// Copy-on-write area of the snapshot; `None` = the source volume's size.
    pub snapsize: Option<u64>,
}

impl SnapshotParams {
    /// Parse and validate. The snapshotter's own keys (`csi.storage.k8s.io/volumesnapshot/*`)
    /// are accepted and ignored: they only describe the snapshot objects.
    pub fn parse(params: &BTreeMap<String, String>) -> Result<Self, ParamError> {
        let mut p = params.clone();
        p.retain(|k, _| !k.starts_with("csi.storage.k8s.io/volumesnapshot"));
        let snapsize = match p.remove(keys::SNAPSIZE) {
            None => None,
            Some(v) => {
                let n = parse_positive_quantity(keys::SNAPSIZE, &v)?;
                if n < MIN_VOLUME_BYTES {
                    return Err(ParamError::invalid(
                        keys::SNAPSIZE,
                        &v,
                        "must be at least 4Mi",
                    ));
                }
                Some(n)
            }
        };
        reject_unknown(&p, "lvm.hwameistor.io snapshots")?;
        Ok(SnapshotParams { snapsize })
    }
}

/// Check a volume or snapshot id/name that will become an object and device name.
pub fn validate_volume_name(name: &str) -> Result<(), names::NameError> {
    names::validate("volume", name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn lvm(pairs: &[(&str, &str)]) -> Result<LvmParams, ParamError> {
        let mut m = map(&[("poolClass", "HDD")]);
        m.extend(map(pairs));
        LvmParams::parse(&m)
    }

    fn err_names(e: ParamError, param: &str) {
        assert_eq!(e.param(), param, "{e}");
        assert!(
            e.to_string().contains(param),
            "message {e:?} does not name {param}"
        );
    }

    #[test]
    fn quantities() {
        assert_eq!(parse_quantity("500").unwrap(), 500);
        assert_eq!(parse_quantity("1Gi").unwrap(), 1 << 30);
        assert_eq!(parse_quantity("100M").unwrap(), 100_000_000);
        assert_eq!(parse_quantity("1.5Gi").unwrap(), 3 << 29);
        assert_eq!(parse_quantity("1k").unwrap(), 1000);
        assert_eq!(parse_quantity("2Ki").unwrap(), 2048);
        assert_eq!(parse_quantity("1e3").unwrap(), 1000);
        assert_eq!(parse_quantity("1E6").unwrap(), 1_000_000);
        assert_eq!(parse_quantity("100m").unwrap(), 1, "fractions round up");
        assert_eq!(parse_quantity("0.1").unwrap(), 1);
        assert_eq!(parse_quantity("+7").unwrap(), 7);
        assert_eq!(parse_quantity(" 4Mi ").unwrap(), 4 << 20);
        assert_eq!(parse_quantity("0").unwrap(), 0);
        assert_eq!(parse_quantity("-0").unwrap(), 0);
        assert_eq!(parse_quantity("8Ei").unwrap(), 8 << 60);
        assert!(matches!(parse_quantity(""), Err(QuantityError::Empty)));
        assert!(matches!(
            parse_quantity("-1"),
            Err(QuantityError::Negative(_))
        ));
        assert!(matches!(
            parse_quantity("1X"),
            Err(QuantityError::Suffix(..))
        ));
        assert!(matches!(
            parse_quantity("1gi"),
            Err(QuantityError::Suffix(..))
        ));
        assert!(matches!(
            parse_quantity("Gi"),
            Err(QuantityError::Syntax(_))
        ));
        assert!(matches!(
            parse_quantity("1.2.3"),
            Err(QuantityError::Syntax(_))
        ));
        assert!(matches!(
            parse_quantity("16Ei"),
            Err(QuantityError::Overflow(_))
        ));
        assert!(matches!(
            parse_quantity("1e99"),
            Err(QuantityError::Overflow(_))
        ));
        assert!(matches!(
            parse_quantity("99999999999999999999999999999999"),
            Err(QuantityError::Overflow(_))
        ));
    }

    #[test]
    fn format_round_trips() {
        for v in [0u64, 1, 1000, 1024, 4 << 20, 3 << 29, 1 << 40, 12345] {
            assert_eq!(parse_quantity(&format_quantity(v)).unwrap(), v);
        }
        assert_eq!(format_quantity(1 << 30), "1Gi");
        assert_eq!(format_quantity(1536 << 20), "1536Mi");
    }

    #[test]
    fn lvm_defaults_and_full_set() {
        let p = lvm(&[]).unwrap();
        assert_eq!(p.pool_class, PoolClass::HDD);
        assert_eq!(p.replica_number, 1);
        assert!(!p.convertible && !p.thin && !p.striped);
        assert_eq!(p.fs_type, None);

        let p = LvmParams::parse(&map(&[
            ("poolClass", "ssd"),
            ("replicaNumber", "1"),
            ("convertible", "TRUE"),
            ("striped", "false"),
            ("volumeKind", "LVM"),
            ("poolType", "REGULAR"),
            ("csi.storage.k8s.io/fstype", "xfs"),
            ("provision-iops-on-creation", "100"),
            ("provision-throughput-on-creation", "1Mi"),
            ("thin", "false"),
            ("csi.storage.k8s.io/pvc/name", "data"),
            ("csi.storage.k8s.io/pvc/namespace", "default"),
            ("csi.storage.k8s.io/pv/name", "pvc-1"),
        ]))
        .unwrap();
        assert_eq!(p.pool_class, PoolClass::SSD);
        assert!(p.convertible);
        assert_eq!(p.fs_type.as_deref(), Some("xfs"));
        assert_eq!(p.iops, Some(100));
        assert_eq!(p.throughput, Some(1 << 20));
        assert!(p.encrypt.is_none());
        assert_eq!(p.pvc.name.as_deref(), Some("data"));
        assert_eq!(p.pvc.namespace.as_deref(), Some("default"));
        assert_eq!(p.pvc.pv_name.as_deref(), Some("pvc-1"));
    }

    #[test]
    fn replica_two_forces_convertible() {
        let p = lvm(&[("replicaNumber", "2")]).unwrap();
        assert!(p.convertible);
        assert_eq!(p.replica_number, 2);
    }

    #[test]
    fn striped_volume() {
        // The original's default Helm StorageClass sets `striped: "true"`.
        let p = lvm(&[("striped", "true"), ("replicaNumber", "2")]).unwrap();
        assert!(p.striped);
        assert!(!lvm(&[("striped", "False")]).unwrap().striped);
        err_names(
            lvm(&[("striped", "true"), ("thin", "true")]).unwrap_err(),
            "striped",
        );
        err_names(lvm(&[("striped", "yes")]).unwrap_err(), "striped");
    }

    #[test]
    fn thin_volume_parameters() {
        // A thin volume in the pool's thin pool (ThinPoolClaim); placement counts its
        // provisioned size against the thin pool's size × over-provision ratio.
        let p = lvm(&[("thin", "true")]).unwrap();
        assert!(p.thin && !p.striped && p.replica_number == 1);
        assert!(lvm(&[("thin", " TRUE ")]).unwrap().thin);
        assert!(!lvm(&[("thin", "false")]).unwrap().thin);
        assert!(!lvm(&[]).unwrap().thin);
        // Ill-formed values name the parameter.
        for bad in ["yes", "1", "thin", "on"] {
            let e = lvm(&[("thin", bad)]).unwrap_err();
            assert!(matches!(e, ParamError::Invalid { .. }), "{e}");
            err_names(e, "thin");
        }
        err_names(
            lvm(&[("thin", "true"), ("replicaNumber", "2")]).unwrap_err(),
            "thin",
        );
        err_names(
            lvm(&[("thin", "true"), ("convertible", "true")]).unwrap_err(),
            "thin",
        );
        err_names(lvm(&[("thin", "yes")]).unwrap_err(), "thin");
    }

    #[test]
    fn encryption_parameters() {
        let p = lvm(&[("encryptSecret", "ns1/vol-key"), ("encryptType", "LUKS")]).unwrap();
        let e = p.encrypt.clone().unwrap();
        assert_eq!(
            (e.secret_namespace.as_str(), e.secret_name.as_str(), e.kind),
            ("ns1", "vol-key", EncryptType::LUKS)
        );
        // encryptType defaults to LUKS; the Debug shows the reference, never more.
        let p = lvm(&[("encryptSecret", " a/b.c ")]).unwrap();
        assert_eq!(p.encrypt.as_ref().unwrap().secret_name, "b.c");
        assert!(format!("{p:?}").contains("a/b.c"));
        assert!(lvm(&[]).unwrap().encrypt.is_none());
        assert!(
            lvm(&[("encryptSecret", ""), ("encryptType", "")])
                .unwrap()
                .encrypt
                .is_none()
        );
        // ill-formed or unsupported values name their parameter
        for (k, v) in [
            ("encryptSecret", "nons"),
            ("encryptSecret", "../etc"),
            ("encryptSecret", "ns/.."),
            ("encryptSecret", "ns/-x"),
            ("encryptSecret", "ns/Upper"),
            ("encryptSecret", "n.s/x"),
            ("encryptSecret", "ns/x y"),
        ] {
            let e = lvm(&[(k, v)]).expect_err(v);
            assert!(matches!(e, ParamError::Invalid { .. }), "{e}");
            err_names(e, k);
        }
        let e = lvm(&[("encryptSecret", "a/b"), ("encryptType", "AES")]).unwrap_err();
        assert!(matches!(e, ParamError::Unsupported { .. }), "{e}");
        err_names(e, "encryptType");
        err_names(
            lvm(&[("encryptType", "LUKS")]).unwrap_err(),
            "encryptSecret",
        );
        assert_eq!(
            parse_secret_ref("kube-system/k").unwrap().to_string(),
            "kube-system/k"
        );
    }

    #[test]
    fn every_lvm_refusal_names_its_parameter() {
        err_names(LvmParams::parse(&map(&[])).unwrap_err(), "poolClass");
        let cases: &[(&str, &str)] = &[
            ("poolClass", "SATA"),
            ("replicaNumber", "0"),
            ("replicaNumber", "3"),
            ("replicaNumber", "two"),
            ("convertible", "maybe"),
            ("striped", "sometimes"),
            ("volumeKind", "ZFS"),
            ("poolType", "FAST"),
            ("csi.storage.k8s.io/fstype", "ntfs"),
            ("provision-iops-on-creation", "fast"),
            ("provision-iops-on-creation", "0"),
            ("provision-iops-on-creation", "-5"),
            ("provision-throughput-on-creation", "1Q"),
            ("encryptSecret", "nonamespace"),
            ("encryptSecret", "/x"),
            ("encryptSecret", "a/b/c"),
            ("encryptType", "AES"),
            ("thin", "1"),
            ("csi.storage.k8s.io/pvc/name", "a/b"),
            ("csi.storage.k8s.io/pvc/namespace", "x\ny"),
            ("frobnicate", "1"),
        ];
        for (k, v) in cases {
            let e = lvm(&[(k, v)]).expect_err(&format!("{k}={v} must be refused"));
            err_names(e, k);
        }
        // encryptType alone: the missing secret is what is named.
        err_names(
            lvm(&[("encryptType", "LUKS")]).unwrap_err(),
            "encryptSecret",
        );
    }

    #[test]
    fn disk_params() {
        let p = DiskParams::parse(&map(&[
            ("diskType", "SSD"),
            ("minCap", "10Gi"),
            ("csi.storage.k8s.io/fstype", "ext4"),
            ("csi.storage.k8s.io/pvc/name", "d"),
            ("csi.storage.k8s.io/pvc/namespace", "ns"),
        ]))
        .unwrap();
        assert_eq!(p.disk_type, DiskType::SSD);
        assert_eq!(p.min_cap, Some(10 << 30));
        assert_eq!(p.required_bytes(1 << 30), 10 << 30);
        assert_eq!(p.required_bytes(20 << 30), 20 << 30);
        assert_eq!(p.fs_type.as_deref(), Some("ext4"));

        err_names(DiskParams::parse(&map(&[])).unwrap_err(), "diskType");
        for (k, v) in [
            ("diskType", "Unknown"),
            ("diskType", "tape"),
            ("minCap", "lots"),
            ("minCap", "0"),
            ("csi.storage.k8s.io/fstype", "vfat"),
            ("poolClass", "HDD"),
        ] {
            let mut m = map(&[("diskType", "HDD")]);
            m.insert(k.into(), v.into());
            err_names(DiskParams::parse(&m).expect_err(k), k);
        }
    }

    #[test]
    fn snapshot_params() {
        assert_eq!(SnapshotParams::parse(&map(&[])).unwrap().snapsize, None);
        let p = SnapshotParams::parse(&map(&[
            ("snapsize", "1073741824"),
            ("csi.storage.k8s.io/volumesnapshot/name", "s"),
        ]))
        .unwrap();
        assert_eq!(p.snapsize, Some(1 << 30));
        for v in ["1Mi", "big", "0"] {
            err_names(
                SnapshotParams::parse(&map(&[("snapsize", v)])).unwrap_err(),
                "snapsize",
            );
        }
        err_names(
            SnapshotParams::parse(&map(&[("other", "1")])).unwrap_err(),
            "other",
        );
    }
}
