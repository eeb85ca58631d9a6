//! `metalcast deploy ...` and `metalcast node reclaim`: the CLI over
//! `/v1/deployments` and `/v1/nodes/{node}/reclaim`, with live progress from
//! the deployment's event stream.

use std::io::IsTerminal;
use std::path::PathBuf;

use clap::{Args, Subcommand};
use futures_util::StreamExt;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use metalcast_operator_api::v1::{
    DeployRequest, Deployment, DeploymentState, HandoverSpec, NodeState, ReclaimRequest, Reclaimed, TERMINAL,
    TargetSpec, WipeSpec,
};
use metalcast_operator_api::{Client, DeploymentEvent};
use serde_json::{Value, json};

use crate::cli_error::{CliError, out};

/// `metalcast deploy`: deploy an image (default), or manage deployments.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct DeployArgs {
    /// Manage existing deployments instead.
    #[command(subcommand)]
    pub cmd: Option<DeploySub>,
    /// Image to deploy.
    #[arg(long, required = true)]
    pub image: Option<String>,
    /// Nodes to deploy to (comma-separated or repeated).
    #[arg(long, value_delimiter = ',')]
    pub nodes: Vec<String>,
    /// Deploy to every node of this project (or: the project the --nodes belong to).
    #[arg(long)]
    pub project: Option<String>,
    /// Where to write: `memory`, or `disk:/dev/DEVICE`.
    #[arg(long, default_value = "memory")]
    pub target: String,
    /// What the node does after verifying the image.
    #[arg(long, value_enum, default_value_t = HandoverSpec::Kexec)]
    pub handover: HandoverSpec,
    /// Appended to the image's kernel command line.
    #[arg(long, default_value = "")]
    pub append: String,
    /// cloud-init user-data file for the deployed systems (metadata service).
    #[arg(long)]
    pub user_data: Option<PathBuf>,
    /// Keypair to put into the deployed systems' metadata (repeatable).
    #[arg(long = "keypair")]
    pub keypairs: Vec<String>,
    /// Send-rate cap in Mbit/s (default: the server's).
    #[arg(long)]
    pub rate_mbit: Option<u64>,
    /// Seconds a node may take before it is failed (default 600).
    #[arg(long)]
    pub timeout: Option<u64>,
    /// Return once the deployment is created instead of following it: print
    /// its id and the `deploy watch` command (`-o json`: the deployment).
    #[arg(long)]
    pub no_wait: bool,
}

/// `metalcast deploy <subcommand>`.
#[derive(Debug, Subcommand)]
pub enum DeploySub {
    /// List deployments of your projects.
    List,
    /// Show one deployment and its nodes.
    Show {
        /// Deployment id.
        id: i64,
    },
    /// Follow a running deployment's progress until it ends.
    Watch {
        /// Deployment id.
        id: i64,
    },
    /// Deploy the failed nodes of a failed deployment again.
    Retry {
        /// Deployment id.
        id: i64,
        /// Return at once instead of following it.
        #[arg(long)]
        no_wait: bool,
    },
}

/// Runs `metalcast deploy ...`; returns the JSON to print (the summary table
/// is printed here when following a deployment in table mode).
pub async fn run(c: &Client, a: &DeployArgs, json_out: bool) -> Result<Value, CliError> {
    match &a.cmd {
        Some(DeploySub::List) => Ok(list_rows(&c.deployments().await?)),
        Some(DeploySub::Show { id }) => {
            let d = c.deployment(*id).await?;
            if !json_out {
                print_summary(&d);
                return Ok(Value::Null);
            }
            out(d)
        }
        Some(DeploySub::Watch { id }) => follow(c, *id, json_out).await,
        Some(DeploySub::Retry { id, no_wait }) => {
            let d = c.deployment_retry(*id).await?;
            match (*no_wait, json_out) {
                (true, true) => out(d),
                (true, false) => Ok(Value::String(started(&d, "retried"))),
                (false, _) => follow(c, *id, json_out).await,
            }
        }
        None => {
            let d = c.deploy(&request(a)?).await?;
            if a.no_wait {
                return if json_out { out(d) } else { Ok(Value::String(started(&d, "created"))) };
            }
            eprintln!("deployment {}: {} to {} node(s) of {}", d.id, d.image, d.nodes.len(), d.project);
            follow(c, d.id, json_out).await
        }
    }
}

