//! Built-in netboot's decisions (docs/netboot.md): what a MAC boots, the
//! iPXE script and files it fetches, its signed tokens, full mode's address
//! leases, and the check-in policy for netbooted runtimes. The DHCP and
//! TFTP servers are the `metalcast-netboot` crate, which asks these use
//! cases through [`DbBackend`]; the HTTP side is `http::netboot`.
//!
//! **Decision table** (per MAC, after the database lookup):
//! - a node's NIC, `boot = runtime` -> the runtime script (kernel + initrd
//!   from this server, the node's check-in token on the command line);
//! - `boot = local` (its tenant OS is on disk; set when a disk deployment
//!   verified) -> a script that exits to the next boot device;
//! - `boot = none` -> no boot file (proxy: no answer; full: an address only);
//! - an unknown MAC -> with `--netboot-enroll`, the runtime in enrollment
//!   mode (it checks in and waits as a pending enrollment for an admin);
//!   otherwise, and for a rejected enrollment, no boot file.
//!
//! **Tokens**: `<purpose>.<mac hex>.<expiry>.<blake3 keyed MAC>` under a key
//! every replica shares (`server_secrets`). Purposes: `s` the script and
//! the files it names (short-lived), `c` a node's check-in, `e` an
//! enrollment check-in. A token is bound to one MAC and refused after its
//! expiry; a refusal is counted and says why.

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use metalcast_netboot as nb;
use serde::{Deserialize, Serialize};

use super::AppState;
use super::error::{Error, Result};
use crate::authz::Caller;
use crate::db;
use crate::db::netboot::Boot;

/// Netboot settings (`metalcast serve --netboot-*`).
#[derive(Debug, Clone)]
pub struct NetbootConfig {
    /// Base URL the nodes reach this server's HTTP on (`/boot/...`, the runtime's `metalcast.cp=`).
    pub base_url: String,
    /// The runtime's kernel.
    pub kernel: Option<PathBuf>,
    /// The runtime's initramfs (`metalcast-image initramfs`).
    pub initrd: Option<PathBuf>,
    /// Words added to the runtime's kernel command line (e.g. `console=ttyS0`).
    pub cmdline: String,
    /// Unknown MACs get the runtime in enrollment mode.
    pub enroll: bool,
    /// Directory of the iPXE binaries (`ipxe.efi` over HTTP for UEFI HTTP boot).
    pub boot_dir: PathBuf,
    /// File name of the UEFI iPXE binary in `boot_dir`.
    pub uefi_file: String,
    /// Life of a script token (the script and the files it names).
    pub script_ttl: Duration,
    /// Life of a check-in token (a runtime up longer must be netbooted again).
    pub checkin_ttl: Duration,
}

impl Default for NetbootConfig {
    fn default() -> Self {
        NetbootConfig {
            base_url: String::new(),
            kernel: None,
            initrd: None,
            cmdline: String::new(),
            enroll: false,
            boot_dir: PathBuf::from("/usr/lib/ipxe"),
            uefi_file: "ipxe.efi".into(),
            script_ttl: Duration::from_secs(600),
            checkin_ttl: Duration::from_secs(30 * 86_400),
        }
    }
}

/// Netboot's in-process state: settings, the token key, counters, events.
#[derive(Debug, Default)]
pub struct Netboot {
    /// Settings; `None`: netboot is off (the `/boot` routes answer 404).
    pub config: Option<NetbootConfig>,
    key: OnceLock<[u8; 32]>,
    /// The DHCP and TFTP servers' counters.
    pub counters: Arc<nb::Counters>,
    events: OnceLock<tokio::sync::mpsc::Sender<(Option<nb::Mac>, IpAddr, nb::Event)>>,
}

impl Netboot {
    /// Netboot on, with `config`.
    pub fn new(config: NetbootConfig) -> Netboot {
        Netboot { config: Some(config), ..Default::default() }
    }
}

/// Token purposes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// The iPXE script and the files it names.
    Script,
    /// A known node's runtime check-in.
    CheckIn,
    /// An unknown machine's enrollment check-in.
    Enroll,
}

