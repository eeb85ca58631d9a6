//! The use cases: what the control plane does, in terms of its resources,
//! below the HTTP layer and above the datastore (`db/`), the policy
//! (`authz`) and the drivers. Each takes the [`AppState`] context and the
//! caller, asks `authz` before it acts, and returns its own [`Error`]; none
//! sees axum, none writes SQL.
//!
//! One file per resource: [`projects`], [`nodes`] (and their NICs and
//! metadata), [`networks`] (with access and attachments), [`switches`] (and
//! ports), [`users`], [`tokens`] (with health, whoami and the first admin),
//! [`actions`] (queued networking actions), [`quotas`], [`keypairs`],
//! [`metadata`] (the NoCloud seed deployed systems read), [`images`] (the
//! registry), [`deployments`] (with the engine that runs them), [`reclaim`],
//! [`events`] (the node event log), [`netboot`] (what a MAC boots, its
//! tokens and leases) with [`enrollments`], and [`upstream`] (a nested
//! instance's parent: network hooks and the inventory sync).

pub mod actions;
pub mod authn;
pub mod deployments;
pub mod enrollments;
pub mod error;
pub mod events;
pub mod extensions;
pub mod fencing;
pub mod images;
pub mod keypairs;
pub mod market;
pub mod metadata;
pub mod metrics;
pub mod netboot;
pub mod networks;
pub mod nodes;
pub mod projects;
pub mod provisioning;
pub mod quotas;
pub mod reclaim;
pub mod replicas;
pub mod runtime;
pub mod sessions;
pub mod switches;
pub mod tokens;
pub mod upstream;
pub mod users;

pub use error::Error;

use std::ops::Deref;
use std::sync::Arc;

use crate::auth::AuthCache;
use crate::db::Db;
use crate::metrics::Metrics;

/// Range of VLAN ids the server allocates networks from (inclusive).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VlanPool {
    /// First id.
    pub first: u16,
    /// Last id.
    pub last: u16,
}

impl Default for VlanPool {
    fn default() -> Self {
        VlanPool { first: 100, last: 3999 }
    }
}

/// Everything handlers need; cheap to clone.
#[derive(Debug, Clone)]
pub struct AppState(Arc<Inner>);

/// The contents of [`AppState`].
#[derive(Debug)]
pub struct Inner {
    /// Database.
    pub db: Db,
    /// VLAN allocation pool.
    pub vlans: VlanPool,
    /// Prometheus series (shared with the BMC drivers' observer).
    pub metrics: Arc<Metrics>,
    /// Verified-credential cache.
    pub auth_cache: AuthCache,
    /// Notified whenever a networking action finishes (DONE or ERROR).
    pub action_done: tokio::sync::Notify,
    /// Image registry storage and trusted signers.
    pub registry: crate::registry::Registry,
    /// Running console captures.
    pub consoles: crate::console::Consoles,
    /// The node runtimes' API (its routes and long-polls); its state is in
    /// the database, through [`Inner::runtime_store`].
    pub runtime: metalcast_runtime_api::server::RuntimeApi,
    /// The runtime API's state: check-ins, instructions, phase reports (`app::runtime`).
    pub runtime_store: Arc<crate::app::runtime::DbStore>,
    /// How deployments reach the nodes (provisioning network).
    pub provision: crate::app::deployments::Provision,
    /// Progress of the deployments running in this process.
    pub deploys: crate::app::deployments::Deploys,
    /// Parent control plane of a nested instance (`serve --upstream`).
    pub upstream: Option<Arc<crate::drivers::parent::Upstream>>,
    /// Background work and its shutdown signal.
    pub tasks: crate::tasks::Tasks,
    /// Picks the BMC and switch drivers ([`crate::drivers::Standard`]).
    pub drivers: Arc<dyn crate::drivers::Chooser>,
    /// The marketplace's settings and in-process state.
    pub market: crate::app::market::Market,
    /// Built-in netboot's settings and in-process state.
    pub netboot: crate::app::netboot::Netboot,
    /// This process as a replica: its id (the owner of the work it starts), the dead timeout.
    pub replica: crate::app::replicas::Replica,
}

impl AppState {
    /// Build the state from a connected database.
    pub fn new(db: Db, vlans: VlanPool) -> Self {
        let replica = crate::app::replicas::Replica::default();
        let runtime_store = Arc::new(crate::app::runtime::DbStore::new(db.clone(), replica.id.clone()));
        let runtime = metalcast_runtime_api::server::RuntimeApi::new();
        runtime.set_store(runtime_store.clone(), crate::app::runtime::recheck(db.backend));
        AppState(Arc::new(Inner {
            db,
            vlans,
            metrics: Arc::new(Metrics::default()),
            auth_cache: AuthCache::default(),
            action_done: tokio::sync::Notify::new(),
            registry: crate::registry::Registry::default(),
            consoles: crate::console::Consoles::default(),
            runtime,
            runtime_store,
            provision: crate::app::deployments::Provision::default(),
            deploys: crate::app::deployments::Deploys::default(),
            upstream: None,
            tasks: crate::tasks::Tasks::default(),
            drivers: Arc::new(crate::drivers::Standard),
            market: crate::app::market::Market::default(),
            netboot: crate::app::netboot::Netboot::default(),
            replica,
        }))
    }

