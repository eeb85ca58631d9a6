//! The deployment engine: runs one deployment to its end in the background.
//!
//! [`start`] registers the deployment's progress channel and spawns
//! [`execute`]: on a root instance [`drive`] finds the nodes' runtimes, opens
//! the multicast session, instructs every node, runs the sender and
//! [`follow`]s each node's reports; on a nested instance [`drive_upstream`]
//! hands the deployment to the parent and mirrors its progress. Every phase
//! change is published and stored ([`set_node`]); the end is stored before
//! the channel is unregistered.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::Arc;
use std::time::{Duration, Instant};

use metalcast_image::Bundle;
use metalcast_operator_api::v1;
use metalcast_runtime_api::{Action, Deploy, Handover, Phase, Status, Target};
use metalcast_transport::{Resume, Sender, SenderConfig, SessionSpec};
use tokio::sync::watch;

use super::{
    Deployment, DeploymentState, HandoverSpec, NodeProgress, NodeState, Params, TargetSpec, find_runtime, load, now_ms,
};
use crate::app::AppState;
use crate::app::error::{Error, Result};
use crate::db;

/// How often a running sender's sequence number is written (and its
/// ownership checked): a resume starts above it.
const CHECKPOINT_EVERY: Duration = Duration::from_secs(1);

/// Why nodes in flight fail when the server shuts down under them.
const SHUT_DOWN: &str =
    "the control plane shut down during the deployment (the node may still finish on its own: retry or reclaim it)";

/// Registers `d` as live (before anyone is told it exists) and runs
/// [`execute`] in the background, tracked by `st.tasks`.
pub fn start(st: &AppState, d: Deployment, nodes: Vec<String>, addr: Option<Ipv4Addr>, params: Params) {
    let st = st.clone();
    let tx = st.deploys.register(d);
    st.tasks.clone().spawn(async move { execute(&st, tx, nodes, addr, params, None).await });
}

/// Takes over the session of a deployment this replica just claimed (its
/// owner died: [`super::resume_orphaned`]) and runs the deployment to its
/// end like [`start`].
pub fn resume(st: &AppState, d: Deployment, session: db::deployments::SessionRow, params: Params) {
    let st = st.clone();
    let nodes: Vec<String> = d.nodes.iter().map(|n| n.node.clone()).collect();
    let tx = st.deploys.register(d);
    let addr = st.provision.addr;
    st.tasks.clone().spawn(async move { execute(&st, tx, nodes, addr, params, Some(session)).await });
}

/// Runs a deployment to its end: every node terminal, the result stored.
/// With `resume`, the session of a dead owner is taken over first.
pub async fn execute(
    st: &AppState,
    tx: watch::Sender<Deployment>,
    nodes: Vec<String>,
    addr: Option<Ipv4Addr>,
    params: Params,
    resume: Option<db::deployments::SessionRow>,
) {
    let id = tx.borrow().id;
    let run = async {
        match (&st.upstream, addr, resume) {
            // A nested instance's nodes are the parent's: the parent's fabric deploys them.
            (Some(up), _, _) => drive_upstream(st, up, id, &nodes, &params, &tx).await,
            (None, Some(addr), Some(session)) => drive_resumed(st, id, addr, session, &params, &tx).await,
            (None, Some(addr), None) => drive(st, id, &nodes, addr, &params, &tx).await,
            (None, None, _) => Err(Error::Exhausted("no provisioning network".into())),
        }
    };
    // At shutdown the drive is dropped (its sender stops: `CancelOnDrop`) and
    // what was in flight is recorded as failed with the reason.
    let why = tokio::select! {
        r = run => r.err().map(|e| {
            tracing::error!(id, error = %e, "deployment failed");
            ("deployment_error", format!("deployment error: {}", e.public_message()))
        }),
        () = st.tasks.shutting_down() => {
            tracing::warn!(id, "deployment stopped by shutdown");
            Some(("shutdown", SHUT_DOWN.to_string()))
        }
    };
    if let Some((class, why)) = why {
        for n in &nodes {
            let _ = update_node(st, &tx, id, n, class, |p| {
                if !p.state.is_terminal() {
                    p.state = NodeState::Failed;
                    p.reason = why.clone();
                }
            })
            .await;
        }
    }
    if let Err(e) = finish(st, id, &tx).await {
        tracing::error!(id, error = %e, "cannot record the end of a deployment");
    }
    st.deploys.remove(id);
}

