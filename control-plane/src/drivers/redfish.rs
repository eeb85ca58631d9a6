//! The `redfish` BMC: the DMTF Redfish REST API over HTTP(S)
//! (`ComputerSystem.Reset`, `PowerState`, a one-time boot override).

use serde_json::{Value, json};

use super::{Bmc, ConsoleStream, DRIVER_TIMEOUT, DriverError, DriverFuture, PowerOp};

/// A Redfish BMC.
#[derive(Debug, Clone)]
pub(super) struct Redfish {
    /// Base URL without a trailing `/`.
    pub(super) url: String,
    /// System id under `/redfish/v1/Systems/`; the first system if absent.
    pub(super) system: Option<String>,
    pub(super) user: Option<String>,
    pub(super) password: Option<String>,
}

impl Bmc for Redfish {
    fn power(&self, op: PowerOp) -> DriverFuture<'_, ()> {
        Box::pin(async move {
            let reset = match op {
                PowerOp::On => "On",
                PowerOp::Off => "ForceOff",
                PowerOp::Cycle => {
                    if self.power_state().await? {
                        "ForceRestart"
                    } else {
                        "On"
                    }
                }
            };
            self.reset(reset).await
        })
    }

    fn power_status(&self) -> DriverFuture<'_, bool> {
        Box::pin(self.power_state())
    }

    fn set_bootdev<'a>(&'a self, dev: &'a str) -> DriverFuture<'a, ()> {
        let target = match dev {
            "disk" => "Hdd",
            "pxe" => "Pxe",
            _ => "None",
        };
        Box::pin(self.set_boot(target))
    }

    fn open_console(&self) -> DriverFuture<'_, ConsoleStream> {
        Box::pin(async { Err(DriverError::Unsupported("the redfish driver does not capture the console")) })
    }
}

impl Redfish {
    fn parts(&self) -> (&str, Option<&str>, Option<&str>, Option<&str>) {
        (&self.url, self.system.as_deref(), self.user.as_deref(), self.password.as_deref())
    }
}

fn client() -> Result<reqwest::Client, DriverError> {
    crate::install_tls_provider();
    reqwest::Client::builder().timeout(DRIVER_TIMEOUT).build().map_err(|e| DriverError::Protocol(e.to_string()))
}

fn auth(rb: reqwest::RequestBuilder, user: Option<&str>, pw: Option<&str>) -> reqwest::RequestBuilder {
    match user {
        Some(u) => rb.basic_auth(u, pw),
        None => rb,
    }
}

async fn send(rb: reqwest::RequestBuilder) -> Result<Value, DriverError> {
    let (status, body) = super::http_send(rb).await?;
    if !status.is_success() {
        return Err(DriverError::Protocol(format!("HTTP {status}: {body}")));
    }
    if body.trim().is_empty() {
        return Ok(Value::Null);
    }
    serde_json::from_str(&body).map_err(|e| DriverError::Protocol(e.to_string()))
}

/// URL of the managed system resource.
async fn system_url(c: &Redfish) -> Result<String, DriverError> {
    let (base, system, user, pw) = c.parts();
    if let Some(s) = system {
        return Ok(format!("{base}/redfish/v1/Systems/{s}"));
    }
    let v = send(auth(client()?.get(format!("{base}/redfish/v1/Systems")), user, pw)).await?;
    let path =
        v["Members"][0]["@odata.id"].as_str().ok_or_else(|| DriverError::Protocol("no systems on this BMC".into()))?;
    Ok(format!("{base}{path}"))
}

impl Redfish {
    async fn reset(&self, reset_type: &str) -> Result<(), DriverError> {
        let c = self;
        let (_, _, user, pw) = c.parts();
        let url = format!("{}/Actions/ComputerSystem.Reset", system_url(c).await?);
        send(auth(client()?.post(url), user, pw).json(&json!({ "ResetType": reset_type }))).await.map(drop)
    }

    async fn power_state(&self) -> Result<bool, DriverError> {
        let c = self;
        let (_, _, user, pw) = c.parts();
        let v = send(auth(client()?.get(system_url(c).await?), user, pw)).await?;
        match v["PowerState"].as_str() {
            Some("On") | Some("PoweringOn") => Ok(true),
            Some("Off") | Some("PoweringOff") => Ok(false),
            other => Err(DriverError::Protocol(format!("unexpected PowerState {other:?}"))),
        }
    }

    async fn set_boot(&self, target: &'static str) -> Result<(), DriverError> {
        let c = self;
        let (_, _, user, pw) = c.parts();
        let body = json!({ "Boot": {
            "BootSourceOverrideTarget": target,
            "BootSourceOverrideEnabled": "Once",
        }});
        send(auth(client()?.patch(system_url(c).await?), user, pw).json(&body)).await.map(drop)
    }
}
