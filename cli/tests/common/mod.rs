//! Helpers shared by the CLI's integration tests.

use std::process::{Command, Output};

/// Runs the `metalcast` binary against `url` with API token `token`
/// (no user or password from the environment).
#[allow(dead_code, reason = "not every test binary that shares this module uses it")]
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

/// A signed bundle of `len` pseudo-random kernel bytes named `name`.
#[allow(dead_code, reason = "not every test binary that shares this module uses it")]
pub fn bundle(dir: &std::path::Path, key: &metalcast_image::SecretKey, name: &str, len: usize) -> std::path::PathBuf {
    let kernel = dir.join(format!("{name}.vmlinuz"));
    let mut x = 0x1234_5678_u64;
    let data: Vec<u8> = (0..len)
        .map(|_| {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (x >> 33) as u8
        })
        .collect();
    std::fs::write(&kernel, data).unwrap();
    let spec = metalcast_image::spec_from_inputs(name, Some(kernel), vec![], String::new(), None, None, None).unwrap();
    let out = dir.join(format!("{name}.mcb"));
    metalcast_image::build(&spec, &out, Some(key), &indicatif::ProgressBar::hidden()).unwrap();
    out
}
