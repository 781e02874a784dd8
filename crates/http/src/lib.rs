//! hwameistor-http: the REST API of HwameiStor (axum).
//!
//! HwameiStor's state is a set of `hwameistor.io/v1alpha1` objects (LocalDisk, LocalVolume,
//! LocalStorageNode, ...). In a Kubernetes cluster the Kubernetes API server serves them; in
//! the single-node standalone mode nothing does, so this crate serves the same objects
//! over HTTP from any [`hwameistor_store::Store`], with the Kubernetes URL layout and
//! semantics. The cluster's `apiserver` component serves the same router over the
//! KubeStore. `hwameictl` is its client.
//!
//! # Routes (prefix [`PREFIX`] = `/apis/hwameistor.io/v1alpha1`)
//!
//! Generic, for every kind, by plural (see [`rest`]):
//! `GET {prefix}` (discovery), `GET|POST {prefix}/<plural>` (list with `labelSelector`,
//! `watch=true&resourceVersion=N` as JSON lines; create), `GET|PUT|PATCH|DELETE
//! {prefix}/<plural>/<name>`, `GET|PUT|PATCH {prefix}/<plural>/<name>/status`. Lists and
//! gets render a `meta.k8s.io/v1` Table (the kind's printer columns, exactly as
//! `kubectl get` prints them) when asked with `Accept: application/json;as=Table` or
//! `?table=1`.
//!
//! Task routes of the original apiserver (see [`cluster`]), under `{prefix}/cluster`:
//! `GET volumes[?volumeName&state&group&node]`, `POST volumes` (`{name, capacity,
//! parameters, node?}`: StorageClass parameters validated by
//! [`hwameistor_core::params::LvmParams`]), `GET|DELETE volumes/<v>` (delete = set
//! `spec.delete`), `GET volumes/<v>/replicas`, `POST volumes/<v>/expand`
//! (`{targetCapacity, abort}` → LocalVolumeExpand), `GET nodes`, `GET nodes/<n>`,
//! `GET nodes/<n>/disks`, `GET nodes/<n>/disks/<dev>`, `POST nodes/<n>/disks/<dev>`
//! (`{reserve}`), `POST nodes/<n>/disks/<dev>/owner` (`{owner}`), the same two as
//! `POST disks/<name>/reserve|owner`, `GET nodes/<n>/pools`, `GET pools`,
//! `GET pools/<p>`, `GET localdisks`, `GET localdisknodes`, `GET events[/<e>]`,
//! and auth: `POST auth/auth`, `POST auth/logout`, `GET auth/info` ([`auth`]).
//!
//! `GET /healthz` answers `ok`.
//!
//! # Errors
//!
//! One mapping ([`error::Error::status`]): 404 not found, 409 already exists / conflict,
//! 410 gone, 422 invalid, 400 malformed, 401 unauthorized, 500 backend; the body is
//! `{"errcode", "reason", "description"}` like the original's.
//!
//! # Entry points
//!
//! [`router`] builds the app over a store; [`serve`] runs it on a listener until a
//! shutdown token is cancelled (graceful: open watch streams end, in-flight requests
//! finish).

pub mod auth;
pub mod body;
pub mod cluster;
pub mod error;
pub mod kinds;
pub mod rest;
pub mod table;

use std::sync::Arc;

use axum::Router;
use axum::routing::{get, post};
use hwameistor_store::Store;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use auth::Credentials;
pub use error::{Error, Result};
pub use kinds::Registry;

/// URL prefix of every API route.
pub const PREFIX: &str = "/apis/hwameistor.io/v1alpha1";

/// Settings of the API.
#[derive(Clone, Debug, Default)]
pub struct ApiConfig {
    /// `Some`: every request needs a token obtained with these credentials.
    pub auth: Option<Credentials>,
}

/// Shared state of the handlers.
#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    pub registry: Registry,
    pub(crate) auth: auth::SharedAuth,
    /// Cancelled on shutdown; ends open watch streams.
    pub shutdown: CancellationToken,
}

/// The REST API over `store`. Cancelling `shutdown` ends open watch streams (so a graceful
/// server shutdown does not wait for them).
pub fn router(store: Store, cfg: ApiConfig, shutdown: CancellationToken) -> Router {
    let state = AppState {
        store,
        registry: Registry::hwameistor(),
        auth: cfg.auth.map(|c| Arc::new(auth::Auth::new(c))),
        shutdown,
    };
    use cluster as c;
    let cluster = Router::new()
        .route("/auth/auth", post(auth::login))
        .route("/auth/logout", post(auth::logout))
        .route("/auth/info", get(auth::info))
        .route("/volumes", get(c::list_volumes).post(c::create_volume))
        .route(
            "/volumes/{name}",
            get(c::get_volume).delete(c::delete_volume),
        )
        .route("/volumes/{name}/replicas", get(c::volume_replicas))
        .route("/volumes/{name}/expand", post(c::expand_volume))
        .route("/nodes", get(c::list_nodes))
        .route("/nodes/{node}", get(c::get_node))
        .route("/nodes/{node}/pools", get(c::node_pools))
        .route("/nodes/{node}/disks", get(c::node_disks))
        .route(
            "/nodes/{node}/disks/{dev}",
            get(c::get_node_disk).post(c::reserve_disk),
        )
        .route("/nodes/{node}/disks/{dev}/owner", post(c::disk_owner))
        .route("/disks/{name}/reserve", post(c::reserve_disk_by_name))
        .route("/disks/{name}/owner", post(c::disk_owner_by_name))
        .route("/pools", get(c::list_pools))
        .route("/pools/{pool}", get(c::get_pool))
        .route("/localdisks", get(c::list_localdisks))
        .route("/localdisknodes", get(c::list_localdisknodes))
        .route("/events", get(c::list_events))
        .route("/events/{name}", get(c::get_event));
    let api = Router::new()
        .route("/", get(rest::discovery))
        .route("/{plural}", get(rest::list).post(rest::create))
        .route(
            "/{plural}/{name}",
            get(rest::get)
                .put(rest::replace::<false>)
                .patch(rest::patch::<false>)
                .delete(rest::delete),
        )
        .route(
            "/{plural}/{name}/status",
            get(rest::get_status)
                .put(rest::replace::<true>)
                .patch(rest::patch::<true>),
        )
        .nest("/cluster", cluster);
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .nest(PREFIX, api)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::require_token,
        ))
        .with_state(state)
}

/// Serve `app` on `listener` until `shutdown` is cancelled, then finish in-flight requests
/// and return.
pub async fn serve(listener: TcpListener, app: Router, shutdown: CancellationToken) -> Result<()> {
    let address = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    tracing::info!(%address, "REST API listening");
    axum::serve(listener, app)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
        .map_err(|source| Error::Serve { address, source })
}