impl Purpose {
    fn tag(self) -> &'static str {
        match self {
            Purpose::Script => "s",
            Purpose::CheckIn => "c",
            Purpose::Enroll => "e",
        }
    }
}

/// Normalizes a MAC to lower-case `aa:bb:cc:dd:ee:ff`.
pub fn normalize_mac(mac: &str) -> Result<String> {
    mac.parse::<nb::Mac>()
        .map(|m| m.to_string())
        .map_err(|_| Error::BadRequest(format!("{mac:?} is not a MAC address (aa:bb:cc:dd:ee:ff)")))
}

fn key(st: &AppState) -> Result<&[u8; 32]> {
    st.netboot.key.get().ok_or_else(|| Error::internal("the netboot token key is not loaded"))
}

/// Loads (or, on the first server ever, creates) the token key shared by every replica.
pub async fn load_key(st: &AppState) -> Result<()> {
    let fresh = crate::auth::random_hex(32);
    let hex_key = db::netboot::secret(&st.db.writer, "netboot-token-key", &fresh).await?;
    let bytes = hex::decode(hex_key.trim()).map_err(Error::internal)?;
    let k: [u8; 32] = bytes.try_into().map_err(|_| Error::internal("netboot token key is not 32 bytes"))?;
    let _ = st.netboot.key.set(k);
    Ok(())
}

fn tag(key: &[u8; 32], purpose: Purpose, mac_hex: &str, expiry: i64) -> blake3::Hash {
    blake3::keyed_hash(key, format!("metalcast-netboot|{}|{mac_hex}|{expiry}", purpose.tag()).as_bytes())
}

/// A token for `mac` (normalized) and `purpose`, valid for `ttl` from `now`.
pub fn sign(key: &[u8; 32], purpose: Purpose, mac: &str, now: i64, ttl: Duration) -> String {
    let mac_hex = mac.replace(':', "");
    let expiry = now.saturating_add(i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX));
    format!("{}.{mac_hex}.{expiry}.{}", purpose.tag(), tag(key, purpose, &mac_hex, expiry).to_hex())
}

/// Why a token is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Not a token at all.
    #[error("malformed token")]
    Malformed,
    /// A token for something else (a check-in token used for a script, ...).
    #[error("token for another purpose")]
    Purpose,
    /// A token of another MAC.
    #[error("token of another MAC")]
    OtherMac,
    /// Expired.
    #[error("expired token")]
    Expired,
    /// The signature does not match (forged or altered).
    #[error("forged token")]
    Forged,
}

/// Checks `token` for one of `purposes` and `mac` (normalized) at `now`; returns its purpose.
pub fn verify(key: &[u8; 32], token: &str, purposes: &[Purpose], mac: &str, now: i64) -> Result<Purpose, TokenError> {
    let mut parts = token.split('.');
    let (Some(p), Some(mac_hex), Some(expiry), Some(sig), None) =
        (parts.next(), parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(TokenError::Malformed);
    };
    let expiry: i64 = expiry.parse().map_err(|_| TokenError::Malformed)?;
    let sig = blake3::Hash::from_hex(sig).map_err(|_| TokenError::Malformed)?;
    let purpose = [Purpose::Script, Purpose::CheckIn, Purpose::Enroll]
        .into_iter()
        .find(|x| x.tag() == p)
        .ok_or(TokenError::Malformed)?;
    // blake3::Hash compares in constant time.
    if tag(key, purpose, mac_hex, expiry) != sig {
        return Err(TokenError::Forged);
    }
    if !purposes.contains(&purpose) {
        return Err(TokenError::Purpose);
    }
    if mac_hex != mac.replace(':', "") {
        return Err(TokenError::OtherMac);
    }
    if expiry <= now {
        return Err(TokenError::Expired);
    }
    Ok(purpose)
}

fn config(st: &AppState) -> Result<&NetbootConfig> {
    st.netboot.config.as_ref().ok_or_else(|| Error::NotFound("netboot is off on this server".into()))
}

