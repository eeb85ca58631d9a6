//! The test-only BMC and switch: they record every operation in a table
//! tests read ([`log`]), and a `hold` switch waits on a gate tests open
//! ([`gate`]).
//!
//! Tests register them through the real API with ordinary configurations
//! that name the host `mock.invalid` (RFC 6761: it never resolves, so no
//! real driver can mean it): a `redfish` BMC whose `system` is the mock's
//! id ([`obm`]), an `upstream` switch whose `project` is the mock's key and
//! whose `node` is its mode ([`switch`]). [`Mock`], the test harness's
//! [`Chooser`], answers those with the mock and everything else with
//! [`Standard`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use serde_json::{Value, json};

use super::parent::Upstream;
use super::{
    Bmc, Chooser, ConsoleStream, DriverError, DriverFuture, ObmConfig, PowerOp, Standard, Switch, SwitchConfig,
};

/// The base URL that marks a mock configuration.
pub const URL: &str = "http://mock.invalid";

/// The `obm` object of a mock BMC with id `id`.
pub fn obm(id: &str) -> Value {
    json!({"type": "redfish", "url": URL, "system": id})
}

/// The body of `PUT /v0/switch/<s>` for a mock switch logging under `key`;
/// `fail`: every operation fails; `hold`: each waits for the [`gate`].
pub fn switch(key: &str, fail: bool, hold: bool) -> Value {
    let mode = match (fail, hold) {
        (false, false) => "ok",
        (true, false) => "fail",
        (false, true) => "hold",
        (true, true) => "hold-fail",
    };
    json!({"type": "upstream", "url": URL, "project": key, "node": mode})
}

/// The unit tests' driver choice: mock configurations get the mock.
#[derive(Debug, Clone, Copy, Default)]
pub struct Mock;

impl Chooser for Mock {
    fn bmc(&self, obm: &ObmConfig, parent: Option<&Arc<Upstream>>) -> Box<dyn Bmc> {
        match obm {
            ObmConfig::Redfish { url, system: Some(id), .. } if url == URL => Box::new(MockBmc { id: id.clone() }),
            _ => Standard.bmc(obm, parent),
        }
    }

    fn switch(&self, cfg: &SwitchConfig, parent: Option<&Arc<Upstream>>) -> Box<dyn Switch> {
        match cfg {
            SwitchConfig::Upstream { url, project, node } if url == URL => Box::new(MockSwitch {
                key: project.clone(),
                fail: node.ends_with("fail"),
                hold: node.starts_with("hold"),
            }),
            _ => Standard.switch(cfg, parent),
        }
    }
}

/// State of one mock BMC.
#[derive(Debug, Default)]
pub struct MockState {
    pub on: bool,
    pub log: Vec<String>,
}

fn table() -> &'static Mutex<HashMap<String, MockState>> {
    static T: OnceLock<Mutex<HashMap<String, MockState>>> = OnceLock::new();
    T.get_or_init(Default::default)
}

pub fn with<R>(id: &str, f: impl FnOnce(&mut MockState) -> R) -> R {
    let mut t = table().lock().unwrap();
    f(t.entry(id.to_string()).or_default())
}

/// Operations recorded by the mock BMC or switch `key`.
pub fn log(key: &str) -> Vec<String> {
    with(key, |s| s.log.clone())
}

/// Gate that `hold` mock switches wait on; tests add permits.
pub fn gate(key: &str) -> std::sync::Arc<tokio::sync::Semaphore> {
    static G: OnceLock<Mutex<HashMap<String, std::sync::Arc<tokio::sync::Semaphore>>>> = OnceLock::new();
    G.get_or_init(Default::default)
        .lock()
        .unwrap()
        .entry(key.to_string())
        .or_insert_with(|| std::sync::Arc::new(tokio::sync::Semaphore::new(0)))
        .clone()
}

/// A BMC that records operations under `id`.
#[derive(Debug, Clone)]
pub struct MockBmc {
    /// Key into the mock state table.
    pub id: String,
}

impl Bmc for MockBmc {
    fn power(&self, op: PowerOp) -> DriverFuture<'_, ()> {
        with(&self.id, |s| {
            s.on = !matches!(op, PowerOp::Off);
            s.log.push(format!("power {op:?}"));
        });
        Box::pin(async { Ok(()) })
    }

    fn power_status(&self) -> DriverFuture<'_, bool> {
        let on = with(&self.id, |s| s.on);
        Box::pin(async move { Ok(on) })
    }

    fn set_bootdev<'a>(&'a self, dev: &'a str) -> DriverFuture<'a, ()> {
        with(&self.id, |s| s.log.push(format!("bootdev {dev}")));
        Box::pin(async { Ok(()) })
    }

    fn open_console(&self) -> DriverFuture<'_, ConsoleStream> {
        Box::pin(async { Err(DriverError::Unsupported("the mock driver has no console")) })
    }
}

/// A switch that records operations under `key`, failing or holding on request.
#[derive(Debug, Clone)]
pub struct MockSwitch {
    /// Key of the operation log / gate.
    pub key: String,
    /// Fail every operation.
    pub fail: bool,
    /// Block each operation until the test releases the gate.
    pub hold: bool,
}

impl Switch for MockSwitch {
    fn add_vlan<'a>(&'a self, port: &'a str, vlan: u16, native: bool) -> DriverFuture<'a, ()> {
        Box::pin(mock_op(&self.key, self.fail, self.hold, format!("add {port} {vlan} native={native}")))
    }

    fn del_vlan<'a>(&'a self, port: &'a str, vlan: u16, _native: bool) -> DriverFuture<'a, ()> {
        Box::pin(mock_op(&self.key, self.fail, self.hold, format!("del {port} {vlan}")))
    }
}

async fn mock_op(key: &str, fail: bool, hold: bool, entry: String) -> Result<(), DriverError> {
    if hold {
        gate(key).acquire().await.expect("gate closed").forget();
    }
    if fail {
        return Err(DriverError::Command { program: "mock".into(), status: "1".into(), stderr: "mock failure".into() });
    }
    with(key, |s| s.log.push(entry));
    Ok(())
}
