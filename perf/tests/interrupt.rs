//! Privileged: Ctrl-C in the middle of a sweep leaves nothing behind. The
//! bench is run as a process, interrupted while udpcast is sending behind a
//! slow link, and must exit 130 having killed udpcast's processes, deleted
//! its fabric's namespaces and removed its scratch image.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use metalcast_fabric::skip_unless_root;

/// Pids of the children of `parent` whose command name starts with `prefix`.
fn children_named(parent: u32, prefix: &str) -> Vec<u32> {
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else { continue };
        if let Some((comm, ppid)) = comm_and_ppid(pid)
            && ppid == parent
            && comm.starts_with(prefix)
        {
            pids.push(pid);
        }
    }
    pids
}

/// The command name and parent pid of `pid`, from `/proc/<pid>/stat`, if it still exists.
fn comm_and_ppid(pid: u32) -> Option<(String, u32)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // "pid (comm) state ppid ...": comm may hold spaces and parentheses, so split at the last ')'.
    let (head, tail) = stat.rsplit_once(')')?;
    let comm = head.split_once('(')?.1.to_owned();
    let ppid = tail.split_whitespace().nth(1)?.parse().ok()?;
    Some((comm, ppid))
}

/// Which of `pids` still run the command `prefix*` (a reaped pid may be reused by something else).
fn still_running(pids: &[u32], prefix: &str) -> Vec<u32> {
    pids.iter().copied().filter(|&p| comm_and_ppid(p).is_some_and(|(c, _)| c.starts_with(prefix))).collect()
}

/// Namespaces whose name starts with `prefix`.
fn namespaces_with(prefix: &str) -> Vec<String> {
    let out = Command::new("ip").args(["netns", "list"]).output().expect("ip netns list");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| n.starts_with(prefix))
        .map(str::to_owned)
        .collect()
}

/// Polls `cond` every 20 ms until it holds or `limit` passes.
fn wait_until(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let until = Instant::now() + limit;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= until {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn ctrl_c_mid_run_kills_contenders_and_deletes_the_fabric() {
    skip_unless_root!(bpf);
    if let Err(e) = metalcast_bench::contenders::by_name("udpcast").expect("known").available() {
        assert!(!metalcast_fabric::require_privileged(), "udpcast cannot run ({e}); run perf/ci-setup.sh");
        eprintln!("SKIP ctrl_c_mid_run_kills_contenders_and_deletes_the_fabric: {e}");
        return;
    }
    let scratch = tempfile::tempdir().expect("scratch dir");
    let scratch_path = scratch.path().to_str().expect("UTF-8 temp path").to_owned();
    let out = tempfile::tempdir().expect("report dir");
    // 32 MiB behind 10 Mbit/s links: a run lasts about 27 s, far longer than the test waits.
    let mut bench = Command::new(env!("CARGO_BIN_EXE_metalcast-bench"))
        .args(["suite", "--contenders", "udpcast", "--receivers", "2", "--loss", "0", "--size-mib", "32"])
        .args(["--link-mbit", "10", "--reps", "1", "--timeout-secs", "300", "--scratch", &scratch_path])
        .args(["--out", out.path().to_str().expect("UTF-8 temp path")])
        .stdout(Stdio::null())
        .spawn()
        .expect("metalcast-bench runs");
    let pid = bench.id();
    let prefix = format!("mc{:04}", pid % 10_000);

    let mut udpcast = Vec::new();
    let sending = wait_until(Duration::from_secs(120), || {
        udpcast = children_named(pid, "udp-");
        udpcast.len() >= 3 // udp-sender and two udp-receivers
    });
    if !sending {
        let _ = bench.kill();
        panic!("udpcast never started; bench status {:?}", bench.try_wait());
    }
    assert!(!namespaces_with(&prefix).is_empty(), "the fabric's namespaces {prefix}* exist while it runs");

    // SAFETY: plain syscall on our own unreaped child.
    let r = unsafe { libc::kill(pid as libc::pid_t, libc::SIGINT) };
    assert_eq!(r, 0, "kill: {}", std::io::Error::last_os_error());
    let mut status = None;
    assert!(
        wait_until(Duration::from_secs(60), || {
            status = bench.try_wait().expect("wait");
            status.is_some()
        }),
        "the bench did not exit after SIGINT"
    );
    assert_eq!(status.and_then(|s| s.code()), Some(130), "exit code 128 + SIGINT");

    assert_eq!(namespaces_with(&prefix), Vec::<String>::new(), "namespaces left behind");
    // SIGKILLed processes are reaped by init, asynchronously.
    assert!(
        wait_until(Duration::from_secs(10), || still_running(&udpcast, "udp-").is_empty()),
        "udpcast processes left running: {:?} of {udpcast:?}",
        still_running(&udpcast, "udp-")
    );
    let left: Vec<_> = std::fs::read_dir(Path::new(&scratch_path)).expect("scratch").flatten().collect();
    assert!(left.is_empty(), "scratch left behind: {left:?}");
}
