//! The test-only BMC and switch: they record every operation in a table
//! tests read ([`log`]), and a `hold` switch waits on a gate tests open
//! ([`gate`]).

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

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

use super::{Bmc, ConsoleStream, DriverError, DriverFuture, PowerOp, Switch};

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
