//! Where the node service finds the key of an encrypted volume.
//!
//! An encrypted volume names its key by reference: StorageClass parameter
//! `encryptSecret: <namespace>/<name>` becomes `LocalVolume.spec.volumeEncrypt.secret`. At
//! NodePublish the key is looked up, in this order:
//!
//! 1. the CSI request's own `secrets` (a StorageClass may point
//!    `csi.storage.k8s.io/node-publish-secret-name/-namespace` at the same Secret, and the
//!    kubelet then sends its data): the entry [`SECRET_DATA_KEY`] (`key`) is used when present;
//! 2. the node's [`KeySource`]:
//!    - [`KeySource::Store`]: a `core/v1` Secret `<name>` in namespace `<namespace>` read
//!      through the object store (Kubernetes mode: the API server), data key `key`;
//!    - [`KeySource::Files`]: the file `<dir>/<namespace>/<name>` (standalone mode:
//!      `<data-dir>/secrets/...`), which must be mode 0600 or stricter; a key file that its
//!      group or others can read is refused.
//!
//! The key is the exact bytes of the entry or file (no trimming; at least 8 bytes). It is
//! held as a [`Secret`], whose `Debug` is redacted and whose bytes are zeroed on drop; it
//! only ever leaves this process on the stdin of `cryptsetup`. Errors name the reference
//! and the source, never the key.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

use hwameistor_core::types::NamespacedName;
use hwameistor_engine::luks::Secret;
use hwameistor_store::Store;
use k8s_openapi::api::core::v1::Secret as KubeSecret;

/// Data key holding the LUKS passphrase, in a Kubernetes Secret and in CSI `secrets`.
pub const SECRET_DATA_KEY: &str = hwameistor_api::consts::ENCRYPT_SECRET_KEY;

/// Why no key could be produced. Never contains key material.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error(
        "encryption key {reference}: this node has no key source (no Secret store and no \
         secrets directory) and the request carries no {SECRET_DATA_KEY:?} secret"
    )]
    NoSource { reference: String },
    #[error("encryption key {reference}: {location} not found")]
    NotFound { reference: String, location: String },
    #[error("encryption key {reference}: {location}: {reason}")]
    Invalid {
        reference: String,
        location: String,
        reason: String,
    },
    #[error("encryption key {reference}: reading {location}: {reason}")]
    Unavailable {
        reference: String,
        location: String,
        reason: String,
    },
}

/// The node's source of volume keys. See the module docs.
#[derive(Clone, Default)]
pub enum KeySource {
    /// No source: only keys carried by the CSI request work.
    #[default]
    None,
    /// `core/v1` Secrets in the object store (the Kubernetes API in Kubernetes mode).
    Store(Store),
    /// Files `<dir>/<namespace>/<name>`, mode 0600 or stricter.
    Files(PathBuf),
}

impl fmt::Debug for KeySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeySource::None => f.write_str("KeySource::None"),
            KeySource::Store(_) => f.write_str("KeySource::Store"),
            KeySource::Files(d) => f.debug_tuple("KeySource::Files").field(d).finish(),
        }
    }
}

impl KeySource {
    /// Key files under `dir` (standalone: `<data-dir>/secrets`).
    pub fn files(dir: impl Into<PathBuf>) -> Self {
        KeySource::Files(dir.into())
    }

    /// Whether a source is configured.
    pub fn is_none(&self) -> bool {
        matches!(self, KeySource::None)
    }

    /// Path of the key file of `reference` under `dir`.
    pub fn key_file(dir: &Path, reference: &NamespacedName) -> PathBuf {
        dir.join(&reference.namespace).join(&reference.name)
    }

