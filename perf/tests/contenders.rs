//! Privileged smoke test of the imaging comparison: every contender once,
//! tiny (2 receivers, 8 MiB), on a real namespace fabric, each receiver's
//! data checked byte for byte. The full sweep is `bash perf/run-all.sh`
//! (or the ignored test below); CI never runs it.

use std::time::Duration;

use metalcast_bench::contenders::{self, ALL};
use metalcast_bench::suite::{self, Config, Loss};
use metalcast_fabric::skip_unless_root;

fn config(scratch: &std::path::Path) -> Config {
    Config {
        contenders: ALL.iter().map(|s| s.to_string()).collect(),
        receivers: vec![2],
        losses: vec![Loss::Random(0.0)],
        sizes_mib: vec![8],
        chunk_bytes: metalcast_image::manifest::DEFAULT_CHUNK_SIZE,
        link_mbit: vec![0],
        reps: 1,
        rate_mbit: 800,
        mtu: 1500,
        offloads: false,
        scratch: scratch.to_path_buf(),
        verify: true,
        timeout: Duration::from_secs(120),
    }
}

/// `Some(reason)` when a contender's tools are missing.
fn missing_tools() -> Option<String> {
    let missing: Vec<String> = ALL
        .iter()
        .filter_map(|n| contenders::by_name(n).expect("known").available().err().map(|e| format!("{n}: {e}")))
        .collect();
    (!missing.is_empty()).then(|| missing.join("; "))
}

#[test]
fn every_contender_delivers_identical_data() {
    skip_unless_root!(bpf);
    if let Some(reason) = missing_tools() {
        assert!(!metalcast_fabric::require_privileged(), "contenders cannot run ({reason}); run perf/ci-setup.sh");
        eprintln!("SKIP every_contender_delivers_identical_data: {reason}");
        return;
    }
    let scratch = tempfile::tempdir().expect("scratch dir");
    let report = suite::run(&config(scratch.path())).expect("suite runs");
    let names: Vec<&str> = report.rows.iter().map(|r| r.contender.as_str()).collect();
    assert_eq!(names, ["metalcast", "metalcast-xdp", "udpcast", "http", "bittorrent", "blaster"]);
    assert!(report.unavailable.is_empty(), "{:?}", report.unavailable);
    for r in &report.rows {
        assert_eq!(r.failures, 0, "{} failed: {}", r.contender, r.error.as_deref().unwrap_or(""));
        assert_eq!(r.samples.len(), 1);
        let s = &r.samples[0];
        assert_eq!(s.identical, Some(true), "{}: data not checked or not identical", r.contender);
        assert_eq!(s.delivered_fraction, 1.0, "{}", r.contender);
        // At least one image crosses the fabric, and not absurdly more (2 receivers).
        assert!(s.wire_ip >= 1.0 && s.wire_ip < 4.0, "{}: wire {}", r.contender, s.wire_ip);
        assert!(s.wire_payload < s.wire_ip, "{}", r.contender);
        assert!(s.secs > 0.0 && s.sender_cpu_per_gb > 0.0 && s.receiver_cpu_per_gb > 0.0, "{}: {s:?}", r.contender);
    }
    // Unicast contenders send one copy per receiver; multicast ones about one in all.
    let wire = |n: &str| report.rows.iter().find(|r| r.contender == n).expect("row").wire_ip;
    assert!(wire("http") > 1.9 && wire("metalcast") < 1.3 && wire("metalcast-xdp") < 1.3 && wire("blaster") < 1.1);
    let out = scratch.path().join("out");
    let files = metalcast_bench::report::write(&report, &out).expect("report written");
    assert!(files.iter().any(|f| f.extension().is_some_and(|e| e == "svg")));
}

/// A sweep hands its rows to the checkpoint after every scenario, so an
/// interrupted one keeps what it measured.
#[test]
fn a_sweep_checkpoints_after_every_scenario() {
    skip_unless_root!(bpf);
    let scratch = tempfile::tempdir().expect("scratch dir");
    let cfg = Config {
        contenders: vec![contenders::BLASTER.into()],
        losses: vec![Loss::Random(0.0), Loss::Random(1.0)],
        sizes_mib: vec![2],
        verify: false,
        ..config(scratch.path())
    };
    let mut seen = Vec::new();
    let report = suite::run_with(&cfg, &mut |r| {
        seen.push(r.rows.iter().map(|row| row.loss_label.clone()).collect::<Vec<_>>());
        Ok(())
    })
    .expect("suite runs");
    assert_eq!(seen, [vec!["0%"], vec!["0%", "1%"]]);
    assert_eq!(report.rows.len(), 2);
    // A checkpoint that fails stops the sweep with its error.
    let err = suite::run_with(&cfg, &mut |_| anyhow::bail!("disk full")).expect_err("stops");
    assert!(format!("{err:#}").contains("disk full"), "{err:#}");
}

/// The sweep over N and loss at a moderate size, as `perf/run-all.sh` runs it at full size.
/// `cargo test -p metalcast-bench --release --test contenders -- --ignored --nocapture`
#[test]
#[ignore = "sweep: minutes of runs; use perf/run-all.sh for the full comparison"]
fn sweep_over_n_and_loss() {
    skip_unless_root!(bpf);
    let scratch = tempfile::tempdir().expect("scratch dir");
    let cfg = Config {
        receivers: vec![1, 2, 4, 8],
        losses: vec![Loss::Random(0.0), Loss::Random(1.0), Loss::BURSTY],
        sizes_mib: vec![64],
        verify: false,
        ..config(scratch.path())
    };
    let report = suite::run(&cfg).expect("suite runs");
    print!("{}", metalcast_bench::report::markdown(&report));
    assert!(report.rows.iter().filter(|r| r.contender == "metalcast").all(|r| r.failures == 0));
}
