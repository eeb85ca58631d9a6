//! Reclaim: give a node back to the free pool, clean, as fast as possible.
//!
//! [`reclaim`] (`POST /v1/nodes/{node}/reclaim`) runs these phases in order and reports the
//! time of each; the first failure stops it with the node still in its
//! project (nothing half-done is hidden from the database):
//! 1. `runtime`: with a provisioning network configured, first put the node
//!    back on it if its tenant took it off ([`super::provisioning`]); then
//!    bring the node back to the metalcast runtime. Already there:
//!    nothing to do. A tenant system whose agent checks in: a deployment of
//!    the runtime image (`serve --runtime-image`) with a kexec hand-over, no
//!    firmware reboot. Otherwise, or if that fails: the BMC sets the boot
//!    device to `pxe` and power-cycles the node, and we wait for the
//!    runtime's check-in.
//! 2. `wipe` (optional): `discard` or `zero` every disk of the node's
//!    registered inventory, done by the runtime (whose disk-write guard
//!    checks them again); a refusal is recorded as a node event.
//! 3. `networks`: every network detached from every NIC, except the
//!    provisioning network: a free node stays where its runtime is reached.
//! 4. `free`: the node leaves the project; its console log is dropped and
//!    its metadata tokens stop working.

use std::time::{Duration, Instant};

use metalcast_runtime_api::{Action, Phase, Role, Status, Wipe, WipeMode};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::AppState;
use super::error::{Error, Result, check_name};
use super::fencing::{self, Work};
use crate::authz::{Actor, Caller};
use crate::db::actions::ActionKind;
use crate::drivers::PowerOp;

/// `POST /v1/nodes/{node}/reclaim`.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReclaimRequest {
    /// Erase the node's disks before it is free: `none` (default), `discard` or `zero`.
    #[serde(default)]
    pub wipe: WipeSpec,
    /// Seconds to wait for the runtime to come back (default 300).
    #[serde(default)]
    pub timeout_secs: Option<u64>,
}

/// Disk erasure on reclaim.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum WipeSpec {
    /// Leave the disks as they are.
    #[default]
    None,
    /// Discard every block (fast where the device supports it).
    Discard,
    /// Write zeroes over every disk.
    Zero,
}

/// One phase of a reclaim.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ReclaimPhase {
    /// runtime | wipe | networks | free.
    pub phase: String,
    /// Wall time, seconds.
    pub secs: f64,
    /// What happened.
    pub detail: String,
}

/// The result of a reclaim.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Reclaimed {
    /// Node name.
    pub node: String,
    /// The project it left.
    pub project: String,
    /// How the runtime came back: `already-running`, `kexec` or `bmc`.
    pub method: String,
    /// Phases in order.
    pub phases: Vec<ReclaimPhase>,
    /// Total seconds.
    pub secs: f64,
}

/// Return a node to the free pool running the runtime (kexec, else BMC), optionally wiped, networks detached.
pub async fn reclaim(st: &AppState, c: &Caller, node: String, req: ReclaimRequest) -> Result<Reclaimed> {
    check_name("node", &node)?;
    let user = c.user.clone().ok_or(Error::Unauthenticated)?;
    let project = crate::app::nodes::project_of(st, &node).await?;
    let Some(project) = project else {
        c.require_admin()?;
        return Err(Error::Conflict(format!("node {node:?} is free already")));
    };
    c.require_project(Some(&project))?;
    if let Some(claim) = crate::db::market::leases::claim_on(&st.db.pool, &node).await? {
        return Err(Error::Conflict(format!(
            "node {node:?} is in the market ({claim}): a leased node returns to its owner, reclaimed, when its lease ends"
        )));
    }
    crate::app::deployments::refuse_if_draining(st)?;
    if let Some(other) = crate::db::deployments::in_flight(&st.db.pool, &node).await? {
        return Err(Error::Conflict(format!("node {node:?} is being deployed by deployment {other}")));
    }
    let timeout = Duration::from_secs(req.timeout_secs.unwrap_or(300).clamp(5, 3600));
    // Marked while it runs: every replica's node list shows it, and a second reclaim is refused.
    if !crate::db::reclaim::begin(&st.db.writer, st.db.backend, &node, &project, &st.replica.id).await? {
        return Err(Error::Conflict(format!("node {node:?} is being reclaimed already")));
    }
    let r = run(st, &user, node.clone(), project, &req, timeout).await;
    if let Err(e) = crate::db::reclaim::end(&st.db.writer, &node, &st.replica.id).await {
        tracing::warn!(%node, error = %e, "cannot clear the reclaim mark (a dead replica's mark is replaced)");
    }
    r
}