/// Applies `f` to `node`'s progress, publishes it, and stores it. Entering a
/// terminal state stamps the node's elapsed time.
async fn set_node(
    st: &AppState,
    tx: &watch::Sender<Deployment>,
    id: i64,
    node: &str,
    f: impl FnOnce(&mut NodeProgress),
) -> Result<()> {
    update_node(st, tx, id, node, "other", f).await
}

/// Fails `node` with `reason`; `class` is the reason's kind for the metrics
/// (`metalcast_node_failures_total{reason}`, a fixed set: docs/metrics.md).
async fn fail_node(
    st: &AppState,
    tx: &watch::Sender<Deployment>,
    id: i64,
    node: &str,
    class: &str,
    reason: String,
) -> Result<()> {
    update_node(st, tx, id, node, class, |p| {
        p.state = NodeState::Failed;
        p.reason = reason;
    })
    .await
}

/// [`set_node`]; a node that fails here is counted under `failure`.
async fn update_node(
    st: &AppState,
    tx: &watch::Sender<Deployment>,
    id: i64,
    node: &str,
    failure: &str,
    f: impl FnOnce(&mut NodeProgress),
) -> Result<()> {
    let (mut out, mut ended) = (None, None);
    tx.send_modify(|d| {
        if let Some(p) = d.nodes.iter_mut().find(|p| p.node == node) {
            f(p);
            if p.state.is_terminal() && p.elapsed_ms.is_none() {
                let ms = (now_ms() - p.started_at_ms).max(0);
                p.elapsed_ms = Some(ms);
                ended = Some((p.state, ms));
            }
            out = Some(p.clone());
        }
    });
    let Some(p) = out else { return Ok(()) };
    owned(id, db::deployments::update_node(&st.db.writer, id, &st.replica.id, &p.to_row()).await?)?;
    if let Some((state, ms)) = ended {
        st.metrics.node_finished(state.as_str(), ms as f64 / 1000.0);
        if state == NodeState::Failed {
            st.metrics.node_failed(failure);
        }
    }
    Ok(())
}

/// A write of a running deployment that changed nothing: this replica no
/// longer owns it (it was declared dead, and another replica failed the
/// deployment). The run stops (its sender with it) and writes nothing more.
fn owned(id: i64, wrote: bool) -> Result<()> {
    if wrote {
        return Ok(());
    }
    tracing::error!(id, "deployment no longer owned by this replica: stopping it");
    Err(Error::Conflict(format!("deployment {id} is no longer run by this replica")))
}

async fn finish(st: &AppState, id: i64, tx: &watch::Sender<Deployment>) -> Result<()> {
    let failed = tx.borrow().nodes.iter().any(|n| n.state == NodeState::Failed);
    let state = if failed { DeploymentState::Failed } else { DeploymentState::Done };
    let summary = tx.borrow().summary.clone();
    let summary = summary.map(|s| s.to_string());
    let (now, created_at) = (crate::now(), tx.borrow().created_at);
    let wrote = db::deployments::finish(&st.db.writer, id, &st.replica.id, state, now, summary.as_deref()).await?;
    owned(id, wrote)?;
    st.metrics.deployment_finished(state.as_str(), (now - created_at) as f64);
    // The session can no longer be resumed: its key goes.
    db::deployments::drop_session(&st.db.writer, id).await?;
    let fresh = load(st, id).await?;
    tx.send_modify(|d| {
        if let Some(f) = fresh {
            *d = f;
        }
    });
    tracing::info!(id, %state, "deployment finished");
    Ok(())
}

/// Why a disk target `device` may not be written on the node whose runtime
/// checked in as `mac`: it is not one of the disks of its registered
/// inventory (the node's disk-write guard checks again).
async fn not_in_inventory(st: &AppState, mac: &str, device: &str) -> Result<Option<String>> {
    let disks: Vec<String> = crate::app::runtime::last_checkin(st, mac)
        .await?
        .map(|c| c.inventory.disks.iter().map(|d| format!("/dev/{}", d.name)).collect())
        .unwrap_or_default();
    Ok((!disks.iter().any(|d| d == device)).then(|| {
        format!(
            "disk write refused: {device} is not in this node's inventory (its disks: {})",
            if disks.is_empty() { "none".to_string() } else { disks.join(", ") }
        )
    }))
}