/// What a MAC's netboot should do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// Boot the runtime as node `node`.
    Runtime {
        /// Node name.
        node: String,
        /// Its project.
        project: Option<String>,
    },
    /// Boot the node's local disk.
    Local {
        /// Node name.
        node: String,
        /// Its project.
        project: Option<String>,
    },
    /// Boot the runtime in enrollment mode (unknown MAC, enrollment on).
    Enroll,
    /// No boot file.
    Nothing,
}

/// The decision table (module docs) for `mac` (normalized).
pub async fn plan(st: &AppState, mac: &str) -> Result<Plan> {
    let cfg = config(st)?;
    if let Some(row) = db::netboot::by_mac(&st.db.pool, mac).await? {
        return Ok(match row.boot()? {
            Boot::Runtime => Plan::Runtime { node: row.node, project: row.project },
            Boot::Local => Plan::Local { node: row.node, project: row.project },
            Boot::None => Plan::Nothing,
        });
    }
    if !cfg.enroll {
        return Ok(Plan::Nothing);
    }
    Ok(match db::enrollments::state_of(&st.db.pool, mac).await? {
        None | Some(db::enrollments::EnrollState::Pending) => Plan::Enroll,
        Some(_) => Plan::Nothing,
    })
}

/// The URL of `mac`'s iPXE script, with a fresh script token.
pub fn script_url(st: &AppState, mac: &str) -> Result<String> {
    let cfg = config(st)?;
    let tok = sign(key(st)?, Purpose::Script, mac, crate::now(), cfg.script_ttl);
    Ok(format!("{}/boot/{mac}/script.ipxe?t={tok}", cfg.base_url))
}

/// Checks a script token of `mac` (the script and its files); counts and explains a refusal.
fn check_script_token(st: &AppState, mac: &str, token: &str) -> Result<()> {
    verify(key(st)?, token, &[Purpose::Script], mac, crate::now()).map(drop).map_err(|e| {
        st.metrics.netboot("token_refused");
        tracing::warn!(%mac, reason = %e, "refused a netboot script or file request");
        Error::Forbidden(format!("netboot: {e} for {mac}"))
    })
}

/// iPXE script text for `mac`, after checking its script token.
pub async fn script(st: &AppState, mac: &str, token: &str) -> Result<String> {
    let mac = normalize_mac(mac)?;
    check_script_token(st, &mac, token)?;
    let cfg = config(st)?;
    let plan = plan(st, &mac).await?;
    st.metrics.netboot("script_fetched");
    let runtime = |purpose: Purpose, who: &str| -> Result<String> {
        if cfg.kernel.is_none() || cfg.initrd.is_none() {
            return Err(Error::Unprocessable(
                "netboot has no runtime to serve (serve --netboot-kernel and --netboot-initrd)".into(),
            ));
        }
        let ctok = sign(key(st)?, purpose, &mac, crate::now(), cfg.checkin_ttl);
        let enroll = if purpose == Purpose::Enroll { " metalcast.enroll=1" } else { "" };
        let base = &cfg.base_url;
        Ok(format!(
            "#!ipxe\necho metalcast: booting the runtime for {who}\n\
             kernel --name vmlinuz {base}/boot/{mac}/vmlinuz?t={token} initrd=initrd {cmdline} metalcast.cp={base} metalcast.token={ctok}{enroll}\n\
             initrd --name initrd {base}/boot/{mac}/initrd?t={token}\n\
             boot\n",
            cmdline = cfg.cmdline.trim(),
        ))
    };
    let (text, node) = match &plan {
        Plan::Runtime { node, .. } => (runtime(Purpose::CheckIn, &format!("node {node}"))?, Some(node)),
        Plan::Enroll => (runtime(Purpose::Enroll, &format!("enrollment of {mac}"))?, None),
        Plan::Local { node, .. } => {
            (format!("#!ipxe\necho metalcast: node {node} boots from its local disk\nexit\n"), Some(node))
        }
        Plan::Nothing => (format!("#!ipxe\necho metalcast: {mac} may not netboot\nexit\n"), None),
    };
    if let (Some(node), Plan::Runtime { project, .. } | Plan::Local { project, .. }) = (node, &plan) {
        let what = if matches!(plan, Plan::Local { .. }) { "local disk" } else { "the runtime" };
        let _ = super::events::record(st, node, project.as_deref(), "netboot", &format!("iPXE script fetched: {what}"))
            .await;
    }
    Ok(text)
}