/// `--no-wait` for humans: what happened and how to follow it (`-o json` prints the deployment).
fn started(d: &Deployment, what: &str) -> String {
    format!("deployment {} {what}; follow it with `metalcast deploy watch {}`", d.id, d.id)
}

/// The `POST /v1/deployments` body of `metalcast deploy --image ...`.
fn request(a: &DeployArgs) -> Result<DeployRequest, CliError> {
    let image = a.image.clone().ok_or_else(|| CliError::Input("--image is required".into()))?;
    let target = match a.target.as_str() {
        "memory" => TargetSpec::Memory,
        t => match t.strip_prefix("disk:") {
            Some(dev) => TargetSpec::Disk { device: dev.to_string() },
            None => return Err(CliError::Input(format!("--target {t:?}: use memory or disk:/dev/DEVICE"))),
        },
    };
    let user_data = match &a.user_data {
        Some(p) => {
            Some(std::fs::read_to_string(p).map_err(|e| CliError::Input(format!("reading {}: {e}", p.display())))?)
        }
        None => None,
    };
    Ok(DeployRequest {
        image,
        nodes: a.nodes.clone(),
        project: a.project.clone(),
        target,
        handover: a.handover,
        cmdline_append: a.append.clone(),
        user_data,
        keypairs: a.keypairs.clone(),
        rate_mbit: a.rate_mbit,
        timeout_secs: a.timeout,
    })
}

/// `deploy list`: one row per deployment, with node counts.
fn list_rows(ds: &[Deployment]) -> Value {
    let rows = ds
        .iter()
        .map(|d| {
            let failed = d.nodes.iter().filter(|n| n.state == NodeState::Failed).count();
            json!({"id": d.id, "project": d.project, "image": d.image, "state": d.state,
                   "nodes": d.nodes.len(), "failed": failed, "created_by": d.created_by})
        })
        .collect();
    Value::Array(rows)
}

/// Up to this many nodes get a bar each; more are shown as one aggregate bar.
const BARS_PER_NODE_MAX: usize = 16;

/// Follows the event stream until the deployment ends; prints the summary.
/// A deployment with failed nodes is an error (exit code 8).
async fn follow(c: &Client, id: i64, json_out: bool) -> Result<Value, CliError> {
    let mut events = c.deployment_events(id).await?;
    let multi = MultiProgress::new();
    if !std::io::stderr().is_terminal() {
        multi.set_draw_target(ProgressDrawTarget::hidden());
    }
    let style = ProgressStyle::with_template("{prefix:>16} [{bar:36}] {pos:>5}/{len:5} {msg}")
        .expect("static template")
        .progress_chars("=> ");
    let mut bars: Vec<(String, ProgressBar)> = Vec::new();
    let mut aggregate: Option<ProgressBar> = None;
    let mut last: Option<Deployment> = None;
    while let Some(event) = events.next().await {
        let d = match event {
            Ok(DeploymentEvent::Progress(d)) => *d,
            Ok(DeploymentEvent::End) => break,
            // A snapshot this client cannot read: wait for the next one.
            Err(metalcast_operator_api::Error::Decode { .. }) => continue,
            Err(e) => {
                multi.clear().ok();
                return Err(lost(id, &e));
            }
        };
        if d.nodes.len() <= BARS_PER_NODE_MAX {
            for n in &d.nodes {
                let bar = match bars.iter().find(|(k, _)| *k == n.node) {
                    Some((_, b)) => b.clone(),
                    None => {
                        let b = multi.add(ProgressBar::new(1).with_style(style.clone()).with_prefix(n.node.clone()));
                        bars.push((n.node.clone(), b.clone()));
                        b
                    }
                };
                bar.set_length(n.blocks_total.max(1) as u64);
                bar.set_position(n.blocks_done.max(0) as u64);
                bar.set_message(if n.state == NodeState::Failed {
                    format!("failed: {}", n.reason)
                } else {
                    n.state.to_string()
                });
            }
        } else {
            let bar = aggregate.get_or_insert_with(|| {
                multi.add(ProgressBar::new(1).with_style(style.clone()).with_prefix(format!("{} nodes", d.nodes.len())))
            });
            let total: i64 = d.nodes.iter().map(|n| n.blocks_total).sum();
            let done: i64 = d.nodes.iter().map(|n| n.blocks_done).sum();
            let count = |s: NodeState| d.nodes.iter().filter(|n| n.state == s).count();
            let finished = d.nodes.iter().filter(|n| TERMINAL.contains(&n.state)).count();
            bar.set_length(total.max(1) as u64);
            bar.set_position(done.max(0) as u64);
            bar.set_message(format!(
                "{finished} finished ({} booted, {} verified, {} failed), {} receiving",
                count(NodeState::Booted),
                count(NodeState::Verified),
                count(NodeState::Failed),
                count(NodeState::Receiving)
            ));
        }
        last = Some(d);
    }
    multi.clear().ok();
    // The stream's last snapshot may precede the final bookkeeping: read the stored result.
    let d = match (c.deployment(id).await, last) {
        (Ok(d), _) => d,
        (Err(metalcast_operator_api::Error::Decode { .. }), Some(last)) => last,
        // The stream is gone and so is the server, or the deployment with it.
        (Err(e @ metalcast_operator_api::Error::Transport { .. }), _) => return Err(lost(id, &e)),
        (Err(e), _) => return Err(e.into()),
    };
    if !json_out {
        print_summary(&d);
    }
    if d.state == DeploymentState::Running {
        return Err(CliError::StreamLost { id, reason: "the stream ended early".into() });
    }
    let failed = d.nodes.iter().filter(|n| n.state == NodeState::Failed).count();
    if failed > 0 {
        if json_out {
            // As `main` prints answers: through a `Value` (keys sorted, like the server's).
            outln!("{}", serde_json::to_string_pretty(&out(&d)?).unwrap_or_default());
        }
        return Err(CliError::Failed(format!(
            "deployment {id}: {failed} of {} node(s) failed (metalcast deploy retry {id})",
            d.nodes.len()
        )));
    }
    if json_out { out(d) } else { Ok(Value::Null) }
}