/// A node taking part in this session (persisted with it, for a resume).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct Member {
    node: String,
    mac: String,
    ip: String,
    boot_id: String,
    instruction: u64,
}

/// Multicast group and port of a session: distinct per deployment and attempt.
fn session_addr(id: i64, attempt: i64) -> (Ipv4Addr, u16) {
    let n = (id.unsigned_abs().wrapping_mul(16).wrapping_add(attempt.unsigned_abs())) % 60_000;
    let group = Ipv4Addr::new(239, 78, (n >> 8) as u8, (n & 0xff) as u8);
    (group, 20_000 + 2 * (n % 20_000) as u16)
}

async fn drive(
    st: &AppState,
    id: i64,
    nodes: &[String],
    addr: Ipv4Addr,
    params: &Params,
    tx: &watch::Sender<Deployment>,
) -> Result<()> {
    let t0 = Instant::now();
    let deadline = t0 + Duration::from_secs(params.timeout_secs);
    let row = db::deployments::get(&st.db.pool, id).await?.ok_or_else(|| Error::internal("deployment vanished"))?;
    let bundle = open_bundle(st, &row).await?;
    let blocks_total = bundle.manifest.stored_chunks().count() as i64;
    let attempt = tx.borrow().nodes.iter().map(|n| n.attempts).max().unwrap_or(1);

    // 0. Every node on the provisioning network (when one is configured): its tenant may have detached it.
    let mut reachable = Vec::new();
    for n in nodes {
        let left = deadline.saturating_duration_since(Instant::now()).min(Duration::from_secs(60));
        match crate::app::provisioning::ensure(st, n, Some(&row.project), &format!("deployment {id}"), left).await {
            Ok(_) => reachable.push(n.clone()),
            Err(e) => fail_node(st, tx, id, n, "provisioning_network", e.public_message()).await?,
        }
    }
    let nodes = &reachable;

    // 1. Every node's runtime: the MAC of one of its NICs must have checked in.
    let join = Duration::from_secs(30).min(deadline.saturating_duration_since(Instant::now()));
    let mut members = Vec::new();
    let finding = nodes.iter().map(|n| find_runtime(st, n, join));
    for (n, found) in nodes.iter().zip(futures_util::future::join_all(finding).await) {
        match found? {
            Some((mac, ip, boot_id)) => {
                if let TargetSpec::Disk { device } = &params.target
                    && let Some(why) = not_in_inventory(st, &mac, device).await?
                {
                    fail_node(st, tx, id, n, "disk_not_in_inventory", why).await?;
                    continue;
                }
                members.push(Member { node: n.clone(), mac, ip, boot_id, instruction: 0 })
            }
            None => {
                let why = format!(
                    "no runtime checked in from this node's NICs within {}s: is it booted into the metalcast runtime?",
                    join.as_secs()
                );
                fail_node(st, tx, id, n, "no_runtime", why).await?;
            }
        }
    }
    if members.is_empty() {
        return Ok(());
    }
    // Until a disk deployment is verified, a power cycle netboots the runtime again.
    for m in &members {
        crate::app::netboot::mark(st, &m.node, crate::db::netboot::Boot::Runtime).await?;
    }

    // 2. The session, and the instruction for every node.
    let (group, port) = session_addr(id, attempt);
    let spec = SessionSpec::new(
        &bundle.manifest.root_hash,
        SocketAddrV4::new(group, port),
        SocketAddrV4::new(addr, port + 1),
        st.provision.mtu,
    )
    .map_err(Error::internal)?;
    owned(id, db::deployments::set_session(&st.db.writer, id, &st.replica.id, &format!("{group}:{port}")).await?)?;
    tx.send_modify(|d| d.session = Some(format!("{group}:{port}")));
    let manifest_b64 = Deploy::encode_manifest(&bundle.signed_manifest().to_bytes());
    let tokens: HashMap<String, String> =
        db::deployments::metadata_tokens(&st.db.pool, id).await?.into_iter().collect();
    for m in &mut members {
        let token = tokens.get(&m.node).ok_or_else(|| Error::internal("a node without a metadata token"))?;
        let mut cmdline = params.cmdline_append.clone();
        if let Some(base) = metadata_base(st) {
            // cloud-init NoCloud: `ds=nocloud;s=URL` (the `;` is part of the one kernel argument).
            cmdline = format!("{cmdline} ds=nocloud;s={base}/v1/metadata/{token}/").trim().to_string();
        }
        let action = Action::Deploy(Deploy {
            session: spec.clone(),
            manifest_b64: manifest_b64.clone(),
            target: match &params.target {
                TargetSpec::Memory => Target::Memory,
                TargetSpec::Disk { device } => Target::Disk { device: device.clone() },
            },
            handover: match params.handover {
                HandoverSpec::Kexec => Handover::Kexec,
                HandoverSpec::Vm => Handover::Vm,
                HandoverSpec::None => Handover::None,
            },
            cmdline_append: cmdline,
            // Long enough to wait out a takeover: the owner's dead timeout, then one scan.
            idle_timeout_secs: st.replica.dead_after.as_secs().max(30) + 30,
        });
        m.instruction = crate::app::runtime::push_for_deployment(st, &m.mac, action, id).await?;
        set_node(st, tx, id, &m.node, |p| {
            p.blocks_total = blocks_total;
            p.reason = String::new();
        })
        .await?;
    }

    // The session, kept until the end so that another replica can resume it.
    let session = db::deployments::SessionRow {
        deployment: id,
        spec: serde_json::to_string(&spec).map_err(Error::internal)?,
        members: serde_json::to_string(&members).map_err(Error::internal)?,
        epoch: 0,
        seq: 0,
        seq_at: db::now_pool(&st.db.pool, st.db.backend).await?,
        runtime_at: runtime_at(st),
    };
    owned(id, db::deployments::save_session(&st.db.writer, &st.replica.id, &session).await?)?;
    let receiving = members.len();
    run_session(st, tx, id, bundle, spec, members, params, deadline, None, receiving).await
}