/// One of the runtime's files a script names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuntimeFile {
    /// The kernel.
    Kernel,
    /// The initramfs.
    Initrd,
}

/// The path of `mac`'s runtime `file`, after checking its script token; records the event.
pub async fn runtime_file(st: &AppState, mac: &str, token: &str, file: RuntimeFile) -> Result<PathBuf> {
    let mac = normalize_mac(mac)?;
    check_script_token(st, &mac, token)?;
    let cfg = config(st)?;
    let path = match file {
        RuntimeFile::Kernel => cfg.kernel.clone(),
        RuntimeFile::Initrd => cfg.initrd.clone(),
    }
    .ok_or_else(|| Error::NotFound("netboot has no runtime to serve".into()))?;
    let what = if file == RuntimeFile::Kernel { "kernel" } else { "initrd" };
    st.metrics.netboot(if file == RuntimeFile::Kernel { "kernel_fetched" } else { "initrd_fetched" });
    if let Some(row) = db::netboot::by_mac(&st.db.pool, &mac).await? {
        let _ =
            super::events::record(st, &row.node, row.project.as_deref(), "netboot", &format!("{what} fetched")).await;
    }
    Ok(path)
}

/// The UEFI iPXE binary for UEFI HTTP boot clients.
pub fn uefi_binary(st: &AppState) -> Result<PathBuf> {
    let cfg = config(st)?;
    st.metrics.netboot("http_ipxe_fetched");
    Ok(cfg.boot_dir.join(&cfg.uefi_file))
}

/// The check-in policy for netbooted runtimes, run before a check-in is
/// recorded: a check-in with a token must carry a valid one for its MAC;
/// an enrollment token records (or refreshes) a pending enrollment, and a
/// rejected machine is refused. A check-in without a token (a runtime
/// started by hand) is taken as before.
pub async fn gate_checkin(st: &AppState, c: &metalcast_runtime_api::CheckIn) -> std::result::Result<(), String> {
    let Some(token) = c.token.as_deref() else { return Ok(()) };
    let mac = normalize_mac(&c.node).map_err(|e| e.public_message())?;
    let k = key(st).map_err(|e| e.public_message())?;
    let purpose = verify(k, token, &[Purpose::CheckIn, Purpose::Enroll], &mac, crate::now()).map_err(|e| {
        st.metrics.netboot("token_refused");
        format!("netboot check-in token refused: {e} for {mac}")
    })?;
    let known = db::netboot::by_mac(&st.db.pool, &mac).await.map_err(|e| e.to_string())?;
    match (purpose, known) {
        (_, Some(row)) => {
            let _ = super::events::record(
                st,
                &row.node,
                row.project.as_deref(),
                "netboot",
                &format!("runtime checked in from {}", c.address),
            )
            .await;
            Ok(())
        }
        (Purpose::Enroll, None) => {
            let inventory = serde_json::to_string(&c.inventory).map_err(|e| e.to_string())?;
            let state = db::enrollments::seen(&st.db.writer, st.db.backend, &mac, &c.address, &inventory)
                .await
                .map_err(|e| e.to_string())?;
            if state == db::enrollments::EnrollState::Rejected {
                return Err(format!("{mac}: enrollment rejected by an administrator"));
            }
            st.metrics.netboot("enrollment_checkin");
            Ok(())
        }
        (_, None) => Err(format!("{mac}: no node has this MAC any more")),
    }
}

