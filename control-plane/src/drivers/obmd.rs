//! The `obmd` BMC: a node managed by CCI-MOC's obmd, the out-of-band
//! management daemon HIL master uses (its README is the reference).
//!
//! A node is registered with obmd's URL for it (`<obmd>/node/<id>`) and
//! obmd's admin token. Enabling the OBM (`PUT /v0/node/<n>/obm
//! {"enabled": true}`) asks obmd for a node token (`POST <uri>/token`,
//! HTTP Basic `admin:<admin token>`); power, boot device and console then
//! call obmd with `?token=<node token>`, as HIL's redirects made its clients
//! do. Unlike HIL, metalcast calls obmd itself: the node token never leaves
//! the server, so a tenant that leaves the project keeps nothing.

use futures_util::TryStreamExt;
use serde_json::{Value, json};

use super::{Bmc, ConsoleStream, DRIVER_TIMEOUT, DriverError, DriverFuture, PowerOp};

/// An obmd-managed node with a node token (OBM enabled).
#[derive(Debug, Clone)]
pub(super) struct Obmd {
    /// obmd's URL of the node, without a trailing `/`.
    pub(super) uri: String,
    /// The node token obmd issued.
    pub(super) token: String,
}

fn client(timeout: Option<std::time::Duration>) -> Result<reqwest::Client, DriverError> {
    crate::install_tls_provider();
    let b = reqwest::Client::builder().connect_timeout(std::time::Duration::from_secs(10));
    let b = match timeout {
        Some(t) => b.timeout(t),
        None => b,
    };
    b.build().map_err(|e| DriverError::Protocol(e.to_string()))
}

/// Sends a request to obmd; the body of a success. obmd answers 401 for a
/// bad token, 404 for an unknown node, 400 for a bad boot device.
async fn send(rb: reqwest::RequestBuilder) -> Result<String, DriverError> {
    let (status, body) = super::http_send(rb).await?;
    if !status.is_success() {
        let what = match status.as_u16() {
            401 => "obmd refused the token (was the OBM disabled elsewhere?)",
            404 => "obmd does not know this node",
            400 => "obmd refused the request",
            _ => "obmd failed",
        };
        return Err(DriverError::Protocol(format!("{what}: HTTP {status}: {}", body.trim())));
    }
    Ok(body)
}

impl Obmd {
    /// `<uri>/<op>?token=<node token>` (the token form-encoded).
    fn url(&self, op: &str) -> Result<reqwest::Url, DriverError> {
        let mut url =
            reqwest::Url::parse(&format!("{}/{op}", self.uri)).map_err(|e| DriverError::Protocol(e.to_string()))?;
        url.query_pairs_mut().append_pair("token", &self.token);
        Ok(url)
    }

    fn call(&self, method: reqwest::Method, op: &str) -> Result<reqwest::RequestBuilder, DriverError> {
        Ok(client(Some(DRIVER_TIMEOUT))?.request(method, self.url(op)?))
    }
}

impl Bmc for Obmd {
    fn power(&self, op: PowerOp) -> DriverFuture<'_, ()> {
        Box::pin(async move {
            let rb = match op {
                PowerOp::On => self.call(reqwest::Method::POST, "power_on")?,
                PowerOp::Off => self.call(reqwest::Method::POST, "power_off")?,
                // Forced, as the other drivers' cycle (obmd turns an off node on).
                PowerOp::Cycle => self.call(reqwest::Method::POST, "power_cycle")?.json(&json!({ "force": true })),
            };
            send(rb).await.map(drop)
        })
    }

    fn power_status(&self) -> DriverFuture<'_, bool> {
        Box::pin(async move {
            let body = send(self.call(reqwest::Method::GET, "power_status")?).await?;
            let v: Value = serde_json::from_str(&body).map_err(|e| DriverError::Protocol(e.to_string()))?;
            match v["power_status"].as_str() {
                Some("on") => Ok(true),
                Some("off") => Ok(false),
                other => Err(DriverError::Protocol(format!("unexpected power_status {other:?}"))),
            }
        })
    }

    fn set_bootdev<'a>(&'a self, dev: &'a str) -> DriverFuture<'a, ()> {
        // obmd's IPMI driver takes HIL's names (pxe, disk, none) as they are.
        Box::pin(async move {
            send(self.call(reqwest::Method::PUT, "boot_device")?.json(&json!({ "bootdev": dev }))).await.map(drop)
        })
    }

    fn open_console(&self) -> DriverFuture<'_, ConsoleStream> {
        Box::pin(async move {
            // A stream that lasts: bounded while connecting, not as a whole.
            let resp = client(None)?
                .get(self.url("console")?)
                .send()
                .await
                .map_err(|e| DriverError::Protocol(e.to_string()))?;
            if !resp.status().is_success() {
                return Err(DriverError::Protocol(format!("obmd console: HTTP {}", resp.status())));
            }
            let bytes = resp.bytes_stream().map_err(std::io::Error::other);
            Ok(Box::new(tokio_util::io::StreamReader::new(bytes)) as ConsoleStream)
        })
    }
}

/// Asks obmd for a new node token (which invalidates any earlier one).
pub async fn new_token(uri: &str, admin_token: &str) -> Result<String, DriverError> {
    let rb = client(Some(DRIVER_TIMEOUT))?
        .post(format!("{}/token", uri.trim_end_matches('/')))
        .basic_auth("admin", Some(admin_token));
    let body = send(rb).await?;
    let v: Value = serde_json::from_str(&body).map_err(|e| DriverError::Protocol(e.to_string()))?;
    match v["token"].as_str() {
        Some(t) if !t.is_empty() && t.len() <= 256 && t.bytes().all(|b| b.is_ascii_graphic()) => Ok(t.to_string()),
        _ => Err(DriverError::Protocol("obmd answered no usable token".into())),
    }
}

/// Invalidates the node's token at obmd (a no-op there if it has none).
pub async fn drop_token(uri: &str, admin_token: &str) -> Result<(), DriverError> {
    let rb = client(Some(DRIVER_TIMEOUT))?
        .delete(format!("{}/token", uri.trim_end_matches('/')))
        .basic_auth("admin", Some(admin_token));
    send(rb).await.map(drop)
}