/// Where the deployment's sender ran: its control plane's public URL and
/// provisioning address (for the operator; any sender replica may resume it).
fn runtime_at(st: &AppState) -> String {
    let addr = st.provision.addr.map(|a| a.to_string()).unwrap_or_default();
    format!("{} {addr}", st.provision.public_url.as_deref().unwrap_or(""))
}

/// The deployment's image, checked against the root hash it was created with.
async fn open_bundle(st: &AppState, row: &db::deployments::DeploymentRow) -> Result<Bundle> {
    let (image, root_hash) = (row.image.clone(), row.root_hash.clone());
    let path = st.registry.bundle_path(&image);
    let bundle = tokio::task::spawn_blocking(move || Bundle::open(&path))
        .await
        .map_err(Error::internal)?
        .map_err(|e| Error::Conflict(format!("image {image:?} cannot be opened: {e}")))?;
    if bundle.manifest.root_hash != root_hash {
        return Err(Error::Conflict(format!("image {image:?} changed since the deployment was created")));
    }
    Ok(bundle)
}

/// A deployment whose owner died, claimed by this replica: the same session
/// (group, port, key) goes on from a new sender ([`Resume`]: a higher epoch,
/// sequence numbers above the dead sender's), the nodes keep what they
/// received, report to the new sender, and are followed to the end; nodes
/// that had finished stay finished.
async fn drive_resumed(
    st: &AppState,
    id: i64,
    addr: Ipv4Addr,
    session: db::deployments::SessionRow,
    params: &Params,
    tx: &watch::Sender<Deployment>,
) -> Result<()> {
    let row = db::deployments::get(&st.db.pool, id).await?.ok_or_else(|| Error::internal("deployment vanished"))?;
    let bundle = open_bundle(st, &row).await?;
    let mut spec: SessionSpec = serde_json::from_str(&session.spec).map_err(Error::internal)?;
    // This replica's report socket: any free port (a stopped owner may still hold the old one).
    spec.sender = SocketAddrV4::new(addr, 0);
    let members: Vec<Member> = serde_json::from_str(&session.members).map_err(Error::internal)?;
    let state_of = |node: &str| tx.borrow().nodes.iter().find(|n| n.node == node).map(|n| n.state);
    let members: Vec<Member> =
        members.into_iter().filter(|m| state_of(&m.node).is_some_and(|s| !s.is_terminal())).collect();
    // Their instructions are this replica's work now (a queued one is delivered again while it lives).
    let instructions: Vec<u64> = members.iter().map(|m| m.instruction).collect();
    crate::app::runtime::take_over(st, &instructions).await?;
    let receiving =
        members.iter().filter(|m| matches!(state_of(&m.node), Some(NodeState::Waiting | NodeState::Receiving))).count();
    let now = db::now_pool(&st.db.pool, st.db.backend).await?;
    // Above anything the dead sender can have sent since its last checkpoint (at most 4 packets a
    // microsecond, and the clock's second granularity), and far enough to be told from loss.
    let since = u64::try_from(now - session.seq_at + 2).unwrap_or(2);
    let seq_start = u64::try_from(session.seq).unwrap_or(0) + 4_000_000 * since + (1 << 21);
    let epoch = u32::try_from(session.epoch).map_err(Error::internal)?;
    let left = u64::try_from(row.created_at + params.timeout_secs as i64 - now).unwrap_or(0).max(60);
    tracing::warn!(
        id,
        epoch,
        nodes = members.len(),
        receiving,
        "resuming the deployment's session after its replica died"
    );
    let deadline = Instant::now() + Duration::from_secs(left);
    let resume = Resume { epoch, seq_start };
    run_session(st, tx, id, bundle, spec, members, params, deadline, Some(resume), receiving).await
}