/// A full-mode address lease (`GET /v1/netboot/leases`).
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DhcpLease {
    /// Address.
    pub ip: String,
    /// Holder's MAC.
    pub mac: String,
    /// The node with that MAC, if any.
    pub node: Option<String>,
    /// `offered` (held briefly) or `bound`.
    pub state: String,
    /// Unix seconds (database clock).
    pub expires_at: i64,
}

/// Full mode's leases (admins).
pub async fn leases(st: &AppState, c: &Caller) -> Result<Vec<DhcpLease>> {
    c.require_admin()?;
    let mut out = Vec::new();
    for l in db::netboot::leases(&st.db.pool, st.db.backend).await? {
        let node = db::netboot::by_mac(&st.db.pool, &l.mac).await?.map(|r| r.node);
        out.push(DhcpLease { ip: l.ip, mac: l.mac, node, state: l.state, expires_at: l.expires_at });
    }
    Ok(out)
}

/// What a node boots when it netboots.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum BootChoice {
    /// The metalcast runtime.
    Runtime,
    /// Its local disk (the tenant OS a disk deployment wrote).
    Local,
    /// Nothing (no boot file).
    None,
}

impl From<Boot> for BootChoice {
    fn from(b: Boot) -> Self {
        match b {
            Boot::Runtime => BootChoice::Runtime,
            Boot::Local => BootChoice::Local,
            Boot::None => BootChoice::None,
        }
    }
}

impl From<BootChoice> for Boot {
    fn from(b: BootChoice) -> Self {
        match b {
            BootChoice::Runtime => Boot::Runtime,
            BootChoice::Local => Boot::Local,
            BootChoice::None => Boot::None,
        }
    }
}

/// A node's netboot choice (`GET|PUT /v1/nodes/{node}/boot`).
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NodeBoot {
    /// What it boots.
    pub boot: BootChoice,
}

async fn node_project(st: &AppState, c: &Caller, node: &str) -> Result<Option<String>> {
    let project = db::nodes::project_of(&st.db.pool, node)
        .await?
        .ok_or_else(|| Error::NotFound(format!("node {node:?} does not exist")))?;
    c.require_project(project.as_deref())?;
    Ok(project)
}

/// What `node` boots (admins and its project's members).
pub async fn boot_of(st: &AppState, c: &Caller, node: &str) -> Result<NodeBoot> {
    node_project(st, c, node).await?;
    let b = db::netboot::boot_of(&st.db.pool, node)
        .await?
        .ok_or_else(|| Error::NotFound(format!("node {node:?} does not exist")))?;
    Ok(NodeBoot { boot: b.into() })
}

/// Sets what `node` boots (admins and its project's members); records an event.
pub async fn set_boot(st: &AppState, c: &Caller, node: &str, boot: BootChoice) -> Result<NodeBoot> {
    let project = node_project(st, c, node).await?;
    if !db::netboot::set_boot(&st.db.writer, node, boot.into()).await? {
        return Err(Error::NotFound(format!("node {node:?} does not exist")));
    }
    let who = c.user.as_deref().unwrap_or("?");
    let _ = super::events::record(
        st,
        node,
        project.as_deref(),
        "netboot",
        &format!("boot set to {} by {who}", Boot::from(boot)),
    )
    .await;
    Ok(NodeBoot { boot })
}

/// Marks what `node` boots from now on, for the deployment engine and reclaim
/// (no caller: the system's own bookkeeping).
pub async fn mark(st: &AppState, node: &str, boot: Boot) -> Result<()> {
    db::netboot::set_boot(&st.db.writer, node, boot).await?;
    Ok(())
}

/// The crate's backend over this server's database.
#[derive(Debug, Clone)]
pub struct DbBackend(pub AppState);

fn backend_err(e: impl std::fmt::Display) -> nb::BackendError {
    nb::BackendError(e.to_string())
}

fn range_of(pool: &nb::Pool) -> (Vec<(String, Ipv4Addr)>, Ipv4Addr, Ipv4Addr) {
    (pool.reservations.iter().map(|(m, ip)| (m.to_string(), *ip)).collect(), pool.start, pool.end)
}

/// How long an offered address is held for the client's REQUEST.
const OFFER_HOLD_SECS: i64 = 60;

