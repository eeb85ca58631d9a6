//! The `ipmi` BMC: `ipmitool` over IPMI-over-LAN (`lanplus` by default);
//! the password goes through `IPMI_PASSWORD` (`-E`), never the command line.

use tokio::process::Command;

use super::{Bmc, ConsoleStream, DRIVER_TIMEOUT, DriverError, DriverFuture, PowerOp, run};

/// An IPMI BMC.
#[derive(Debug, Clone)]
pub(super) struct Ipmi {
    pub(super) host: String,
    pub(super) port: u16,
    pub(super) user: String,
    pub(super) password: String,
    /// `lanplus` or `lan`.
    pub(super) interface: String,
    /// IPMI 2.0 cipher suite id (`ipmitool -C`).
    pub(super) cipher_suite: Option<u8>,
}

impl Bmc for Ipmi {
    fn power(&self, op: PowerOp) -> DriverFuture<'_, ()> {
        Box::pin(async move {
            let verb = match op {
                PowerOp::On => "on",
                PowerOp::Off => "off",
                PowerOp::Cycle => {
                    // `chassis power cycle` fails on a powered-off chassis;
                    // HIL semantics say cycle turns an off node on.
                    if !self.power_status().await? { "on" } else { "cycle" }
                }
            };
            self.ipmitool(&["chassis", "power", verb]).await.map(drop)
        })
    }

    fn power_status(&self) -> DriverFuture<'_, bool> {
        Box::pin(async move {
            let out = self.ipmitool(&["chassis", "power", "status"]).await?;
            parse_ipmi_power(&out)
        })
    }

    fn set_bootdev<'a>(&'a self, dev: &'a str) -> DriverFuture<'a, ()> {
        Box::pin(async move { self.ipmitool(&["chassis", "bootdev", dev]).await.map(drop) })
    }

    fn open_console(&self) -> DriverFuture<'_, ConsoleStream> {
        Box::pin(async move {
            // A session left active (e.g. by a crashed server) would make
            // activate fail; end it first. Failure here is expected when
            // no session is active.
            let _ = self.ipmitool(&["sol", "deactivate"]).await;
            self.sol_activate().await
        })
    }
}

impl Ipmi {
    /// `ipmitool ... sol activate` as a child process whose stdout is the
    /// console. Its stdin is a pipe that stays open and silent (EOF would end
    /// the session); dropping the stream kills the process. Returns once
    /// ipmitool reports the session operational (its banner line is not part
    /// of the console), or fails if it exits first.
    async fn sol_activate(&self) -> Result<ConsoleStream, DriverError> {
        use tokio::io::AsyncBufReadExt;
        let (args, password) = self.ipmitool_args(&["sol", "activate"]);
        let mut child = Command::new("ipmitool")
            .args(&args)
            .env("IPMI_PASSWORD", password)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .map_err(|source| DriverError::Spawn { program: "ipmitool".into(), source })?;
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().ok_or_else(|| DriverError::Protocol("ipmitool: no stdout".into()))?;
        let mut stdout = tokio::io::BufReader::new(stdout);
        let mut banner = String::new();
        let read = tokio::time::timeout(DRIVER_TIMEOUT, stdout.read_line(&mut banner))
            .await
            .map_err(|_| DriverError::Timeout)?
            .map_err(|e| DriverError::Protocol(format!("ipmitool sol: {e}")))?;
        if read == 0 || !banner.contains("SOL Session operational") {
            let status = child.wait().await.map(|s| s.to_string()).unwrap_or_default();
            return Err(DriverError::Command {
                program: "ipmitool".into(),
                status,
                stderr: format!("sol activate failed: {}", banner.trim()),
            });
        }
        Ok(Box::new(ChildConsole { _child: child, _stdin: stdin, stdout }))
    }

    fn ipmitool_args(&self, cmd: &[&str]) -> (Vec<String>, String) {
        let port = self.port.to_string();
        let mut args: Vec<String> = ["-I", &self.interface, "-H", &self.host, "-p", &port, "-U", &self.user, "-E"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        if let Some(cs) = self.cipher_suite {
            args.extend(["-C".to_string(), cs.to_string()]);
        }
        args.extend(cmd.iter().map(|s| s.to_string()));
        (args, self.password.clone())
    }

    async fn ipmitool(&self, cmd: &[&str]) -> Result<String, DriverError> {
        let (args, password) = self.ipmitool_args(cmd);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        // -E: password from IPMI_PASSWORD, so it never shows up in `ps`.
        run("ipmitool", &args, &[("IPMI_PASSWORD", &password)]).await
    }
}

/// A console read from a child process's stdout; the child is killed when
/// this is dropped.
struct ChildConsole {
    _child: tokio::process::Child,
    _stdin: Option<tokio::process::ChildStdin>,
    stdout: tokio::io::BufReader<tokio::process::ChildStdout>,
}

impl tokio::io::AsyncRead for ChildConsole {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.stdout).poll_read(cx, buf)
    }
}

fn parse_ipmi_power(out: &str) -> Result<bool, DriverError> {
    let out = out.trim();
    if out.ends_with(" on") {
        Ok(true)
    } else if out.ends_with(" off") {
        Ok(false)
    } else {
        Err(DriverError::Protocol(format!("unexpected ipmitool output {out:?}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipmi_power_output_parsing() {
        assert!(parse_ipmi_power("Chassis Power is on\n").unwrap());
        assert!(!parse_ipmi_power("Chassis Power is off").unwrap());
        assert!(parse_ipmi_power("garbage").is_err());
    }
}
