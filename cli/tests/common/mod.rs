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

/// `metalcast demo --keep-fabric` running until [`KeptDemo::stop`]: where
/// its control plane is.
#[allow(dead_code, reason = "not every test binary that shares this module uses it")]
pub struct KeptDemo {
    child: std::process::Child,
    /// The control plane's URL.
    pub url: String,
    /// Its network namespace.
    pub netns: String,
    /// The file holding the admin's token.
    pub token_file: String,
}

#[allow(dead_code, reason = "not every test binary that shares this module uses it")]
impl KeptDemo {
    /// Starts the demo with `args` (plus `--keep-fabric`) and waits up to
    /// 300 s for its "demo kept up" line.
    pub fn start(args: &[&str]) -> KeptDemo {
        use std::io::BufRead;
        let mut child = Command::new(env!("CARGO_BIN_EXE_metalcast"))
            .arg("demo")
            .args(args)
            .arg("--keep-fabric")
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("running metalcast demo --keep-fabric");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(300);
        let kept = loop {
            match rx.recv_timeout(deadline.saturating_duration_since(std::time::Instant::now())) {
                Ok(l) if l.starts_with("demo kept up:") => break l,
                Ok(_) => continue,
                Err(e) => {
                    let _ = child.kill();
                    panic!("no 'demo kept up' line within 300 s: {e}");
                }
            }
        };
        let words: Vec<&str> = kept.split_whitespace().collect();
        let after = |k: &str| words.iter().position(|w| *w == k).map(|i| words[i + 1].to_string()).unwrap();
        KeptDemo { url: after("url"), netns: after("netns"), token_file: after("token-file"), child }
    }

    /// The admin's API token.
    pub fn token(&self) -> String {
        std::fs::read_to_string(&self.token_file).unwrap().trim().to_string()
    }

    /// SIGTERM, then waits up to 60 s for the demo to remove what it made and exit.
    pub fn stop(mut self) -> std::process::ExitStatus {
        assert!(Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status().unwrap().success());
        let t = std::time::Instant::now();
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return s;
            }
            if t.elapsed() > std::time::Duration::from_secs(60) {
                let _ = self.child.kill();
                panic!("the demo did not stop within 60 s of SIGTERM");
            }
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
    }
}
