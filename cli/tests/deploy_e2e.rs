//! End to end, as an operator runs it (root, QEMU, Debian's ipxe, the Debian kernel
//! from `node-runtime/fetch-kernel.sh`): `metalcast demo --nodes 6 --qemu 2
//! --reclaim` stands up the control plane (SQLite) on a namespace fabric,
//! six namespace nodes running `metalcast-node agent` and two QEMU guests
//! that netboot the runtime from `metalcast serve` itself (DHCP, iPXE
//! script, kernel and initrd; no dnsmasq), deploys one image to all eight in one
//! multicast deployment through `POST /v1/deployments`, and follows it over
//! the event stream. Asserted here from what the demo prints:
//! - the deployment ends `done`; the six namespace nodes `verified` (their
//!   runtime re-read every chunk against the signed manifest; they cannot
//!   kexec on this host), the two guests `booted` (their tenant agent checked
//!   in with a new boot id after kexec);
//! - each guest's console shows the tenant marker, and its metadata seed URL
//!   serves that guest's own hostname;
//! - the first guest is reclaimed by kexec with `--wipe zero`: its disk
//!   image, filled with 0xa5 before it booted, reads back as zeroes from the
//!   host, and the node is in the free pool again;
//! - the second guest is traded (`--market`): project demo offers it, project
//!   buyer buys it, reads it and deploys its own image to it by kexec; demo
//!   recalls the lease, and the guest is reclaimed by kexec, wiped (its disk
//!   reads back as zeroes), back in demo, and buyer gets 403 on it.
//!
//! The cheaper API-level checks (isolation between projects, conflicts,
//! retry, restart recovery, metadata tokens) are in `src/tests/deploy.rs`.

mod common;

use std::process::Command;
use std::time::Instant;

use metalcast_fabric::skip_unless_root;

fn prerequisites() -> Result<(), String> {
    metalcast_fabric::qemu::qemu()?;
    if Command::new("dnsmasq").arg("--version").output().is_err() {
        return Err("dnsmasq not installed".into());
    }
    metalcast_fabric::qemu::kernel().map(drop)
}

#[test]
fn deploy_to_namespace_nodes_and_qemu_guests_then_reclaim() {
    skip_unless_root!();
    if let Err(reason) = prerequisites() {
        assert!(!metalcast_fabric::require_privileged(), "cannot run: {reason}");
        eprintln!("SKIP deploy_to_namespace_nodes_and_qemu_guests_then_reclaim: {reason}");
        return;
    }
    let t0 = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_metalcast"))
        .args(["demo", "--nodes", "6", "--qemu", "2", "--reclaim", "--market", "--disk-mib", "16"])
        .output()
        .expect("running metalcast demo");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("{stderr}");
    println!("{stdout}");
    assert!(out.status.success(), "metalcast demo failed ({})", out.status);

    let row = |node: &str| {
        stdout
            .lines()
            .find(|l| l.split_whitespace().next() == Some(node))
            .unwrap_or_else(|| panic!("no summary row for {node}"))
            .to_string()
    };
    assert!(stdout.contains("deployment 1 (done)"), "{stdout}");
    for i in 0..6 {
        let r = row(&format!("r{i}"));
        assert_eq!(r.split_whitespace().nth(1), Some("verified"), "{r}");
    }
    for g in ["g0", "g1"] {
        let r = row(g);
        assert_eq!(r.split_whitespace().nth(1), Some("booted"), "{r}");
        assert!(stdout.contains(&format!("guest {g}: the tenant kernel is running")), "{stdout}");
        assert!(stdout.contains(&format!("guest {g}: its metadata seed serves its own data")), "{stdout}");
    }
    assert!(stdout.contains("reclaimed g0 by kexec"), "{stdout}");
    assert!(stdout.contains("wipe "), "the reclaim had a wipe phase: {stdout}");
    assert!(stdout.contains("g0's disk reads back as zeroes"), "{stdout}");
    assert!(stdout.contains("it is in the free pool"), "{stdout}");
    // The marketplace on the second guest: bought, deployed to by the lessee, recalled, back with its owner.
    assert!(stdout.contains("market: buyer leased g1"), "{stdout}");
    assert!(stdout.contains("market: the lessee deployed tenant-b to g1 by kexec"), "{stdout}");
    assert!(stdout.contains("reclaimed by kexec and wiped"), "{stdout}");
    assert!(stdout.contains("buyer gets 403 on it"), "{stdout}");
    eprintln!("deploy e2e wall time: {:.1}s", t0.elapsed().as_secs_f64());
}

