//! Running iproute2 (`ip`, `tc`, `bridge`) and `ethtool` setup commands.

use std::process::Command;

use crate::FabricError;

/// Renders a command line for error messages.
pub(crate) fn render(cmd: &Command) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|a| a.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Runs `cmd` to completion; returns its stdout, or an error carrying stderr.
pub(crate) fn run(cmd: &mut Command) -> Result<String, FabricError> {
    let command = render(cmd);
    let out = cmd.output().map_err(|source| FabricError::Spawn { command: command.clone(), source })?;
    if !out.status.success() {
        return Err(FabricError::Command {
            command,
            status: out.status,
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `tool [-n netns] args...`
pub(crate) fn tool<'a>(tool: &str, netns: Option<&str>, args: impl IntoIterator<Item = &'a str>) -> Command {
    let mut cmd = Command::new(tool);
    if let Some(ns) = netns {
        cmd.args(["-n", ns]);
    }
    cmd.args(args);
    cmd
}

/// Runs `ip -n netns args...`.
pub(crate) fn ip<'a>(netns: &str, args: impl IntoIterator<Item = &'a str>) -> Result<String, FabricError> {
    run(&mut tool("ip", Some(netns), args))
}

/// Runs `tc -n netns args...`.
pub(crate) fn tc<'a>(netns: &str, args: impl IntoIterator<Item = &'a str>) -> Result<String, FabricError> {
    run(&mut tool("tc", Some(netns), args))
}

/// Runs `bridge -n netns args...`.
pub(crate) fn bridge<'a>(netns: &str, args: impl IntoIterator<Item = &'a str>) -> Result<String, FabricError> {
    run(&mut tool("bridge", Some(netns), args))
}

/// Runs `ip netns exec netns ethtool args...`.
pub(crate) fn ethtool<'a>(netns: &str, args: impl IntoIterator<Item = &'a str>) -> Result<String, FabricError> {
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", netns, "ethtool"]).args(args);
    run(&mut cmd)
}
