//! Helpers shared by the CLI's integration tests.

use std::process::{Command, Output};

/// Runs the `metalcast` binary against `url` with API token `token`
/// (no user or password from the environment).
pub fn metalcast(url: &str, token: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_metalcast"))
        .args(args)
        .env("METALCAST_URL", url)
        .env("METALCAST_TOKEN", token)
        .env_remove("METALCAST_USER")
        .env_remove("METALCAST_PASSWORD")
        .env_remove("METALCAST_NEW_PASSWORD")
        .output()
        .expect("run metalcast")
}

/// [`metalcast`] with `input` on its stdin.
#[allow(dead_code, reason = "not every test binary that shares this module uses it")]
pub fn metalcast_with_stdin(url: &str, token: &str, args: &[&str], input: &str) -> Output {
    use std::io::Write;
    let mut child = Command::new(env!("CARGO_BIN_EXE_metalcast"))
        .args(args)
        .env("METALCAST_URL", url)
        .env("METALCAST_TOKEN", token)
        .env_remove("METALCAST_USER")
        .env_remove("METALCAST_PASSWORD")
        .env_remove("METALCAST_NEW_PASSWORD")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run metalcast");
    child.stdin.take().expect("stdin").write_all(input.as_bytes()).expect("write stdin");
    child.wait_with_output().expect("wait for metalcast")
}