impl nb::Backend for DbBackend {
    async fn decide(&self, mac: nb::Mac, _client: nb::Client) -> std::result::Result<nb::Decision, nb::BackendError> {
        let mac = mac.to_string();
        match plan(&self.0, &mac).await.map_err(backend_err)? {
            Plan::Nothing => Ok(nb::Decision::AddressOnly),
            Plan::Runtime { .. } | Plan::Local { .. } | Plan::Enroll => {
                Ok(nb::Decision::Netboot { script_url: script_url(&self.0, &mac).map_err(backend_err)? })
            }
        }
    }

    async fn lease_offer(
        &self,
        mac: nb::Mac,
        requested: Option<Ipv4Addr>,
        pool: &nb::Pool,
    ) -> std::result::Result<Option<nb::Lease>, nb::BackendError> {
        let (reserved, first, last) = range_of(pool);
        let range = db::netboot::Range { first, last, reserved: &reserved };
        let db = &self.0.db;
        // Two servers (or two MACs) picking the same free address at once: the
        // loser's insert is a unique violation; it picks again.
        let mut attempt = 0;
        let got = loop {
            match db::netboot::offer(&db.writer, db.backend, &mac.to_string(), requested, &range, OFFER_HOLD_SECS).await
            {
                Err(e) if db::is_conflict(&e) && attempt < 8 => attempt += 1,
                r => break r.map_err(backend_err)?,
            }
        };
        Ok(got.map(|(ip, _)| nb::Lease { ip, secs: pool.lease_secs }))
    }

    async fn lease_commit(
        &self,
        mac: nb::Mac,
        ip: Ipv4Addr,
        pool: &nb::Pool,
    ) -> std::result::Result<Option<nb::Lease>, nb::BackendError> {
        let (reserved, first, last) = range_of(pool);
        let range = db::netboot::Range { first, last, reserved: &reserved };
        let db = &self.0.db;
        let secs = i64::from(pool.lease_secs);
        let got = match db::netboot::commit(&db.writer, db.backend, &mac.to_string(), ip, &range, secs).await {
            // Another MAC bound the address at the same moment: refuse (NAK).
            Err(e) if db::is_conflict(&e) => None,
            r => r.map_err(backend_err)?,
        };
        Ok(got.map(|_| nb::Lease { ip, secs: pool.lease_secs }))
    }

    async fn lease_release(&self, mac: nb::Mac, ip: Ipv4Addr) -> std::result::Result<(), nb::BackendError> {
        db::netboot::release(&self.0.db.writer, &mac.to_string(), ip).await.map(drop).map_err(backend_err)
    }

    fn event(&self, mac: Option<nb::Mac>, peer: IpAddr, event: nb::Event) {
        match self.0.netboot.events.get() {
            Some(tx) if tx.try_send((mac, peer, event)).is_ok() => {}
            _ => self.0.metrics.netboot("event_dropped"),
        }
    }
}