/// Runs the session's sender (unless no node still receives) and follows
/// every member to a terminal state; checkpoints the sender's sequence
/// number about once a second, and stops at once when that write finds the
/// deployment no longer this replica's.
#[allow(clippy::too_many_arguments)]
async fn run_session(
    st: &AppState,
    tx: &watch::Sender<Deployment>,
    id: i64,
    bundle: Bundle,
    spec: SessionSpec,
    members: Vec<Member>,
    params: &Params,
    deadline: Instant,
    resume: Option<Resume>,
    receiving: usize,
) -> Result<()> {
    // 3. The sender, on a blocking thread; its progress goes straight to the watch channel.
    let by_ip: HashMap<String, String> = members.iter().map(|m| (m.ip.clone(), m.node.clone())).collect();
    let cancel = CancelOnDrop::default();
    let local = *spec.sender.ip();
    let cfg = SenderConfig {
        cancel: Some(Arc::clone(&cancel.0)),
        local,
        rate: (params.rate_mbit > 0).then_some(params.rate_mbit * 1_000_000 / 8),
        expected_receivers: receiving,
        join_timeout: Duration::from_secs(30),
        receiver_timeout: Duration::from_secs(15),
        deadline: Some(deadline.saturating_duration_since(Instant::now())),
        resume,
        ..Default::default()
    };
    let seq = Arc::new(std::sync::atomic::AtomicU64::new(cfg.resume.map_or(0, |r| r.seq_start)));
    let (stx, spec2, seq2) = (tx.clone(), spec.clone(), Arc::clone(&seq));
    let sender = tokio::task::spawn_blocking(move || {
        if receiving == 0 {
            return Err(metalcast_transport::TransportError::Config("no node is still receiving".into()));
        }
        let s = Sender::new(&spec2, &bundle, cfg)?;
        let mut last = Instant::now() - Duration::from_secs(1);
        s.run(&mut |p| {
            seq2.store(p.seq, std::sync::atomic::Ordering::Relaxed);
            if last.elapsed() < Duration::from_millis(200) {
                return;
            }
            last = Instant::now();
            stx.send_if_modified(|d| {
                let mut changed = false;
                for r in &p.receivers {
                    let ip = r.addr.rsplit_once(':').map_or(r.addr.as_str(), |(ip, _)| ip);
                    let Some(node) = by_ip.get(ip) else { continue };
                    if let Some(n) = d.nodes.iter_mut().find(|n| &n.node == node) {
                        if n.state == NodeState::Waiting {
                            n.state = NodeState::Receiving;
                        }
                        if n.blocks_done != i64::from(r.blocks_done) {
                            n.blocks_done = i64::from(r.blocks_done);
                            changed = true;
                        }
                    }
                }
                changed
            });
        })
    });

    // 4. Follow every node's reports until it is terminal.
    let sender_done = Arc::new(tokio::sync::Notify::new());
    let sender_finished = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let followers = members.iter().map(|m| {
        let (sd, sf) = (Arc::clone(&sender_done), Arc::clone(&sender_finished));
        follow(st, tx, id, m, params.handover, deadline, sd, sf)
    });
    let sender_task = async {
        let r = sender.await;
        sender_finished.store(true, std::sync::atomic::Ordering::SeqCst);
        sender_done.notify_waiters();
        r
    };
    // The checkpoint: the sender's sequence number for a resume, and the fence.
    let checkpoints = async {
        let mut stored_blocks: std::collections::HashMap<String, i64> = std::collections::HashMap::new();
        loop {
            tokio::time::sleep(CHECKPOINT_EVERY).await;
            if sender_finished.load(std::sync::atomic::Ordering::SeqCst) {
                return std::future::pending::<Error>().await;
            }
            let at = i64::try_from(seq.load(std::sync::atomic::Ordering::Relaxed)).unwrap_or(i64::MAX);
            match db::deployments::checkpoint(&st.db.writer, st.db.backend, id, &st.replica.id, at).await {
                Ok(true) => {
                    // The sender's progress, so that every replica shows it (only ever raised).
                    let done: Vec<(String, i64)> =
                        tx.borrow().nodes.iter().map(|n| (n.node.clone(), n.blocks_done)).collect();
                    for (node, blocks) in done {
                        if stored_blocks.get(&node).is_none_or(|b| *b < blocks) {
                            let w = &st.db.writer;
                            match db::deployments::raise_blocks_done(w, id, &st.replica.id, &node, blocks).await {
                                Ok(_) => {
                                    stored_blocks.insert(node, blocks);
                                }
                                Err(e) => tracing::warn!(id, %node, error = %e, "cannot store the node's progress"),
                            }
                        }
                    }
                }
                Ok(false) => return owned(id, false).expect_err("not owned"),
                Err(e) => tracing::warn!(id, error = %e, "cannot checkpoint the session; retrying"),
            }
        }
    };
    let (summary, results) = tokio::select! {
        r = async { tokio::join!(sender_task, futures_util::future::join_all(followers)) } => r,
        // Dropping the run stops the sender (`CancelOnDrop`).
        e = checkpoints => return Err(e),
    };
    for r in results {
        r?;
    }
    // A verified disk deployment: the tenant OS is on the disk, so the node's next netboot boots it.
    if matches!(params.target, TargetSpec::Disk { .. }) {
        let written: Vec<String> = tx
            .borrow()
            .nodes
            .iter()
            .filter(|n| matches!(n.state, NodeState::Verified | NodeState::Booted))
            .map(|n| n.node.clone())
            .collect();
        for n in written {
            crate::app::netboot::mark(st, &n, crate::db::netboot::Boot::Local).await?;
        }
    }
    match &summary {
        Ok(Ok(s)) => st.metrics.session_ended(Some(&crate::metrics::SessionNumbers {
            secs: s.secs,
            image_bytes: s.image_bytes,
            wire_bytes: s.wire_bytes,
            source_symbols: s.source_packets,
            repair_symbols: s.repair_packets,
            rejected_reports: s.rejected_reports,
        })),
        Ok(Err(_)) if receiving == 0 => {}
        _ => st.metrics.session_ended(None),
    }
    match summary {
        Ok(Ok(s)) => {
            let v = serde_json::to_value(&s).map_err(Error::internal)?;
            tx.send_modify(|d| d.summary = Some(v.clone()));
            owned(id, db::deployments::set_summary(&st.db.writer, id, &st.replica.id, &v.to_string()).await?)?;
        }
        Ok(Err(_)) if receiving == 0 => {}
        Ok(Err(e)) => tracing::warn!(id, error = %e, "sender failed"),
        Err(e) => tracing::warn!(id, error = %e, "sender panicked"),
    }
    Ok(())
}

