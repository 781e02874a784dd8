//! Pure domain logic of HwameiStor: value types, state machines, placement and capacity
//! maths, disk classification and claim filters, name validation.
//!
//! This crate has no dependency on Kubernetes, gRPC, the async runtime or the host: every
//! function takes plain values and returns plain values, so it is tested with plain
//! `#[test]`s and property tests. Adapters (the `api` CRD types, controllers, the node agent)
//! convert their objects into these types and apply the decisions made here.
//!
//! Module owners (one engineer each, to avoid edit collisions):
//! - `types`     shared enums and value types used by the CRDs   (api)
//! - `names`     validation of names that reach argv or paths      (lead)
//! - `disk`      disk classification, identity, claim filters, LocalDiskAction rules (disk)
//! - `placement` replica placement, capacity accounting, reservations (controllers)
//! - `volume`    volume/replica/operation state machines, size rounding (controllers)
//! - `snapshot`  snapshot/restore/rollback state machines, thin-pool maths (snapshot)
//! - `mountinfo` parsing the kernel's mount table (lead)

pub mod disk;
pub mod mountinfo;
pub mod names;
pub mod params;
pub mod placement;
pub mod snapshot;
pub mod types;
pub mod volume;
