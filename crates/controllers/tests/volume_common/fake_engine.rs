//! An in-memory `VolumeEngine` for reconciler tests: pools of fixed size per disk, volumes as
//! numbers, call counters, an optional "crash point" after create, and disks that fail.

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use hwameistor_engine::{
    EngineKind, Error, PoolDisk, PoolInfo, Result, VolumeAttributes, VolumeEngine, VolumeInfo,
    VolumeOptions, round_up_to_extent,
};
use tokio::sync::Notify;

#[derive(Debug, Default)]
struct Pool {
    disks: Vec<PathBuf>,
    volumes: BTreeMap<String, u64>,
}

#[derive(Debug, Default)]
pub struct FakeEngine {
    /// Size each disk adds to a pool.
    pub disk_bytes: u64,
    pools: Mutex<BTreeMap<String, Pool>>,
    /// Disks whose addition to a pool fails (like a disk vgextend rejects).
    pub bad_disks: Mutex<HashSet<PathBuf>>,
    pub creates: AtomicUsize,
    pub deletes: AtomicUsize,
    pub extends: AtomicUsize,
    /// When set, create_volume creates the volume and then never returns (the agent "crashes"
    /// between the engine call and the status write).
    pub hang_after_create: Mutex<bool>,
    pub created: Notify,
    /// Report `EngineKind::Lvm` instead of `EngineKind::File`.
    pub as_lvm: std::sync::atomic::AtomicBool,
    /// `(volume, options)` of every create_volume call, in order.
    pub create_opts: Mutex<Vec<(String, VolumeOptions)>>,
}

impl FakeEngine {
    pub fn new(disk_bytes: u64) -> Self {
        FakeEngine {
            disk_bytes,
            ..Default::default()
        }
    }

    pub fn volume_names(&self) -> Vec<String> {
        let pools = self.pools.lock().unwrap();
        pools
            .values()
            .flat_map(|p| p.volumes.keys().cloned())
            .collect()
    }

    pub fn volume_size(&self, name: &str) -> Option<u64> {
        let pools = self.pools.lock().unwrap();
        pools.values().find_map(|p| p.volumes.get(name).copied())
    }

    /// Put a volume into a pool behind the agent's back.
    pub fn inject_volume(&self, pool: &str, name: &str, size: u64) {
        let mut pools = self.pools.lock().unwrap();
        pools
            .entry(pool.into())
            .or_default()
            .volumes
            .insert(name.into(), size);
    }

    fn info(&self, name: &str, p: &Pool) -> PoolInfo {
        let total = self.disk_bytes * p.disks.len() as u64;
        let used: u64 = p.volumes.values().sum();
        PoolInfo {
            name: name.into(),
            engine: EngineKind::File,
            path: PathBuf::from(format!("/fake/{name}")),
            total_bytes: total,
            used_bytes: used,
            free_bytes: total.saturating_sub(used),
            max_volume_bytes: total,
            extent_bytes: 4 << 20,
            volume_count: p.volumes.len() as u32,
            disks: p
                .disks
                .iter()
                .map(|d| PoolDisk {
                    dev_path: d.clone(),
                    capacity_bytes: self.disk_bytes,
                    free_bytes: 0,
                })
                .collect(),
            volumes: p.volumes.keys().cloned().collect(),
        }
    }

    fn vinfo(pool: &str, name: &str, size: u64) -> VolumeInfo {
        VolumeInfo {
            pool: pool.into(),
            name: name.into(),
            size_bytes: size,
            device_path: PathBuf::from(format!("/dev/fake/{pool}/{name}")),
            attrs: VolumeAttributes {
                active: true,
                ..Default::default()
            },
        }
    }
}

fn failed(what: &str) -> Error {
    Error::Conflict {
        op: "fake engine",
        ctx: Default::default(),
        message: what.to_owned(),
    }
}

#[async_trait]
impl VolumeEngine for FakeEngine {
    fn kind(&self) -> EngineKind {
        if self.as_lvm.load(Ordering::SeqCst) {
            EngineKind::Lvm
        } else {
            EngineKind::File
        }
    }