/// A nested instance's deployment: the image goes to the parent (private to
/// our project there), the parent deploys, and its per-node progress is
/// mirrored here until it ends. Nothing is recorded here that the parent did
/// not report.
async fn drive_upstream(
    st: &AppState,
    up: &crate::drivers::parent::Upstream,
    id: i64,
    nodes: &[String],
    params: &Params,
    tx: &watch::Sender<Deployment>,
) -> Result<()> {
    let row = db::deployments::get(&st.db.pool, id).await?.ok_or_else(|| Error::internal("deployment vanished"))?;
    let (image, root_hash) = (row.image, row.root_hash);
    let user_data = db::deployments::user_data(&st.db.pool, id).await?;
    let parent_image = up.image_name(&root_hash);
    up.ensure_image(&parent_image, &st.registry.bundle_path(&image), &root_hash).await?;
    let req = v1::DeployRequest {
        nodes: nodes.to_vec(),
        target: params.target.clone().into(),
        handover: params.handover.into(),
        cmdline_append: params.cmdline_append.clone(),
        user_data: user_data.filter(|u| !u.is_empty()),
        rate_mbit: (params.rate_mbit > 0).then_some(params.rate_mbit),
        timeout_secs: Some(params.timeout_secs),
        ..v1::DeployRequest::new(parent_image)
    };
    let pid = up.deploy(&req).await?.id;
    let session = format!("parent deployment {pid}");
    owned(id, db::deployments::set_session(&st.db.writer, id, &st.replica.id, &session).await?)?;
    tx.send_modify(|d| d.session = Some(session.clone()));
    tracing::info!(id, parent = pid, "deployment delegated to the parent");
    // Follow the parent until it ends; an unreachable parent is retried until the deadline.
    let deadline = Instant::now() + Duration::from_secs(params.timeout_secs + 120);
    let mut wait = Duration::from_millis(200);
    loop {
        match up.deployment(pid).await {
            Ok(d) => {
                for n in &d.nodes {
                    let state = NodeState::from(n.state);
                    let same = tx.borrow().nodes.iter().any(|p| {
                        p.node == n.node
                            && (p.state, p.reason.as_str(), p.blocks_done, p.blocks_total)
                                == (state, n.reason.as_str(), n.blocks_done, n.blocks_total)
                    });
                    if !same {
                        // A node failed at the parent is counted as such (its reason is the parent's).
                        update_node(st, tx, id, &n.node, "parent", |p| {
                            p.state = state;
                            p.reason = n.reason.clone();
                            p.blocks_done = n.blocks_done;
                            p.blocks_total = n.blocks_total;
                            p.received = n.received;
                            p.rejected = n.rejected;
                        })
                        .await?;
                    }
                }
                if d.is_finished() {
                    tx.send_modify(|x| x.summary = d.summary.clone());
                    return Ok(());
                }
                wait = Duration::from_millis(500);
            }
            Err(e @ crate::drivers::parent::UpstreamError::Unreachable(_)) => {
                tracing::warn!(id, parent = pid, error = %e, "cannot follow the parent's deployment; retrying");
                wait = (wait * 2).min(Duration::from_secs(10));
            }
            Err(e) => return Err(e.into()),
        }
        if Instant::now() >= deadline {
            return Err(Error::Unprocessable(format!("the parent's deployment {pid} did not end in time")));
        }
        tokio::time::sleep(wait).await;
    }
}

