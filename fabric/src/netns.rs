//! [`Netns`]: a named network namespace and ways to run code inside it.

use std::ffi::OsStr;
use std::process::Command;
use std::thread::JoinHandle;

use crate::{FabricError, sys};

/// A named network namespace (as in `ip netns list`) owned by a fabric.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Netns {
    name: String,
}

impl Netns {
    pub(crate) fn new(name: String) -> Self {
        Netns { name }
    }

    /// The namespace's name (`/run/netns/<name>`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A [`Command`] that runs `program` inside this namespace
    /// (`ip netns exec <name> <program>`); add arguments and spawn as usual.
    pub fn command(&self, program: impl AsRef<OsStr>) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec"]).arg(&self.name).arg(program);
        cmd
    }

    /// Runs `f` on a new thread that first entered this namespace; sockets it
    /// opens (and threads it starts, e.g. a tokio runtime's workers) live in
    /// the namespace. Fails only if the namespace cannot be opened.
    pub fn spawn_in<F, T>(&self, f: F) -> Result<JoinHandle<T>, FabricError>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let ns = sys::open_netns(&self.name).map_err(|source| self.err(source))?;
        let name = self.name.clone();
        std::thread::Builder::new()
            .name(format!("netns:{}", self.name))
            .spawn(move || {
                sys::enter_netns(&ns)
                    .unwrap_or_else(|e| panic!("setns into {name} (an open netns fd; we hold CAP_SYS_ADMIN): {e}"));
                drop(ns);
                f()
            })
            .map_err(|source| self.err(source))
    }

    /// Runs `f` inside this namespace on a scoped thread and waits for it, so
    /// `f` may borrow from the caller. A panic in `f` is resumed here.
    pub fn run_in<F, T>(&self, f: F) -> Result<T, FabricError>
    where
        F: FnOnce() -> T + Send,
        T: Send,
    {
        let ns = sys::open_netns(&self.name).map_err(|source| self.err(source))?;
        std::thread::scope(|s| {
            let handle = s.spawn(move || {
                sys::enter_netns(&ns)?;
                drop(ns);
                Ok(f())
            });
            handle.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        })
        .map_err(|source| self.err(source))
    }

    fn err(&self, source: std::io::Error) -> FabricError {
        FabricError::Netns { netns: self.name.clone(), source }
    }
}
