//! `metalcast deploy ...` and `metalcast node reclaim`: the CLI over
//! `/v1/deployments` and `/v1/nodes/{node}/reclaim`, with live progress from
//! the deployment's event stream.

use std::io::IsTerminal;
use std::path::PathBuf;

use clap::{Args, Subcommand};
use futures_util::StreamExt;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::{Value, json};

use crate::cli::{CliError, Client};
use metalcast_control_plane::app::deployments::{Deployment, HandoverSpec, TERMINAL};

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
    /// Return once the deployment is created instead of following it.
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
        Some(DeploySub::List) => c.call("GET", "/v1/deployments", None).await.map(list_rows),
        Some(DeploySub::Show { id }) => {
            let v = c.call("GET", &format!("/v1/deployments/{id}"), None).await?;
            if !json_out {
                print_summary(&parse(&v)?);
                return Ok(Value::Null);
            }
            Ok(v)
        }
        Some(DeploySub::Watch { id }) => follow(c, *id, json_out).await,
        Some(DeploySub::Retry { id, no_wait }) => {
            let v = c.call("POST", &format!("/v1/deployments/{id}/retry"), None).await?;
            if *no_wait { Ok(v) } else { follow(c, *id, json_out).await }
        }
        None => {
            let image = a.image.clone().ok_or_else(|| CliError::Input("--image is required".into()))?;
            let target = match a.target.as_str() {
                "memory" => json!({"kind": "memory"}),
                t => match t.strip_prefix("disk:") {
                    Some(dev) => json!({"kind": "disk", "device": dev}),
                    None => return Err(CliError::Input(format!("--target {t:?}: use memory or disk:/dev/DEVICE"))),
                },
            };
            let user_data = match &a.user_data {
                Some(p) => Some(
                    std::fs::read_to_string(p).map_err(|e| CliError::Input(format!("reading {}: {e}", p.display())))?,
                ),
                None => None,
            };
            let mut body = json!({
                "image": image,
                "nodes": a.nodes,
                "target": target,
                "handover": a.handover,
                "cmdline_append": a.append,
                "keypairs": a.keypairs,
            });
            for (k, v) in [
                ("project", a.project.clone().map(Value::from)),
                ("user_data", user_data.map(Value::from)),
                ("rate_mbit", a.rate_mbit.map(Value::from)),
                ("timeout_secs", a.timeout.map(Value::from)),
            ] {
                if let Some(v) = v {
                    body[k] = v;
                }
            }
            let v = c.call("POST", "/v1/deployments", Some(body)).await?;
            let d = parse(&v)?;
            if a.no_wait {
                return Ok(v);
            }
            eprintln!("deployment {}: {} to {} node(s) of {}", d.id, d.image, d.nodes.len(), d.project);
            follow(c, d.id, json_out).await
        }
    }
}

fn parse(v: &Value) -> Result<Deployment, CliError> {
    serde_json::from_value(v.clone()).map_err(|e| CliError::Input(format!("unexpected answer from the server: {e}")))
}

fn list_rows(v: Value) -> Value {
    let rows = v
        .as_array()
        .map(|a| {
            a.iter()
                .map(|d| {
                    let nodes = d["nodes"].as_array().map_or(0, Vec::len);
                    let failed =
                        d["nodes"].as_array().map_or(0, |n| n.iter().filter(|x| x["state"] == "failed").count());
                    json!({"id": d["id"], "project": d["project"], "image": d["image"], "state": d["state"],
                           "nodes": nodes, "failed": failed, "created_by": d["created_by"]})
                })
                .collect()
        })
        .unwrap_or_default();
    Value::Array(rows)
}

/// Up to this many nodes get a bar each; more are shown as one aggregate bar.
const BARS_PER_NODE_MAX: usize = 16;

