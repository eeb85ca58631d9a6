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
        .output()
        .expect("run metalcast")
}