    async fn ensure_pool(&self, pool: &str, disks: &[PathBuf]) -> Result<PoolInfo> {
        if let Some(bad) = disks
            .iter()
            .find(|d| self.bad_disks.lock().unwrap().contains(*d))
        {
            return Err(failed(&format!(
                "cannot add {} to {pool}: exit status 5",
                bad.display()
            )));
        }
        let mut pools = self.pools.lock().unwrap();
        let p = pools.entry(pool.into()).or_default();
        for d in disks {
            if !p.disks.contains(d) {
                p.disks.push(d.clone());
            }
        }
        Ok(self.info(pool, p))
    }

    async fn pool_info(&self, pool: &str) -> Result<Option<PoolInfo>> {
        let pools = self.pools.lock().unwrap();
        Ok(pools.get(pool).map(|p| self.info(pool, p)))
    }

    async fn list_pools(&self) -> Result<Vec<PoolInfo>> {
        let pools = self.pools.lock().unwrap();
        Ok(pools
            .iter()
            .filter(|(_, p)| !p.disks.is_empty())
            .map(|(n, p)| self.info(n, p))
            .collect())
    }

    async fn create_volume(
        &self,
        pool: &str,
        volume: &str,
        size_bytes: u64,
        opts: &VolumeOptions,
    ) -> Result<VolumeInfo> {
        self.create_opts
            .lock()
            .unwrap()
            .push((volume.to_owned(), opts.clone()));
        let size = round_up_to_extent(size_bytes, 4 << 20);
        {
            let mut pools = self.pools.lock().unwrap();
            let total =
                self.disk_bytes * pools.get(pool).map(|p| p.disks.len()).unwrap_or(0) as u64;
            let p = pools
                .get_mut(pool)
                .ok_or_else(|| failed(&format!("pool {pool} not found")))?;
            if let Some(&s) = p.volumes.get(volume) {
                return Ok(Self::vinfo(pool, volume, s));
            }
            let used: u64 = p.volumes.values().sum();
            if used + size > total {
                return Err(failed(&format!("insufficient free space in {pool}")));
            }
            p.volumes.insert(volume.into(), size);
        }
        self.creates.fetch_add(1, Ordering::SeqCst);
        self.created.notify_waiters();
        if *self.hang_after_create.lock().unwrap() {
            std::future::pending::<()>().await;
        }
        Ok(Self::vinfo(pool, volume, size))
    }

    async fn delete_volume(&self, pool: &str, volume: &str) -> Result<()> {
        let mut pools = self.pools.lock().unwrap();
        if let Some(p) = pools.get_mut(pool)
            && p.volumes.remove(volume).is_some()
        {
            self.deletes.fetch_add(1, Ordering::SeqCst);
        }
        Ok(())
    }

    async fn extend_volume(&self, pool: &str, volume: &str, size_bytes: u64) -> Result<VolumeInfo> {
        let size = round_up_to_extent(size_bytes, 4 << 20);
        let mut pools = self.pools.lock().unwrap();
        let p = pools.get_mut(pool).ok_or_else(|| failed("no pool"))?;
        let v = p
            .volumes
            .get_mut(volume)
            .ok_or_else(|| failed("no volume"))?;
        if size < *v {
            return Err(failed("shrink"));
        }
        *v = size;
        self.extends.fetch_add(1, Ordering::SeqCst);
        Ok(Self::vinfo(pool, volume, size))
    }

    async fn stat_volume(&self, pool: &str, volume: &str) -> Result<Option<VolumeInfo>> {
        let pools = self.pools.lock().unwrap();
        Ok(pools
            .get(pool)
            .and_then(|p| p.volumes.get(volume))
            .map(|&s| Self::vinfo(pool, volume, s)))
    }

    async fn activate_volume(&self, pool: &str, volume: &str) -> Result<VolumeInfo> {
        self.stat_volume(pool, volume)
            .await?
            .ok_or_else(|| failed("no volume"))
    }

    async fn deactivate_volume(&self, _pool: &str, _volume: &str) -> Result<()> {
        Ok(())
    }

    async fn list_volumes(&self, pool: Option<&str>) -> Result<Vec<VolumeInfo>> {
        let pools = self.pools.lock().unwrap();
        Ok(pools
            .iter()
            .filter(|(n, _)| pool.is_none_or(|p| p == n.as_str()))
            .flat_map(|(n, p)| p.volumes.iter().map(|(v, s)| Self::vinfo(n, v, *s)))
            .collect())
    }
}