/// Runs the demo's crash drill with `rounds` rounds on four namespace nodes
/// (`extra`: more arguments) and checks every round ended with every node
/// verified, resumed `by` whom.
fn crash_drill(rounds: u32, nodes: usize, extra: &[&str], by: &str) {
    let out = Command::new(env!("CARGO_BIN_EXE_metalcast"))
        .args(["demo", "--nodes", &nodes.to_string(), "--disk-mib", "64", "--rate-mbit", "20"])
        .args(["--kill-server-at", "50", "--rounds", &rounds.to_string()])
        .args(extra)
        .output()
        .expect("running metalcast demo --kill-server-at");
    let stdout = String::from_utf8_lossy(&out.stdout);
    eprintln!("{}", String::from_utf8_lossy(&out.stderr));
    println!("{stdout}");
    assert!(out.status.success(), "the crash drill failed ({})", out.status);
    for r in 1..=rounds {
        let line = stdout
            .lines()
            .find(|l| l.starts_with(&format!("crash round {r}/{rounds}:")))
            .unwrap_or_else(|| panic!("no line for round {r}: {stdout}"));
        assert!(line.contains(&format!("resumed by {by}: done ({nodes}/{nodes} verified)")), "{line}");
        assert!(stdout.contains(&format!("crash timing {r}/{rounds}: kill to resumed progress")), "{stdout}");
    }
}

/// A crash mid-deployment with real agents in namespaces: a deployment at a
/// rate cap, the control plane killed with SIGKILL at 50% and restarted at
/// once; the restarted server resumes the session (issue 26), and every node
/// must end verified with no retry, having taken in less than 1.3 times the
/// image. One round here; `crash_drill_ten_rounds` repeats it.
#[test]
fn crash_drill_kill_server_mid_deployment() {
    skip_unless_root!();
    crash_drill(1, 4, &[], "the restarted server");
}

/// Three replicas on one PostgreSQL, eight namespace nodes at 1% loss, given
/// every replica's URL: each round's deployment goes to the next replica,
/// which is killed with SIGKILL at 50% and not restarted until another
/// replica has taken the deployment over and the nodes progress again (then
/// it is started again while the deployment runs). Every node ends verified
/// having taken in less than 1.3 times the image. Two rounds, so the
/// taken-over deployment's new owner is not the only one tried.
#[test]
fn crash_drill_three_replicas_on_postgresql() {
    skip_unless_root!();
    let Ok(pg) = std::env::var("METALCAST_TEST_PG_URL") else {
        assert!(
            !metalcast_fabric::require_privileged(),
            "METALCAST_TEST_PG_URL is not set (control-plane/ci-setup.sh)"
        );
        eprintln!("SKIP crash_drill_three_replicas_on_postgresql: METALCAST_TEST_PG_URL is not set");
        return;
    };
    crash_drill(2, 8, &["--replicas", "3", "--database-url", &pg], "another replica");
    // SIGSTOP past the dead timeout, then SIGCONT: the woken owner's first write changes nothing.
    let pause = ["--replicas", "3", "--database-url", &pg, "--pause-server"];
    crash_drill(1, 8, &pause, "another replica, the paused owner fenced");
}

/// The same, ten rounds in a row (about 15 minutes):
/// `cargo test -p metalcast-cli --test deploy_e2e -- --ignored crash_drill_ten_rounds`.
#[test]
#[ignore = "about 15 minutes; run by name"]
fn crash_drill_ten_rounds() {
    skip_unless_root!();
    crash_drill(10, 4, &[], "the restarted server");
}

/// `metalcast demo --keep-fabric`: after the deployment everything stays up;
/// the node list from inside the control plane's namespace shows both nodes
/// deployed; SIGTERM then removes every namespace the demo made.
#[test]
fn demo_keep_fabric_stays_up_until_sigterm() {
    skip_unless_root!();
    let demo = common::KeptDemo::start(&["--nodes", "2", "--disk-mib", "16"]);
    let (url, ns, token) = (demo.url.clone(), demo.netns.clone(), demo.token());
    let out = Command::new("ip")
        .args(["netns", "exec", &ns, env!("CARGO_BIN_EXE_metalcast"), "-o", "json", "node", "list"])
        .env("METALCAST_URL", &url)
        .env("METALCAST_TOKEN", &token)
        .output()
        .unwrap();
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {out:?}"));
    let states: Vec<&str> = rows.as_array().unwrap().iter().map(|r| r["state"].as_str().unwrap()).collect();
    assert_eq!(states, ["deployed", "deployed"], "{rows}");
    // SIGTERM: the demo stops and removes its namespaces (bounded wait).
    let status = demo.stop();
    assert!(status.success(), "{status}");
    let left =
        String::from_utf8_lossy(&Command::new("ip").args(["netns", "list"]).output().unwrap().stdout).into_owned();
    assert!(!left.contains(&ns), "namespace {ns} left behind: {left}");
}