/// The reclaim's phases, once it is marked.
async fn run(
    st: &AppState,
    user: &str,
    node: String,
    project: String,
    req: &ReclaimRequest,
    timeout: Duration,
) -> Result<Reclaimed> {
    let t0 = Instant::now();
    let mut phases = Vec::new();

    // 1. The runtime, reached on the provisioning network (and the one a power cycle netboots).
    let t = Instant::now();
    crate::app::netboot::mark(st, &node, crate::db::netboot::Boot::Runtime).await?;
    let on_network = if st.upstream.is_none() {
        super::provisioning::ensure(st, &node, Some(&project), "the reclaim", timeout).await?
    } else {
        None
    };
    let (method, detail) = back_to_runtime(st, Work::Request, user, &project, &node, timeout).await?;
    let detail = match on_network {
        Some(n) => format!("{n}; {detail}"),
        None => detail,
    };
    phases.push(ReclaimPhase { phase: "runtime".into(), secs: t.elapsed().as_secs_f64(), detail });

    // 2. Wipe.
    if req.wipe != WipeSpec::None {
        let t = Instant::now();
        let detail = wipe(st, Work::Request, &node, &project, req.wipe, timeout).await?;
        phases.push(ReclaimPhase { phase: "wipe".into(), secs: t.elapsed().as_secs_f64(), detail });
    }

    // 3. Networks.
    let t = Instant::now();
    let detail = detach_all(st, &node, timeout).await?;
    phases.push(ReclaimPhase { phase: "networks".into(), secs: t.elapsed().as_secs_f64(), detail });

    // 4. Free.
    let t = Instant::now();
    if !crate::app::nodes::free(st, &node, &project).await? {
        return Err(Error::Conflict("a network or a deployment took the node during the reclaim".into()));
    }
    phases.push(ReclaimPhase {
        phase: "free".into(),
        secs: t.elapsed().as_secs_f64(),
        detail: format!("left project {project}"),
    });
    tracing::info!(%node, %project, %method, secs = t0.elapsed().as_secs_f64(), "node reclaimed");
    Ok(Reclaimed { node, project, method, phases, secs: t0.elapsed().as_secs_f64() })
}

/// The node's newest runtime check-in: (mac, role, boot id).
async fn checkin(st: &AppState, node: &str) -> Result<Option<(String, Role, String)>> {
    let Some((mac, _, boot)) = crate::app::deployments::find_runtime(st, node, Duration::ZERO).await? else {
        return Ok(None);
    };
    let role = crate::app::runtime::last_checkin(st, &mac).await?.map(|c| c.role);
    Ok(role.map(|role| (mac, role, boot)))
}