/// `text` with every `?t=<token>` shortened to `?t=...`: a script URL in
/// an event must not hand the node's token to whoever reads the log.
pub fn redact_tokens(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("?t=") {
        out.push_str(&rest[..i + 3]);
        out.push_str("...");
        rest = &rest[i + 3..];
        let end = rest.find(|c: char| c.is_whitespace() || c == ')' || c == ',').unwrap_or(rest.len());
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

/// Records the servers' events in the node event log, one at a time (a
/// flood fills the bounded queue and the rest are dropped and counted).
async fn record_events(st: AppState, mut rx: tokio::sync::mpsc::Receiver<(Option<nb::Mac>, IpAddr, nb::Event)>) {
    while let Some((mac, peer, event)) = rx.recv().await {
        let mac = match mac {
            Some(m) => Some(m.to_string()),
            None => match peer {
                IpAddr::V4(ip) => db::netboot::mac_of_ip(&st.db.pool, ip).await.ok().flatten(),
                IpAddr::V6(_) => None,
            },
        };
        let row = match &mac {
            Some(m) => db::netboot::by_mac(&st.db.pool, m).await.ok().flatten(),
            None => None,
        };
        match row {
            Some(r) => {
                let text = redact_tokens(&event.to_string());
                let _ = super::events::record(&st, &r.node, r.project.as_deref(), "netboot", &text).await;
            }
            None => tracing::debug!(mac = ?mac, %peer, %event, "netboot event of no known node"),
        }
    }
}

/// Loads the token key and installs [`gate_checkin`] on the runtime API
/// (idempotent). `serve` does it when netboot is on; [`start`] too.
pub async fn prepare(st: &AppState) -> Result<()> {
    load_key(st).await?;
    let weak = st.downgrade();
    st.runtime.set_checkin_gate(Arc::new(move |c| {
        let weak = weak.clone();
        Box::pin(async move {
            // The gate lives inside the state: hold it weakly (no cycle).
            let Some(st) = AppState::upgrade(&weak) else { return Err("the server is stopping".to_string()) };
            gate_checkin(&st, &c).await
        })
    }));
    Ok(())
}

/// Starts the DHCP and TFTP servers of `cfg` (mode off: TFTP only) with
/// this server's database as their backend; they stop with the server's
/// shutdown token. Errors binding a socket are start-up errors.
pub async fn start(st: &AppState, cfg: nb::Config) -> std::result::Result<nb::Netboot, nb::NetbootError> {
    prepare(st)
        .await
        .map_err(|e| nb::NetbootError::Config(format!("loading the token key: {}", e.public_message())))?;
    let (tx, rx) = tokio::sync::mpsc::channel(1024);
    if st.netboot.events.set(tx).is_ok() {
        st.tasks.spawn(record_events(st.clone(), rx));
    }
    nb::Netboot::start(cfg, Arc::new(DbBackend(st.clone())), Arc::clone(&st.netboot.counters), st.tasks.token()).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_never_carry_tokens() {
        assert_eq!(
            redact_tokens("DHCP offered 10.0.0.5 with http://h/boot/m/script.ipxe?t=s.ab.12.cd (port 67)"),
            "DHCP offered 10.0.0.5 with http://h/boot/m/script.ipxe?t=... (port 67)"
        );
        assert_eq!(redact_tokens("x?t=abc"), "x?t=...");
        assert_eq!(redact_tokens("no token"), "no token");
    }

    #[test]
    fn tokens_bind_purpose_mac_and_expiry() {
        let k = [7u8; 32];
        let mac = "52:54:00:00:00:01";
        let t = sign(&k, Purpose::Script, mac, 1000, Duration::from_secs(60));
        assert_eq!(verify(&k, &t, &[Purpose::Script], mac, 1059), Ok(Purpose::Script));
        assert_eq!(verify(&k, &t, &[Purpose::Script], mac, 1060), Err(TokenError::Expired), "windows are half-open");
        assert_eq!(verify(&k, &t, &[Purpose::CheckIn], mac, 1000), Err(TokenError::Purpose));
        assert_eq!(verify(&k, &t, &[Purpose::Script], "52:54:00:00:00:02", 1000), Err(TokenError::OtherMac));
        assert_eq!(verify(&[8u8; 32], &t, &[Purpose::Script], mac, 1000), Err(TokenError::Forged));
        // Altering any part breaks the signature.
        let longer = t.replacen(".1060.", ".999999.", 1);
        assert_ne!(longer, t);
        assert_eq!(verify(&k, &longer, &[Purpose::Script], mac, 1000), Err(TokenError::Forged));
        let other = t.replacen("525400000001", "525400000002", 1);
        assert_eq!(verify(&k, &other, &[Purpose::Script], "52:54:00:00:00:02", 1000), Err(TokenError::Forged));
        for bad in ["", "s", "s.x.y.z", "s.525400000001.1060", "s.525400000001.abc.00", "x.5.1.2.3"] {
            assert_eq!(verify(&k, bad, &[Purpose::Script], mac, 1000), Err(TokenError::Malformed), "{bad:?}");
        }
    }
}