/// Follows the event stream until the deployment ends; prints the summary.
/// A deployment with failed nodes is an error (exit code 8).
async fn follow(c: &Client, id: i64, json_out: bool) -> Result<Value, CliError> {
    let resp = c.get_stream(&format!("/v1/deployments/{id}/events")).await?;
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
    let mut buf = String::new();
    let mut stream = resp.bytes_stream();
    'outer: while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| CliError::Input(format!("event stream broke: {e}")))?;
        buf.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = buf.find("\n\n") {
            let event: String = buf.drain(..end + 2).collect();
            let (mut name, mut data) = ("message", String::new());
            for line in event.lines() {
                if let Some(n) = line.strip_prefix("event:") {
                    name = if n.trim() == "end" { "end" } else { "progress" };
                } else if let Some(d) = line.strip_prefix("data:") {
                    data.push_str(d.trim_start());
                }
            }
            if name == "end" {
                break 'outer;
            }
            if name != "progress" {
                continue;
            }
            let Ok(d) = serde_json::from_str::<Deployment>(&data) else { continue };
            if d.nodes.len() <= BARS_PER_NODE_MAX {
                for n in &d.nodes {
                    let bar = match bars.iter().find(|(k, _)| *k == n.node) {
                        Some((_, b)) => b.clone(),
                        None => {
                            let b =
                                multi.add(ProgressBar::new(1).with_style(style.clone()).with_prefix(n.node.clone()));
                            bars.push((n.node.clone(), b.clone()));
                            b
                        }
                    };
                    bar.set_length(n.blocks_total.max(1) as u64);
                    bar.set_position(n.blocks_done.max(0) as u64);
                    bar.set_message(if n.state.as_str() == "failed" {
                        format!("failed: {}", n.reason)
                    } else {
                        n.state.to_string()
                    });
                }
            } else {
                let bar = aggregate.get_or_insert_with(|| {
                    multi.add(
                        ProgressBar::new(1).with_style(style.clone()).with_prefix(format!("{} nodes", d.nodes.len())),
                    )
                });
                let total: i64 = d.nodes.iter().map(|n| n.blocks_total).sum();
                let done: i64 = d.nodes.iter().map(|n| n.blocks_done).sum();
                let count = |s: &str| d.nodes.iter().filter(|n| n.state.as_str() == s).count();
                let finished = d.nodes.iter().filter(|n| TERMINAL.contains(&n.state)).count();
                bar.set_length(total.max(1) as u64);
                bar.set_position(done.max(0) as u64);
                bar.set_message(format!(
                    "{finished} finished ({} booted, {} verified, {} failed), {} receiving",
                    count("booted"),
                    count("verified"),
                    count("failed"),
                    count("receiving")
                ));
            }
            last = Some(d);
        }
    }
    multi.clear().ok();
    // The stream's last snapshot may precede the final bookkeeping: read the stored result.
    let v = c.call("GET", &format!("/v1/deployments/{id}"), None).await?;
    let d = parse(&v).or_else(|e| last.ok_or(e))?;
    if !json_out {
        print_summary(&d);
    }
    if d.state.as_str() == "running" {
        return Err(CliError::Input(format!("deployment {id} is still running (the event stream ended early)")));
    }
    let failed = d.nodes.iter().filter(|n| n.state.as_str() == "failed").count();
    if failed > 0 {
        if json_out {
            println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
        }
        return Err(CliError::Failed(format!(
            "deployment {id}: {failed} of {} node(s) failed (metalcast deploy retry {id})",
            d.nodes.len()
        )));
    }
    Ok(if json_out { v } else { Value::Null })
}

/// Prints the per-node table and the session line.
pub fn print_summary(d: &Deployment) {
    println!("deployment {} ({}): {} on {} node(s) of {}", d.id, d.state, d.image, d.nodes.len(), d.project);
    if let Some(s) = &d.summary {
        let f = |k: &str| s.get(k).and_then(Value::as_f64).unwrap_or(0.0);
        println!(
            "session {}: {:.2}s, wire/image {:.3} ({:.1} MiB on the wire for {:.1} MiB), {} source + {} repair symbols, {} forged reports dropped",
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
    println!(
        "{:<16} {:<10} {:>8} {:>11} {:>10} {:>9}  REASON",
        "NODE", "STATE", "TIME_S", "BLOCKS", "RECEIVED", "REJECTED"
    );
    for n in &d.nodes {
        println!(
            "{:<16} {:<10} {:>8} {:>11} {:>10} {:>9}  {}",
            n.node,
            n.state,
            n.elapsed_ms.map_or("-".into(), |ms| format!("{:.2}", ms as f64 / 1000.0)),
            format!("{}/{}", n.blocks_done, n.blocks_total),
            n.received,
            n.rejected,
            n.reason
        );
    }
}

/// `metalcast node reclaim NODE [--wipe MODE]`.
pub async fn reclaim(
    c: &Client,
    node: &str,
    wipe: metalcast_control_plane::app::reclaim::WipeSpec,
    timeout: Option<u64>,
) -> Result<Value, CliError> {
    let mut body = json!({ "wipe": wipe });
    if let Some(t) = timeout {
        body["timeout_secs"] = t.into();
    }
    let v = c.call("POST", &format!("/v1/nodes/{}/reclaim", crate::cli::urlencode(node)), Some(body)).await?;
    Ok(json!({
        "node": v["node"], "project": v["project"], "method": v["method"],
        "secs": v["secs"], "phases": v["phases"],
    }))
}