/// Brings `node` back to the metalcast runtime: already there, by kexec (a
/// deployment of the runtime image), or by a BMC power cycle into netboot.
/// The BMC calls are made for `work` ([`fencing::fenced`]).
pub(crate) async fn back_to_runtime(
    st: &AppState,
    work: Work<'_>,
    user: &str,
    project: &str,
    node: &str,
    timeout: Duration,
) -> Result<(String, String)> {
    if st.upstream.is_some() {
        // A nested instance holds the node through its parent project; the
        // runtime answers to the root. The node leaves our tenant here and
        // stays with our project at the parent, to be deployed again or
        // reclaimed (by kexec) when the parent takes it back.
        return Ok((
            "delegated".into(),
            "nested instance: the node stays with this instance's project at the parent".into(),
        ));
    }
    let now = checkin(st, node).await?;
    if let Some((_, Role::Runtime, _)) = &now {
        return Ok(("already-running".into(), "the node runs the metalcast runtime".into()));
    }
    let mut why_not_kexec = String::new();
    match (&now, &st.provision.runtime_image) {
        (Some((mac, Role::Tenant, boot)), Some(image)) => {
            let d =
                crate::app::deployments::run_and_wait(st, user, project, image, &[node.to_owned()], timeout.as_secs())
                    .await?;
            let n = d.nodes.iter().find(|n| n.node == node);
            match n {
                Some(n) if n.state == super::deployments::NodeState::Booted => {
                    if let Some(c) = crate::app::runtime::last_checkin(st, mac).await?
                        && c.role == Role::Runtime
                        && &c.boot_id != boot
                    {
                        return Ok((
                            "kexec".into(),
                            format!("deployment {} of {image} by kexec; runtime checked in", d.id),
                        ));
                    }
                    why_not_kexec = format!("deployment {} ended but no runtime check-in followed", d.id);
                }
                Some(n) => why_not_kexec = format!("deployment {} of {image}: {}", d.id, n.reason),
                None => why_not_kexec = format!("deployment {} did not include the node", d.id),
            }
        }
        (Some((_, Role::Tenant, _)), None) => why_not_kexec = "no --runtime-image configured".into(),
        _ => why_not_kexec.push_str("no agent is checked in from the node"),
    }
    // The BMC: network boot into the runtime.
    // The caller was authorized for the node when the reclaim began.
    let obm = crate::app::nodes::obm(st, Actor::Internal("reclaim"), node).await?;
    let mut seen: Vec<(String, u64)> = Vec::new();
    for m in macs(st, node).await? {
        let n = crate::app::runtime::checkins(st, &m).await?;
        seen.push((m, n));
    }
    let bmc = st.bmc(&obm);
    let pxe = || async { bmc.set_bootdev("pxe").await.map_err(|e| bmc_error(node, &why_not_kexec, e)) };
    fencing::fenced(st, work, "BMC call (boot device)", pxe).await?;
    let cycle = || async { bmc.power(PowerOp::Cycle).await.map_err(|e| bmc_error(node, &why_not_kexec, e)) };
    fencing::fenced(st, work, "BMC call (power cycle)", cycle).await?;
    let t_end = Instant::now() + timeout;
    loop {
        let watch = seen.first().map(|(mac, _)| crate::app::runtime::watch(st, mac));
        let notified = watch.as_ref().map(|w| w.notified());
        for (mac, n) in &seen {
            if let Some(r) = crate::app::runtime::node(st, mac).await?
                && r.checkins > *n
                && r.last.role == Role::Runtime
            {
                return Ok((
                    "bmc".into(),
                    format!("kexec not possible ({why_not_kexec}); BMC power cycle into netboot"),
                ));
            }
        }
        let left = t_end.saturating_duration_since(Instant::now());
        if left.is_zero() || seen.is_empty() {
            return Err(Error::Unprocessable(format!(
                "node {node:?} did not check in with the runtime within {}s after a BMC power cycle ({why_not_kexec})",
                timeout.as_secs()
            )));
        }
        if let Some(notified) = notified {
            crate::app::runtime::wait(st, notified, left.min(Duration::from_secs(1))).await;
        }
    }
}

fn bmc_error(node: &str, why_not_kexec: &str, e: crate::drivers::DriverError) -> Error {
    tracing::warn!(%node, error = %e, "reclaim: BMC failed");
    Error::Unprocessable(format!(
        "node {node:?} cannot be brought back to the runtime: kexec not possible ({why_not_kexec}), BMC: {}",
        e.public_message()
    ))
}

