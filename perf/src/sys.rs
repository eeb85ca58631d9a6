//! The benchmark's few system calls: reaping a child with its own resource
//! usage (`wait4`), signalling it, and this thread's CPU time.

use std::process::{Child, Command};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

/// Pids of every [`Proc`] not reaped yet (so none of them can be reused).
static LIVE_PIDS: Mutex<Vec<u32>> = Mutex::new(Vec::new());

fn live_pids() -> MutexGuard<'static, Vec<u32>> {
    // A panic while holding the lock cannot leave a list of pids inconsistent.
    LIVE_PIDS.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// SIGKILLs every [`Proc`] of this process that is not reaped yet and returns
/// how many; for the signal handler thread of [`crate::interrupt`], just
/// before the bench exits.
pub fn kill_live_procs() -> usize {
    let pids = live_pids();
    for &pid in pids.iter() {
        let pid = libc::pid_t::try_from(pid).expect("pids fit pid_t");
        // SAFETY: plain syscall; the pid is a child of ours that is not reaped yet (reaping removes it
        // from the list under this lock), so it cannot have been reused.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
    pids.len()
}

/// A spawned process whose CPU time is read when it is reaped.
#[derive(Debug)]
pub struct Proc {
    /// What it is, for error messages.
    pub label: String,
    child: Child,
    exit: Option<(i32, f64)>,
}

/// How a [`Proc`] ended: raw wait status and user + system CPU seconds.
#[derive(Debug, Clone, Copy)]
pub struct Exit {
    /// Raw `wait` status (exit code in bits 8-15, or the signal).
    pub status: i32,
    /// User + system CPU seconds of the process (and of its reaped children).
    pub cpu_secs: f64,
}

impl Exit {
    /// Exited normally with status 0.
    pub fn success(&self) -> bool {
        libc::WIFEXITED(self.status) && libc::WEXITSTATUS(self.status) == 0
    }
}

impl Proc {
    /// Spawns `cmd`.
    pub fn spawn(label: impl Into<String>, cmd: &mut Command) -> std::io::Result<Self> {
        let child = cmd.spawn()?;
        live_pids().push(child.id());
        Ok(Proc { label: label.into(), child, exit: None })
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Reaps the process if it has ended (never blocks).
    pub fn try_wait(&mut self) -> std::io::Result<Option<Exit>> {
        if let Some((status, cpu_secs)) = self.exit {
            return Ok(Some(Exit { status, cpu_secs }));
        }
        let mut status = 0;
        // SAFETY: an all-zero rusage is a valid value of this plain C struct.
        let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
        let pid = libc::pid_t::try_from(self.child.id()).expect("pids fit pid_t");
        // Held across the reap, so `kill_live_procs` never signals a reaped (reusable) pid.
        let mut live = live_pids();
        // SAFETY: wait4 writes only into the two out-pointers, which point to live locals; the pid
        // is our own unreaped child (std's Child never reaps it: we never call its wait methods).
        let r = unsafe { libc::wait4(pid, &mut status, libc::WNOHANG, &mut ru) };
        match r {
            0 => Ok(None),
            r if r == pid => {
                live.retain(|&p| p != self.child.id());
                let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
                let cpu_secs = secs(ru.ru_utime) + secs(ru.ru_stime);
                self.exit = Some((status, cpu_secs));
                Ok(Some(Exit { status, cpu_secs }))
            }
            _ => Err(std::io::Error::last_os_error()),
        }
    }

    /// Waits up to `limit` for the process to end.
    pub fn wait_for(&mut self, limit: Duration) -> std::io::Result<Option<Exit>> {
        let until = std::time::Instant::now() + limit;
        loop {
            if let Some(e) = self.try_wait()? {
                return Ok(Some(e));
            }
            if std::time::Instant::now() >= until {
                return Ok(None);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Sends `signal` unless the process was already reaped.
    pub fn signal(&self, signal: i32) {
        if self.exit.is_none() {
            let pid = libc::pid_t::try_from(self.child.id()).expect("pids fit pid_t");
            // SAFETY: plain syscall on our own child, which is not reaped yet, so the pid is not reused.
            unsafe { libc::kill(pid, signal) };
        }
    }

    /// Stops the process (SIGTERM, then SIGKILL after `grace`) and reaps it.
    pub fn stop(&mut self, grace: Duration) -> std::io::Result<Exit> {
        if let Some(e) = self.try_wait()? {
            return Ok(e);
        }
        self.signal(libc::SIGTERM);
        if let Some(e) = self.wait_for(grace)? {
            return Ok(e);
        }
        self.signal(libc::SIGKILL);
        Ok(self.wait_for(Duration::from_secs(30))?.expect("a SIGKILLed process ends"))
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        // Never leave a contender's process running (it would send during the next run).
        if self.exit.is_none() {
            self.signal(libc::SIGKILL);
            let _ = self.wait_for(Duration::from_secs(5));
        }
    }
}

/// CPU seconds (user + system) the calling thread has used so far.
pub fn thread_cpu_secs() -> f64 {
    // CLOCK_THREAD_CPUTIME_ID counts in nanoseconds; getrusage's split into
    // user and system time moves in scheduler ticks (4 ms here), too coarse
    // for timing one decode.
    use nix::time::{ClockId, clock_gettime};
    clock_gettime(ClockId::CLOCK_THREAD_CPUTIME_ID).map_or(0.0, |t| t.tv_sec() as f64 + t.tv_nsec() as f64 / 1e9)
}

/// CPU seconds (user + system) the whole process has used so far, every thread.
pub fn process_cpu_secs() -> f64 {
    use nix::time::{ClockId, clock_gettime};
    clock_gettime(ClockId::CLOCK_PROCESS_CPUTIME_ID).map_or(0.0, |t| t.tv_sec() as f64 + t.tv_nsec() as f64 / 1e9)
}

/// Busy CPU seconds of the whole machine since boot, all CPUs (user, nice,
/// system, irq, softirq and steal time from the first line of `/proc/stat`).
pub fn machine_busy_secs() -> anyhow::Result<f64> {
    use anyhow::Context;
    let stat = std::fs::read_to_string("/proc/stat").context("reading /proc/stat")?;
    let line = stat.lines().next().context("empty /proc/stat")?;
    let v: Vec<u64> = line.split_whitespace().skip(1).filter_map(|x| x.parse().ok()).collect();
    anyhow::ensure!(v.len() >= 8, "unexpected /proc/stat: {line}");
    // user nice system idle iowait irq softirq steal
    let busy = v[0] + v[1] + v[2] + v[5] + v[6] + v[7];
    let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK).ok().flatten().unwrap_or(100) as f64;
    Ok(busy as f64 / hz)
}