    /// The key named by `reference`, from the request's `csi_secrets` if they carry one,
    /// else from this source.
    pub async fn key(
        &self,
        reference: &NamespacedName,
        csi_secrets: &HashMap<String, String>,
    ) -> Result<Secret, KeyError> {
        let r = reference.to_string();
        // The reference came from our own objects, but check it again: it becomes a path.
        hwameistor_core::params::parse_secret_ref(&r).map_err(|e| KeyError::Invalid {
            reference: r.clone(),
            location: "the reference".into(),
            reason: e.to_string(),
        })?;
        let too_short = |location: String, e: hwameistor_engine::Error| KeyError::Invalid {
            reference: r.clone(),
            location,
            reason: e.to_string(),
        };
        if let Some(k) = csi_secrets.get(SECRET_DATA_KEY) {
            return Secret::new(k.as_bytes().to_vec()).map_err(|e| {
                too_short(format!("the request's secret entry {SECRET_DATA_KEY:?}"), e)
            });
        }
        match self {
            KeySource::None => Err(KeyError::NoSource { reference: r }),
            KeySource::Store(store) => {
                let location = format!(
                    "Secret {}/{} (data key {SECRET_DATA_KEY:?})",
                    reference.namespace, reference.name
                );
                let s = store
                    .namespaced::<KubeSecret>(&reference.namespace)
                    .get_opt(&reference.name)
                    .await
                    .map_err(|e| KeyError::Unavailable {
                        reference: r.clone(),
                        location: location.clone(),
                        reason: e.to_string(),
                    })?
                    .ok_or_else(|| KeyError::NotFound {
                        reference: r.clone(),
                        location: location.clone(),
                    })?;
                let bytes = s
                    .data
                    .as_ref()
                    .and_then(|d| d.get(SECRET_DATA_KEY))
                    .map(|b| b.0.clone())
                    .or_else(|| {
                        s.string_data
                            .as_ref()
                            .and_then(|d| d.get(SECRET_DATA_KEY))
                            .map(|v| v.as_bytes().to_vec())
                    })
                    .ok_or_else(|| KeyError::Invalid {
                        reference: r.clone(),
                        location: location.clone(),
                        reason: format!("the Secret has no data key {SECRET_DATA_KEY:?}"),
                    })?;
                Secret::new(bytes).map_err(|e| too_short(location, e))
            }
            KeySource::Files(dir) => {
                let path = Self::key_file(dir, reference);
                let location = format!("key file {}", path.display());
                match std::fs::symlink_metadata(&path) {
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                        return Err(KeyError::NotFound {
                            reference: r,
                            location,
                        });
                    }
                    Err(e) => {
                        return Err(KeyError::Unavailable {
                            reference: r,
                            location,
                            reason: e.to_string(),
                        });
                    }
                    Ok(m) if !m.is_file() => {
                        return Err(KeyError::Invalid {
                            reference: r,
                            location,
                            reason: "not a regular file (symbolic links are refused)".into(),
                        });
                    }
                    Ok(_) => {}
                }
                // Refuses a file readable by group or others (mode must be 0600 or stricter).
                Secret::from_file(&path).map_err(|e| KeyError::Invalid {
                    reference: r,
                    location,
                    reason: e.to_string(),
                })
            }
        }
    }
}

/// [`write_key_file`] from a textual reference (`"<namespace>/<name>"`) and raw key bytes
/// (at least 8), for `hwameictl secret set`.
pub fn store_key_file(dir: &Path, reference: &str, key: Vec<u8>) -> Result<PathBuf, KeyError> {
    let r =
        hwameistor_core::params::parse_secret_ref(reference).map_err(|e| KeyError::Invalid {
            reference: reference.to_string(),
            location: "the reference".into(),
            reason: e.to_string(),
        })?;
    let key = Secret::new(key).map_err(|e| KeyError::Invalid {
        reference: reference.to_string(),
        location: "the key".into(),
        reason: e.to_string(),
    })?;
    write_key_file(dir, &r, &key)
}