    /// Replace the image registry configuration.
    ///
    /// # Panics
    /// When the state was cloned already: configure it before serving.
    pub fn with_registry(self, registry: crate::registry::Registry) -> Self {
        let mut inner = std::sync::Arc::try_unwrap(self.0).expect("with_registry before the state is shared");
        inner.registry = registry;
        AppState(std::sync::Arc::new(inner))
    }
}

impl AppState {
    /// Replace the provisioning configuration (deployments).
    ///
    /// # Panics
    /// When the state was cloned already: configure it before serving.
    pub fn with_provision(self, provision: crate::app::deployments::Provision) -> Self {
        let mut inner = std::sync::Arc::try_unwrap(self.0).expect("with_provision before the state is shared");
        inner.provision = provision;
        AppState(std::sync::Arc::new(inner))
    }

    /// Let running deployments go on for up to `drain` after the shutdown
    /// signal (default [`crate::tasks::DEFAULT_DRAIN_TIME`]).
    ///
    /// # Panics
    /// When the state was cloned already: configure it before serving.
    pub fn with_drain_time(self, drain: std::time::Duration) -> Self {
        let mut inner = Arc::try_unwrap(self.0).expect("with_drain_time before the state is shared");
        inner.tasks = crate::tasks::Tasks::new(drain);
        AppState(Arc::new(inner))
    }

    /// A replica is dead after `dead_after` without a heartbeat (default 30 s).
    ///
    /// # Panics
    /// When the state was cloned already: configure it before serving.
    pub fn with_replica_dead_after(self, dead_after: std::time::Duration) -> Self {
        let mut inner = Arc::try_unwrap(self.0).expect("with_replica_dead_after before the state is shared");
        inner.replica.dead_after = dead_after;
        AppState(Arc::new(inner))
    }

    /// Choose drivers with `drivers` instead of [`crate::drivers::Standard`]
    /// (unit tests: their mock BMC and switch).
    ///
    /// # Panics
    /// When the state was cloned already: configure it before serving.
    pub fn with_drivers(self, drivers: Arc<dyn crate::drivers::Chooser>) -> Self {
        let mut inner = Arc::try_unwrap(self.0).expect("with_drivers before the state is shared");
        inner.drivers = drivers;
        AppState(Arc::new(inner))
    }

    /// Replace the marketplace's settings.
    ///
    /// # Panics
    /// When the state was cloned already: configure it before serving.
    pub fn with_market(self, config: crate::app::market::MarketConfig) -> Self {
        let mut inner = Arc::try_unwrap(self.0).expect("with_market before the state is shared");
        inner.market = crate::app::market::Market { config, ..Default::default() };
        AppState(Arc::new(inner))
    }

    /// Turn built-in netboot on with `config` (the `/boot` routes, the check-in gate).
    ///
    /// # Panics
    /// When the state was cloned already: configure it before serving.
    pub fn with_netboot(self, config: crate::app::netboot::NetbootConfig) -> Self {
        let mut inner = Arc::try_unwrap(self.0).expect("with_netboot before the state is shared");
        inner.netboot = crate::app::netboot::Netboot::new(config);
        AppState(Arc::new(inner))
    }

    /// Make this a nested instance of the parent behind `up` (and register
    /// `up` for the `upstream` drivers).
    ///
    /// # Panics
    /// When the state was cloned already: configure it before serving.
    pub fn with_upstream(self, up: Arc<crate::drivers::parent::Upstream>) -> Self {
        let mut inner = Arc::try_unwrap(self.0).expect("with_upstream before the state is shared");
        inner.upstream = Some(up);
        AppState(Arc::new(inner))
    }
}

impl AppState {
    /// The driver of a node's BMC (an `upstream` one gets this server's parent
    /// client); every call to a BMC is timed and counted in the metrics by
    /// driver (a node without one, `none`, has nothing to measure).
    pub fn bmc(&self, obm: &crate::drivers::ObmConfig) -> Box<dyn crate::drivers::Bmc> {
        let inner = self.drivers.bmc(obm, self.upstream.as_ref());
        if matches!(obm, crate::drivers::ObmConfig::None {}) {
            return inner;
        }
        let (metrics, driver) = (Arc::clone(&self.metrics), obm.kind());
        Box::new(crate::drivers::measured::Measured::new(
            inner,
            Arc::new(move |op, took, ok| metrics.bmc_call(driver, op, took, ok)),
        ))
    }

    /// The driver of a switch (an `upstream` one gets this server's parent client).
    pub fn switch(&self, cfg: &crate::drivers::SwitchConfig) -> Box<dyn crate::drivers::Switch> {
        self.drivers.switch(cfg, self.upstream.as_ref())
    }
}

impl AppState {
    /// A weak handle (for callbacks stored inside the state itself).
    pub fn downgrade(&self) -> std::sync::Weak<Inner> {
        Arc::downgrade(&self.0)
    }

    /// The state behind a weak handle, while it lives.
    pub fn upgrade(weak: &std::sync::Weak<Inner>) -> Option<AppState> {
        weak.upgrade().map(AppState)
    }
}

impl Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}