/// Stops the sender (its `cancel` flag) when the drive that owns it is
/// dropped, e.g. at shutdown.
#[derive(Debug, Default)]
struct CancelOnDrop(Arc<std::sync::atomic::AtomicBool>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Base URL of this server as nodes see it, for the metadata seed.
fn metadata_base(st: &AppState) -> Option<String> {
    st.provision.public_url.clone().map(|u| u.trim_end_matches('/').to_string())
}

fn rejected_total(data: &serde_json::Value) -> i64 {
    data.get("rejected")
        .and_then(|r| r.as_object())
        .map_or(0, |o| o.values().filter_map(serde_json::Value::as_i64).sum())
}

/// Follows one node's reports (and, after a kexec, its next check-in or metadata fetch) until terminal.
#[allow(clippy::too_many_arguments)]
async fn follow(
    st: &AppState,
    tx: &watch::Sender<Deployment>,
    id: i64,
    m: &Member,
    handover: HandoverSpec,
    deadline: Instant,
    sender_done: Arc<tokio::sync::Notify>,
    sender_finished: Arc<std::sync::atomic::AtomicBool>,
) -> Result<()> {
    let mut seen_reports = 0usize;
    let mut after_sender: Option<Instant> = None;
    // Changes this process sees at once; another replica's (a report that arrived there) within a second.
    let watch = crate::app::runtime::watch(st, &m.mac);
    loop {
        let state = tx.borrow().nodes.iter().find(|n| n.node == m.node).map_or(NodeState::Failed, |n| n.state);
        if state.is_terminal() {
            return Ok(());
        }
        let runtime_change = watch.notified();
        // New phase reports for our instruction.
        let mine = crate::app::runtime::reports(st, m.instruction).await?;
        for r in mine.iter().skip(seen_reports) {
            let (phase, status) = (r.phase, r.status);
            let detail = r.detail.clone();
            let data = r.data.clone();
            // A phase that failed on the node is counted by phase (`runtime_receive`, `runtime_verify` ...).
            let class = format!("runtime_{}", format!("{phase:?}").to_lowercase());
            update_node(st, tx, id, &m.node, &class, |p| match status {
                Status::Failed => {
                    p.state = NodeState::Failed;
                    p.reason =
                        format!("{} failed (exit {}): {detail}", format!("{phase:?}").to_lowercase(), r.exit_code);
                }
                Status::Ok => match phase {
                    Phase::Accept => p.state = NodeState::Receiving,
                    Phase::Receive => {
                        p.state = NodeState::Verifying;
                        p.blocks_done = p.blocks_total;
                        p.received = data.get("received").and_then(serde_json::Value::as_i64).unwrap_or(0);
                        p.rejected = rejected_total(&data);
                        p.reason = detail.clone();
                    }
                    Phase::Flush | Phase::Wipe | Phase::VmExit | Phase::Seed => {}
                    Phase::Verify => {
                        p.state =
                            if handover == HandoverSpec::None { NodeState::Verified } else { NodeState::Handover };
                    }
                    Phase::Handover => {
                        // The node says what it did: an agent told to stay (`--handover none`, e.g. a
                        // namespace node that cannot kexec) ends verified.
                        let did = data.get("handover").and_then(serde_json::Value::as_str).unwrap_or("");
                        p.state = match (did, handover) {
                            ("none", _) | (_, HandoverSpec::None) => NodeState::Verified,
                            (_, HandoverSpec::Vm) => NodeState::Booted,
                            _ => NodeState::Booting,
                        };
                        p.reason = detail.clone();
                    }
                },
            })
            .await?;
        }
        seen_reports = mine.len();
        let state = tx.borrow().nodes.iter().find(|n| n.node == m.node).map_or(NodeState::Failed, |n| n.state);
        // After a kexec: a check-in with a new boot id, or a metadata fetch, says the new system is up.
        if state == NodeState::Booting {
            let last_checkin = crate::app::runtime::last_checkin(st, &m.mac).await?;
            let booted_by_checkin = last_checkin.as_ref().is_some_and(|c| c.boot_id != m.boot_id);
            let booted_by_metadata = db::metadata::fetched(&st.db.pool, id, &m.node).await?;
            if booted_by_checkin || booted_by_metadata {
                let how = if booted_by_checkin { "checked in from the new system" } else { "metadata fetched" };
                set_node(st, tx, id, &m.node, |p| {
                    p.state = NodeState::Booted;
                    p.reason = how.into();
                })
                .await?;
                continue;
            }
        }
        // Deadlines.
        let now = Instant::now();
        if sender_finished.load(std::sync::atomic::Ordering::SeqCst) && after_sender.is_none() {
            after_sender = Some(now);
        }
        let stuck_receiving = after_sender.is_some_and(|t| now.duration_since(t) > Duration::from_secs(60))
            && matches!(state, NodeState::Waiting | NodeState::Receiving);
        if stuck_receiving || now >= deadline {
            let (class, why) = if !stuck_receiving {
                ("timeout", format!("timed out in state {state}"))
            } else if crate::app::runtime::delivered(st, m.instruction).await? {
                (
                    "no_report_after_session",
                    "no report from the node's runtime after the session ended (it timed out or died)".to_string(),
                )
            } else {
                ("instruction_not_picked_up", "the node's runtime never picked up the instruction".to_string())
            };
            fail_node(st, tx, id, &m.node, class, why).await?;
            return Ok(());
        }
        // Wait for anything that can move this node on.
        let wait = deadline.saturating_duration_since(now).min(Duration::from_secs(5));
        let runtime_change = crate::app::runtime::wait(st, runtime_change, wait);
        tokio::select! {
            _ = runtime_change => {}
            _ = sender_done.notified() => {}
            _ = st.deploys.metadata_fetched.notified() => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_differ_per_deployment_and_attempt() {
        let mut seen = std::collections::HashSet::new();
        for id in 1..200 {
            for attempt in 1..4 {
                let (g, p) = session_addr(id, attempt);
                assert!(g.is_multicast() && g.octets()[0] == 239, "{g}");
                assert!(p >= 20_000 && p % 2 == 0);
                assert!(seen.insert((g, p)), "collision at {id}/{attempt}");
            }
        }
    }
}