async fn macs(st: &AppState, node: &str) -> Result<Vec<String>> {
    Ok(crate::db::nics::macs(&st.db.pool, node).await?)
}

/// Erases the disks of the node's registered inventory (its runtime's
/// check-in, at this control plane), naming each device; the agent checks
/// them again (the disk-write guard). A failure or refusal is recorded as a
/// node event (`GET /v1/events`) and fails the reclaim with its reason.
///
/// The wipe instruction is sent for `work` only after [`fencing::fence`].
pub(crate) async fn wipe(
    st: &AppState,
    work: Work<'_>,
    node: &str,
    project: &str,
    how: WipeSpec,
    timeout: Duration,
) -> Result<String> {
    let (mac, _, _) = checkin(st, node)
        .await?
        .ok_or_else(|| Error::Unprocessable("no runtime checked in to wipe the disks".into()))?;
    let devices: Vec<String> = crate::app::runtime::last_checkin(st, &mac)
        .await?
        .map(|c| c.inventory.disks.iter().map(|d| format!("/dev/{}", d.name)).collect())
        .unwrap_or_default();
    if devices.is_empty() {
        return Ok("the node's inventory lists no disks: nothing to erase".into());
    }
    let mode = if how == WipeSpec::Zero { WipeMode::Zero } else { WipeMode::Discard };
    fencing::fence(st, work, "wipe instruction").await?;
    let id = crate::app::runtime::push(st, &mac, Action::Wipe(Wipe { mode, devices })).await?;
    let t_end = Instant::now() + timeout;
    let watch = crate::app::runtime::watch(st, &mac);
    let r = loop {
        let notified = watch.notified();
        let reports = crate::app::runtime::reports(st, id).await?;
        if let Some(r) = reports.into_iter().find(|x| x.phase == Phase::Wipe) {
            break Some(r);
        }
        let left = t_end.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(Error::Unprocessable(format!("no wipe report within {}s", timeout.as_secs())));
        }
        crate::app::runtime::wait(st, notified, left).await;
    };
    match r {
        Some(r) if r.status == Status::Ok => Ok(r.detail),
        Some(r) => {
            let kind = if r.exit_code == WIPE_REFUSED { "wipe-refused" } else { "wipe-failed" };
            super::events::record(st, node, Some(project), kind, &r.detail).await?;
            tracing::warn!(%node, kind, reason = %r.detail, "reclaim: the runtime did not wipe");
            Err(Error::Unprocessable(format!("wipe failed: {}", r.detail)))
        }
        None => Err(Error::internal("wipe report vanished")),
    }
}

/// The failure class of a report refused by the node's disk-write guard
/// (`metalcast-node`'s exit code 8, `docs/node-runtime.md`).
const WIPE_REFUSED: u8 = 8;

/// Detaches every network from every NIC of the node but the provisioning
/// network (a free node stays where its runtime is reached).
pub(crate) async fn detach_all(st: &AppState, node: &str, timeout: Duration) -> Result<String> {
    let mut names = Vec::new();
    let mut kept = None;
    for a in crate::db::networks::attachments_of_node(&st.db.pool, node).await? {
        let (nic, network, channel) = (a.nic, a.network, a.channel);
        if st.provision.network.as_deref() == Some(network.as_str()) {
            kept = Some(format!("; kept provisioning network {network} on {nic}"));
            continue;
        }
        // One pending action per NIC: wait for each before queuing the next on the same NIC.
        let id = crate::app::actions::queue(st, node, &nic, ActionKind::ModifyPort, None, &channel, None).await?;
        crate::app::actions::wait(st, &id, timeout, "detaching a network").await?;
        names.push(format!("{network} from {nic}"));
    }
    let detached =
        if names.is_empty() { "no networks detached".into() } else { format!("detached {}", names.join(", ")) };
    Ok(format!("{detached}{}", kept.unwrap_or_default()))
}