/// The stream of deployment `id` failed with `e`: the operator may reattach.
fn lost(id: i64, e: &metalcast_operator_api::Error) -> CliError {
    let mut reason = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        reason = format!("{reason}: {s}");
        src = s.source();
    }
    CliError::StreamLost { id, reason }
}

/// Prints the session line and the per-node table.
pub fn print_summary(d: &Deployment) {
    outln!("deployment {} ({}): {} on {} node(s) of {}", d.id, d.state, d.image, d.nodes.len(), d.project);
    if let Some(s) = &d.summary {
        let f = |k: &str| s.get(k).and_then(Value::as_f64).unwrap_or(0.0);
        outln!(
            "session {}: {:.2}s, wire/image {:.3} ({:.1} MiB on the wire for {:.1} MiB), {} source + {} repair symbols, {} reports rejected (forged or replayed)",
            d.session.as_deref().unwrap_or("-"),
            f("secs"),
            f("wire_ratio"),
            f("wire_bytes") / f64::from(1 << 20),
            f("image_bytes") / f64::from(1 << 20),
            f("source_packets"),
            f("repair_packets"),
            f("rejected_reports"),
        );
    }
    let mut t = crate::table::plain();
    t.set_header(["NODE", "STATE", "TIME_S", "BLOCKS", "RECEIVED", "REJECTED", "REASON"]);
    for n in &d.nodes {
        t.add_row([
            n.node.clone(),
            n.state.to_string(),
            n.elapsed_ms.map_or("-".into(), |ms| format!("{:.2}", ms as f64 / 1000.0)),
            format!("{}/{}", n.blocks_done, n.blocks_total),
            n.received.to_string(),
            n.rejected.to_string(),
            n.reason.clone(),
        ]);
    }
    outp!("{}", crate::table::finish(t, &[2, 3, 4, 5]));
}

/// `metalcast node reclaim NODE [--wipe MODE]`.
pub async fn reclaim(c: &Client, node: &str, wipe: WipeSpec, timeout: Option<u64>) -> Result<Reclaimed, CliError> {
    Ok(c.reclaim(node, &ReclaimRequest { wipe, timeout_secs: timeout }).await?)
}