/// Store `key` as the standalone key file of `reference` under `dir` (what
/// `hwameictl secret set` does): directories are created mode 0700, the file is written with
/// mode 0600 from its creation (never briefly readable by others) next to its final name,
/// synced, then renamed over any previous key. Returns the file's path.
pub fn write_key_file(
    dir: &Path,
    reference: &NamespacedName,
    key: &Secret,
) -> Result<PathBuf, KeyError> {
    use std::io::Write;
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    let r = reference.to_string();
    hwameistor_core::params::parse_secret_ref(&r).map_err(|e| KeyError::Invalid {
        reference: r.clone(),
        location: "the reference".into(),
        reason: e.to_string(),
    })?;
    let path = KeySource::key_file(dir, reference);
    let location = format!("key file {}", path.display());
    let fail = |e: std::io::Error| KeyError::Unavailable {
        reference: r.clone(),
        location: location.clone(),
        reason: e.to_string(),
    };
    let parent = path.parent().unwrap_or(dir);
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(parent)
        .map_err(fail)?;
    let tmp = parent.join(format!(".{}.tmp-{}", reference.name, std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    let res = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(key.expose())?;
        f.sync_all()?;
        std::fs::rename(&tmp, &path)
    })();
    if let Err(e) = res {
        let _ = std::fs::remove_file(&tmp);
        return Err(fail(e));
    }
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use std::os::unix::fs::PermissionsExt;

    fn r(s: &str) -> NamespacedName {
        s.parse().unwrap()
    }

    fn write_key(dir: &Path, ns: &str, name: &str, body: &[u8], mode: u32) -> PathBuf {
        let d = dir.join(ns);
        std::fs::create_dir_all(&d).unwrap();
        let p = d.join(name);
        std::fs::write(&p, body).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
        p
    }

    #[tokio::test]
    async fn files_need_mode_0600_and_errors_never_show_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let src = KeySource::files(dir.path());
        let none = HashMap::new();
        let p = write_key(dir.path(), "ns1", "k", b"sup3r-secret-passphrase\n", 0o644);
        let e = src.key(&r("ns1/k"), &none).await.unwrap_err();
        let msg = e.to_string();
        assert!(matches!(e, KeyError::Invalid { .. }), "{msg}");
        assert!(msg.contains("0600") && msg.contains("ns1/k"), "{msg}");
        assert!(!msg.contains("sup3r"), "{msg}");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o640)).unwrap();
        assert!(src.key(&r("ns1/k"), &none).await.is_err());
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        let k = src.key(&r("ns1/k"), &none).await.unwrap();
        // exact bytes, trailing newline included
        assert_eq!(
            k,
            Secret::new(b"sup3r-secret-passphrase\n".to_vec()).unwrap()
        );
        assert_eq!(format!("{k:?}"), "Secret(<redacted>)");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o400)).unwrap();
        assert!(src.key(&r("ns1/k"), &none).await.is_ok());

        let e = src.key(&r("ns1/missing"), &none).await.unwrap_err();
        assert!(matches!(e, KeyError::NotFound { .. }), "{e}");
        // too short
        write_key(dir.path(), "ns1", "short", b"abc", 0o600);
        let e = src.key(&r("ns1/short"), &none).await.unwrap_err();
        assert!(e.to_string().contains("at least 8"), "{e}");
        assert!(!e.to_string().contains("abc"), "{e}");
        // symbolic links are refused (a link could point anywhere)
        std::os::unix::fs::symlink(&p, dir.path().join("ns1").join("link")).unwrap();
        let e = src.key(&r("ns1/link"), &none).await.unwrap_err();
        assert!(e.to_string().contains("symbolic"), "{e}");
    }

    #[tokio::test]
    async fn references_that_could_escape_the_directory_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let src = KeySource::files(dir.path().join("secrets"));
        write_key(dir.path(), "x", "k", b"0123456789", 0o600);
        for bad in [
            NamespacedName {
                namespace: "..".into(),
                name: "x".into(),
            },
            NamespacedName {
                namespace: "secrets".into(),
                name: "../x/k".into(),
            },
        ] {
            let e = src.key(&bad, &HashMap::new()).await.unwrap_err();
            assert!(matches!(e, KeyError::Invalid { .. }), "{e}");
        }
    }

    #[tokio::test]
    async fn request_secrets_take_precedence_and_no_source_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        write_key(dir.path(), "ns1", "k", b"from-the-file", 0o600);
        let csi: HashMap<String, String> = [("key".to_string(), "from-the-request".to_string())]
            .into_iter()
            .collect();
        let k = KeySource::files(dir.path())
            .key(&r("ns1/k"), &csi)
            .await
            .unwrap();
        assert_eq!(k, Secret::new(b"from-the-request".to_vec()).unwrap());
        // without a source, only the request's key works
        let k = KeySource::None.key(&r("ns1/k"), &csi).await.unwrap();
        assert_eq!(k, Secret::new(b"from-the-request".to_vec()).unwrap());
        let e = KeySource::None
            .key(&r("ns1/k"), &HashMap::new())
            .await
            .unwrap_err();
        assert!(matches!(e, KeyError::NoSource { .. }), "{e}");
        // secrets without our data key fall through to the source
        let other: HashMap<String, String> = [("user".to_string(), "x".to_string())]
            .into_iter()
            .collect();
        let k = KeySource::files(dir.path())
            .key(&r("ns1/k"), &other)
            .await
            .unwrap();
        assert_eq!(k, Secret::new(b"from-the-file".to_vec()).unwrap());
    }

    #[tokio::test]
    async fn written_key_files_are_private_and_read_back() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let secrets = dir.path().join("secrets");
        let k = Secret::new(b"written-by-hwameictl".to_vec()).unwrap();
        let p = write_key_file(&secrets, &r("ns1/k"), &k).unwrap();
        assert_eq!(p, secrets.join("ns1/k"));
        assert_eq!(std::fs::metadata(&p).unwrap().mode() & 0o777, 0o600);
        assert_eq!(
            std::fs::metadata(secrets.join("ns1")).unwrap().mode() & 0o777,
            0o700
        );
        let src = KeySource::files(&secrets);
        assert_eq!(src.key(&r("ns1/k"), &HashMap::new()).await.unwrap(), k);
        // replaced atomically, no temporary file left
        let k2 = Secret::new(b"second-key-bytes".to_vec()).unwrap();
        write_key_file(&secrets, &r("ns1/k"), &k2).unwrap();
        assert_eq!(src.key(&r("ns1/k"), &HashMap::new()).await.unwrap(), k2);
        assert_eq!(std::fs::read_dir(secrets.join("ns1")).unwrap().count(), 1);
        let bad = NamespacedName {
            namespace: "..".into(),
            name: "x".into(),
        };
        assert!(write_key_file(&secrets, &bad, &k).is_err());
    }

    #[tokio::test]
    async fn kubernetes_secrets_through_the_store() {
        let store: Store = hwameistor_store::EmbeddedStore::in_memory().unwrap().into();
        let src = KeySource::Store(store.clone());
        let none = HashMap::new();
        let e = src.key(&r("ns1/vol-key"), &none).await.unwrap_err();
        assert!(matches!(e, KeyError::NotFound { .. }), "{e}");
        assert!(e.to_string().contains("Secret ns1/vol-key"), "{e}");
        let mut data = BTreeMap::new();
        data.insert(
            "key".to_string(),
            k8s_openapi::ByteString(b"kube-passphrase".to_vec()),
        );
        let secret = KubeSecret {
            metadata: kube::api::ObjectMeta {
                name: Some("vol-key".into()),
                namespace: Some("ns1".into()),
                ..Default::default()
            },
            data: Some(data),
            ..Default::default()
        };
        store
            .namespaced::<KubeSecret>("ns1")
            .create(&secret)
            .await
            .unwrap();
        let k = src.key(&r("ns1/vol-key"), &none).await.unwrap();
        assert_eq!(k, Secret::new(b"kube-passphrase".to_vec()).unwrap());
        // a Secret without the data key says which key is missing
        let mut other = secret.clone();
        other.metadata.name = Some("other".into());
        other.data = Some(BTreeMap::new());
        store
            .namespaced::<KubeSecret>("ns1")
            .create(&other)
            .await
            .unwrap();
        let e = src.key(&r("ns1/other"), &none).await.unwrap_err();
        assert!(e.to_string().contains("no data key \"key\""), "{e}");
        assert_eq!(format!("{src:?}"), "KeySource::Store");
    }
}
