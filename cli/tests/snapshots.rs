//! Snapshots (insta) of what the `metalcast` binary prints: every list and
//! show command, as a table (the default) and with `-o json`, and the
//! messages of the commands that create, register or refuse, against one
//! in-process server (SQLite, 127.0.0.1:0) holding a small fixed fleet.
//!
//! Each snapshot is one run of the binary: the command line, its exit code
//! (when not 0), stdout, and stderr (when not empty). What changes from run
//! to run is masked by insta filters (see [`filters`]): times within this
//! century (`YYYY-MM-DDTHH:MM:SSZ`, Unix seconds), ages (`N s ago`), secret
//! tokens, networking action ids, the server's port and the temporary
//! directory. Fixed times (the market's windows in the year 2100) stay.
//!
//! The hardware is a test bench ([`Bench`]): a `redfish` BMC at
//! `http://bench.invalid` answers power on and a fixed console, an
//! `upstream` switch there changes VLANs at once; every other BMC and switch
//! is the real driver. Nothing needs root; nothing leaves loopback.
//!
//! After an intended change of the output, re-bless and review:
//! `INSTA_UPDATE=always cargo test -p metalcast-cli --test snapshots`, then
//! `git diff cli/tests/snapshots` (or `cargo insta test` and `cargo insta
//! review`, where cargo-insta is installed). Without INSTA_UPDATE a
//! mismatch fails and leaves a `.snap.new` beside the snapshot; under CI
//! (`CI` set, as `.ci/run` runs) insta writes nothing and a mismatch or a
//! missing snapshot fails, and this test refuses to run with settings that
//! would accept new output unseen.

mod common;

use std::process::{Command, Output};
use std::sync::Arc;

use metalcast_control_plane::app::deployments::Provision;
use metalcast_control_plane::app::netboot::{DbBackend, NetbootConfig};
use metalcast_control_plane::drivers::parent::Upstream;
use metalcast_control_plane::drivers::{
    Bmc, Chooser, ConsoleStream, DriverFuture, ObmConfig, PowerOp, Standard, Switch, SwitchConfig,
};
use metalcast_control_plane::registry::Registry;
use metalcast_control_plane::{AppState, VlanPool, db};
use metalcast_netboot::Backend as _;
use serde_json::{Value, json};

/// The base URL of the bench's BMCs and switches (RFC 6761: never resolves).
const BENCH: &str = "http://bench.invalid";

/// What the bench BMC's serial console prints.
const CONSOLE: &str = "metalcast runtime 0.1.0 (ttyS0)\nn2 login: \n";

/// The test bench's hardware: bench configurations get the bench, every
/// other one its real driver.
#[derive(Debug)]
struct Bench;

impl Chooser for Bench {
    fn bmc(&self, obm: &ObmConfig, parent: Option<&Arc<Upstream>>) -> Box<dyn Bmc> {
        match obm {
            ObmConfig::Redfish { url, .. } if url == BENCH => Box::new(BenchBmc),
            _ => Standard.bmc(obm, parent),
        }
    }

    fn switch(&self, cfg: &SwitchConfig, parent: Option<&Arc<Upstream>>) -> Box<dyn Switch> {
        match cfg {
            SwitchConfig::Upstream { url, .. } if url == BENCH => Box::new(BenchSwitch),
            _ => Standard.switch(cfg, parent),
        }
    }
}

/// A BMC whose node is on and whose console prints [`CONSOLE`].
struct BenchBmc;

impl Bmc for BenchBmc {
    fn power(&self, _op: PowerOp) -> DriverFuture<'_, ()> {
        Box::pin(async { Ok(()) })
    }

    fn power_status(&self) -> DriverFuture<'_, bool> {
        Box::pin(async { Ok(true) })
    }

    fn set_bootdev<'a>(&'a self, _dev: &'a str) -> DriverFuture<'a, ()> {
        Box::pin(async { Ok(()) })
    }

    fn open_console(&self) -> DriverFuture<'_, ConsoleStream> {
        Box::pin(async { Ok(Box::new(std::io::Cursor::new(CONSOLE.as_bytes())) as ConsoleStream) })
    }
}

/// A switch that changes a port's VLANs at once.
struct BenchSwitch;

impl Switch for BenchSwitch {
    fn add_vlan<'a>(&'a self, _port: &'a str, _vlan: u16, _native: bool) -> DriverFuture<'a, ()> {
        Box::pin(async { Ok(()) })
    }

    fn del_vlan<'a>(&'a self, _port: &'a str, _vlan: u16, _native: bool) -> DriverFuture<'a, ()> {
        Box::pin(async { Ok(()) })
    }
}

/// `s` as a regex that matches it literally.
fn literal(s: &str) -> String {
    s.chars().map(|c| if r"\.+*?()|[]{}^$#&-~".contains(c) { format!("\\{c}") } else { c.to_string() }).collect()
}

/// `[label...]`, `width` characters wide.
fn mask(label: &str, width: usize) -> String {
    format!("[{label}{}]", ".".repeat(width.saturating_sub(label.len() + 2)))
}

/// The filters that mask what changes from run to run (see the module docs).
/// Each keeps the width of what it masks where a table's alignment depends on it.
fn filters(url: &str, tmp: &str) -> Vec<(String, String)> {
    let f = |re: &str, with: &str| (re.to_string(), with.to_string());
    vec![
        (literal(tmp), "[tmp]".into()),
        (literal(url), "[server]".into()),
        // API tokens are secrets, fresh each run.
        f(r"mct_[0-9A-Za-z_\-]+", "mct_[token]"),
        // Now, in UTC RFC 3339 (20 characters, as the mask); the year 2100 stays.
        f(r"\b20\d\d-\d\d-\d\dT\d\d:\d\d:\d\dZ", "YYYY-MM-DDTHH:MM:SSZ"),
        // Now, in Unix seconds or milliseconds.
        f(r"\b1[7-9]\d{8}\b", "[unix]"),
        f(r"\b1[7-9]\d{11}\b", "[unix_ms]"),
        // Ages for humans: `7 s ago` and `12 s ago` both take 8 columns in a table.
        f(r"\b(?:\d s ago ?|\d\d s ago)", "[n]s ago"),
        // Random ids: networking actions' 32 hex digits, tokens' 16; events' nanoseconds and 8.
        f(r"\b[0-9a-f]{32}\b", &mask("action id", 32)),
        f(r"\b[0-9a-f]{16}\b", &mask("token id", 16)),
        f(r"\b\d{20}[0-9a-f]{8}\b", &mask("event id", 28)),
        // Time left until the market's windows in 2100 (a single row's right-aligned cell).
        f(r"\b\d+d\d{1,2}h\b", "[n]d[n]h"),
        // How long the deployment took to fail, and its runtime wait (about 10 s).
        f(r"\b\d{1,2}\.\d\d\b", "[s.ss]"),
        f(r"within \d+s:", "within [n]s:"),
        f(r"mean time to fill  \d+s", "mean time to fill  [n]s"),
        // The same in JSON.
        f(
            r#""(checkin_age_secs|secs_since_checkin|secs_left|elapsed_ms|mean_time_to_fill_secs)": [0-9.]+"#,
            r#""$1": [n]"#,
        ),
    ]
}

/// The `metalcast` binary against `url` as the holder of `token`, with
/// nothing else from this process's environment.
fn run(url: &str, token: &str, args: &[&str], stdin: Option<&str>) -> Output {
    use std::io::Write;
    use std::process::Stdio;
    let mut child = Command::new(env!("CARGO_BIN_EXE_metalcast"))
        .args(args)
        .env_clear()
        .env("METALCAST_URL", url)
        .env("METALCAST_TOKEN", token)
        .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run metalcast");
    if let Some(input) = stdin {
        child.stdin.take().expect("stdin").write_all(input.as_bytes()).expect("write stdin");
    }
    child.wait_with_output().expect("wait for metalcast")
}

/// One run as text: `who$ metalcast ARGS`, the exit code unless 0, stdout,
/// and stderr unless empty.
fn transcript(who: &str, args: &[&str], o: &Output) -> String {
    let quoted: Vec<String> = args
        .iter()
        .map(|a| {
            if !a.is_empty() && a.chars().all(|c| c.is_ascii_alphanumeric() || "-_.,:/=@+".contains(c)) {
                a.to_string()
            } else {
                format!("'{a}'")
            }
        })
        .collect();
    let mut t = format!("{who}$ metalcast {}\n", quoted.join(" "));
    match o.status.code() {
        Some(0) => {}
        code => t.push_str(&format!("[exit {}]\n", code.map_or("signal".into(), |c| c.to_string()))),
    }
    t.push_str(&String::from_utf8_lossy(&o.stdout));
    if !o.stderr.is_empty() {
        t.push_str("[stderr]\n");
        t.push_str(&String::from_utf8_lossy(&o.stderr));
    }
    t
}

/// The users the fleet's commands run as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Who {
    Admin,
    Alice,
    Bob,
}

impl Who {
    fn name(self) -> &'static str {
        match self {
            Who::Admin => "admin",
            Who::Alice => "alice",
            Who::Bob => "bob",
        }
    }
}

/// The server's URL and each user's token; a log of the messages so far.
struct Fleet {
    url: String,
    tokens: [String; 3],
    log: String,
    /// The status id of n2's connect.
    action: String,
}

impl Fleet {
    fn token(&self, who: Who) -> &str {
        &self.tokens[who as usize]
    }

    fn exec(&self, who: Who, args: &[&str], stdin: Option<&str>) -> Output {
        run(&self.url, self.token(who), args, stdin)
    }

    /// Runs a command that must end with exit code `code`; adds it to the log.
    fn say(&mut self, who: Who, args: &[&str], code: i32) -> Output {
        self.say_with(who, args, None, code)
    }

    fn say_with(&mut self, who: Who, args: &[&str], stdin: Option<&str>, code: i32) -> Output {
        let o = self.exec(who, args, stdin);
        let text = transcript(who.name(), args, &o);
        assert_eq!(o.status.code(), Some(code), "{text}");
        self.log.push_str(&text);
        o
    }

    /// Snapshots the log so far as `name` and starts a new one.
    fn messages(&mut self, name: &str) {
        let log = std::mem::take(&mut self.log);
        insta::assert_snapshot!(name, log);
    }

    /// Snapshots a list or show command as `name` (table) and `name_json`
    /// (`-o json`, which must parse); both must succeed.
    fn show(&self, name: &str, who: Who, args: &[&str]) {
        self.show_sorted(name, who, args, None)
    }

    /// [`Self::show`] for a list whose order the test cannot fix (newest
    /// first, at one-second resolution): its rows are sorted first, table
    /// lines by the column `KEY` and JSON items by the field `key`.
    fn show_sorted(&self, name: &str, who: Who, args: &[&str], key: Option<&str>) {
        let mut o = self.exec(who, args, None);
        if let Some(key) = key {
            let mut lines: Vec<&str> = std::str::from_utf8(&o.stdout).expect("utf-8 table").lines().collect();
            let column = lines.first().and_then(|h| h.find(&key.to_uppercase())).expect("the key is a column");
            if lines.len() > 1 {
                lines[1..].sort_by_key(|l| l.get(column..).unwrap_or_default());
            }
            o.stdout = lines.iter().map(|l| format!("{l}\n")).collect::<String>().into_bytes();
        }
        let text = transcript(who.name(), args, &o);
        assert_eq!(o.status.code(), Some(0), "{text}");
        assert!(!o.stdout.is_empty(), "prints nothing: {text}");
        insta::assert_snapshot!(name, text);
        let args: Vec<&str> = args.iter().copied().chain(["-o", "json"]).collect();
        let mut o = self.exec(who, &args, None);
        let text = transcript(who.name(), &args, &o);
        assert_eq!(o.status.code(), Some(0), "{text}");
        let mut v = match serde_json::from_slice::<Value>(&o.stdout) {
            Ok(v) => v,
            Err(e) => panic!("-o json is not JSON ({e}): {text}"),
        };
        if let (Some(key), Some(items)) = (key, v.as_array_mut()) {
            items.sort_by(|a, b| a[key].to_string().cmp(&b[key].to_string()));
            o.stdout = format!("{}\n", serde_json::to_string_pretty(&v).expect("JSON")).into_bytes();
        }
        let text = transcript(who.name(), &args, &o);
        insta::assert_snapshot!(format!("{name}_json"), text);
    }

    /// The JSON answer of a command that must succeed.
    fn json(&self, who: Who, args: &[&str]) -> Value {
        let args: Vec<&str> = args.iter().copied().chain(["-o", "json"]).collect();
        let o = self.exec(who, &args, None);
        assert!(o.status.success(), "{}", transcript(who.name(), &args, &o));
        serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {o:?}"))
    }
}

/// A runtime's check-in from `mac` (with `token`, a netboot one), with a fixed inventory.
async fn checkin(url: &str, mac: &str, token: Option<&str>) {
    let mut c = json!({"node": mac, "role": "runtime", "boot_id": "3f1c0b6e", "version": "0.1.0",
        "address": "10.0.0.9", "uptime_secs": 5.0, "network_secs": 0.1,
        "inventory": {"nics": [{"name": "eth0", "mac": mac}], "cpus": 16, "memory_bytes": 68_719_476_736u64,
                      "disks": [{"name": "vda", "size_bytes": 1_073_741_824u64}], "kernel": "6.1.0"}});
    if let Some(t) = token {
        c["token"] = json!(t);
    }
    let r = metalcast_operator_api::reqwest::Client::new()
        .post(format!("{url}/v1/runtime/checkin"))
        .json(&c)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "checkin of {mac}: {}", r.status());
}

/// A machine netboots in enrollment mode and its runtime checks in: a pending enrollment.
async fn enroll(st: &AppState, url: &str, mac: &str) {
    let backend = DbBackend(st.clone());
    let script_url =
        match backend.decide(mac.parse().unwrap(), metalcast_netboot::Client::Ipxe { uefi: true }).await.unwrap() {
            metalcast_netboot::Decision::Netboot { script_url } => script_url,
            other => panic!("{mac}: {other:?}"),
        };
    let script = metalcast_operator_api::reqwest::get(&script_url).await.unwrap().text().await.unwrap();
    let token = script
        .split_whitespace()
        .find_map(|w| w.strip_prefix("metalcast.token="))
        .unwrap_or_else(|| panic!("a token in {script}"));
    checkin(url, mac, Some(token)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_list_and_show_command() {
    // CI must fail on new output, never take it: insta writes nothing under
    // CI unless told to, so refuse being told to.
    if std::env::var_os("CI").is_some_and(|v| !v.is_empty() && v != "0" && v != "false") {
        let update = std::env::var("INSTA_UPDATE").unwrap_or_default();
        assert!(
            matches!(update.as_str(), "" | "auto" | "no"),
            "INSTA_UPDATE={update} under CI would accept snapshots unseen"
        );
        assert!(std::env::var_os("INSTA_FORCE_PASS").is_none(), "INSTA_FORCE_PASS under CI hides mismatches");
    }

    // The crypto provider reqwest's TLS needs, for the few calls made here directly.
    metalcast_control_plane::install_tls_provider();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let db_url = format!("sqlite://{}?mode=rwc", d.join("snap.db").display());
    // A fixed signing key: the same bundles, hashes and signatures every run.
    std::fs::write(d.join("signer.key"), format!("metalcast-ed25519-secret {}\n", "42".repeat(32))).unwrap();
    let key = metalcast_image::SecretKey::load(&d.join("signer.key")).unwrap();
    let reg = Registry::new(d.join("data"), vec![key.public()]);
    reg.ensure_dirs().unwrap();
    // Netboot (no DHCP or TFTP servers: only its HTTP side and the lease store) with enrollment on.
    for (f, bytes) in [("vmlinuz", &b"kernel"[..]), ("initrd", b"initrd"), ("ipxe.efi", b"MZ efi")] {
        std::fs::write(d.join(f), bytes).unwrap();
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let st = AppState::new(db::connect(&db_url).await.unwrap(), VlanPool { first: 100, last: 199 })
        .with_registry(reg)
        // Deployments need a provisioning address; their nodes have no runtime, so none sends a packet.
        .with_provision(Provision {
            addr: Some(std::net::Ipv4Addr::LOCALHOST),
            public_url: Some(url.clone()),
            ..Default::default()
        })
        .with_drivers(Arc::new(Bench))
        .with_netboot(NetbootConfig {
            base_url: url.clone(),
            kernel: Some(d.join("vmlinuz")),
            initrd: Some(d.join("initrd")),
            cmdline: "ip=dhcp console=ttyS0".into(),
            enroll: true,
            boot_dir: d.to_path_buf(),
            ..Default::default()
        });
    metalcast_control_plane::app::netboot::prepare(&st).await.unwrap();
    let admin =
        metalcast_control_plane::app::tokens::bootstrap_admin(&st, "admin", Some("adminpw".into())).await.unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(metalcast_control_plane::serve(listener, st.clone(), async {
        let _ = stopped.await;
    }));

    let mut settings = insta::Settings::clone_current();
    for (re, with) in filters(&url, &d.display().to_string()) {
        settings.add_filter(&re, with);
    }
    settings.set_prepend_module_to_snapshot(false);
    settings.set_omit_expression(true);

    let admin_token = admin.token.token.clone();
    let rt = tokio::runtime::Handle::current();
    let d = d.to_path_buf();
    let bundles = [common::bundle(&d, &key, "debian", 1 << 20), common::bundle(&d, &key, "alpine", 300 << 10)];
    std::fs::write(
        d.join("id.pub"),
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDo+XGOeX+3vjzikf9qkLbyd736n0DaIyWea5yDqgTHb me@host\n",
    )
    .unwrap();
    tokio::task::spawn_blocking(move || {
        // insta's settings are per thread: the snapshots are taken on this one.
        let _filters = settings.bind_to_scope();
        let mut f = Fleet {
            url: url.clone(),
            tokens: [admin_token, String::new(), String::new()],
            log: String::new(),
            action: String::new(),
        };
        fleet(&mut f, &rt, &st, &d, &bundles);
        list_and_show(&f);
    })
    .await
    .unwrap();

    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
}

/// Builds the fleet through the CLI, snapshotting what each step says.
fn fleet(
    f: &mut Fleet,
    rt: &tokio::runtime::Handle,
    st: &AppState,
    d: &std::path::Path,
    bundles: &[std::path::PathBuf],
) {
    use Who::*;
    // Projects and users; alice and bob get tokens of their own.
    f.say(Admin, &["project", "create", "alpha"], 0);
    f.say(Admin, &["project", "create", "beta"], 0);
    f.say_with(Admin, &["user", "create", "alice", "--password-stdin"], Some("alicepw\n"), 0);
    f.say_with(Admin, &["user", "create", "bob", "--password-stdin"], Some("bobpw\n"), 0);
    f.say_with(Admin, &["user", "create", "carol", "--admin", "--password-stdin"], Some("carolpw\n"), 0);
    f.say(Admin, &["user", "set-admin", "carol", "no"], 0);
    f.say(Admin, &["user", "add-project", "alice", "alpha"], 0);
    f.say(Admin, &["user", "add-project", "bob", "beta"], 0);
    for (who, pw) in [(Alice, "alicepw"), (Bob, "bobpw")] {
        let o = run(&f.url, "", &["--user", who.name(), "--password", pw, "-o", "json", "token", "create"], None);
        assert!(o.status.success(), "{o:?}");
        let t: Value = serde_json::from_slice(&o.stdout).unwrap();
        f.tokens[who as usize] = t["token"].as_str().expect("a token").to_string();
    }
    f.messages("messages_projects_users");

    // Nodes: n1 without a BMC, n2 on the bench BMC, n3 free; NICs and metadata.
    f.say(Admin, &["node", "register", "n1", "--obm", r#"{"type":"none"}"#], 0);
    let bench_bmc = format!(r#"{{"type":"redfish","url":"{BENCH}","system":"n2"}}"#);
    f.say(Admin, &["node", "register", "n2", "--obm", &bench_bmc], 0);
    f.say(Admin, &["node", "register", "n3", "--obm", r#"{"type":"none"}"#], 0);
    for (node, nic, mac) in [
        ("n1", "eth0", "52:54:00:00:00:11"),
        ("n1", "eth1", "52:54:00:00:00:12"),
        ("n2", "eth0", "52:54:00:00:00:21"),
        ("n3", "eth0", "52:54:00:00:00:31"),
    ] {
        f.say(Admin, &["node", "nic", "add", node, nic, mac], 0);
    }
    f.say(Admin, &["node", "metadata", "set", "n1", "rack", "rack 4"], 0);
    f.say(Admin, &["node", "metadata", "set", "n1", "slots", "4"], 0);
    f.say(Admin, &["node", "metadata", "set", "n1", "tags", r#"["gpu","ssd"]"#], 0);
    f.say(Admin, &["node", "metadata", "set", "n1", "owner", r#"{"team":"infra","ticket":42}"#], 0);
    f.say(Admin, &["project", "node", "add", "alpha", "n1"], 0);
    f.say(Admin, &["project", "node", "add", "beta", "n2"], 0);
    f.say(Admin, &["quota", "set", "alpha", "--max-nodes", "1", "--max-images", "1", "--max-image-mib", "64"], 0);
    // Already in the project: a conflict (exit 6), not the quota of 1 node.
    f.say(Admin, &["project", "node", "add", "alpha", "n1"], 6);
    // A free node beyond the quota: that is the quota.
    f.say(Admin, &["project", "node", "add", "alpha", "n3"], 4);
    f.say(Admin, &["node", "show", "ghost"], 5);
    f.say(Admin, &["node", "register", "n4", "--obm", "{"], 1);
    f.messages("messages_nodes");

    // Networks, and switches: the bench's, a real upstream one whose parent does not
    // answer, and the types whose bridge or namespace must exist (none here).
    f.say(Admin, &["network", "create", "pub", "--owner", "admin", "--net-id", "150"], 0);
    f.say(Admin, &["network", "create", "alpha-net", "--owner", "alpha", "--access", "alpha"], 0);
    f.say(Admin, &["network", "create", "beta-net", "--owner", "beta", "--access", "beta"], 0);
    f.say(Admin, &["network", "grant", "alpha-net", "beta"], 0);
    let bench = ["--type", "upstream", "--parent-url", BENCH, "--parent-project", "rack1", "--parent-node", "tor1"];
    f.say(Admin, &[&["switch", "register", "tor1"][..], &bench].concat(), 0);
    let parent = ["--parent-url", "http://127.0.0.1:1", "--parent-project", "pa", "--parent-node", "n9"];
    f.say(Admin, &[&["switch", "register", "up1", "--type", "upstream"][..], &parent].concat(), 0);
    f.say(Admin, &["switch", "register", "br1", "--bridge", "mcnobr9"], 7);
    f.say(Admin, &["switch", "register", "vb1", "--type", "linux-vlan-bridges", "--netns", "mcnons9"], 7);
    f.say(Admin, &["switch", "port", "add", "tor1", "te1"], 0);
    f.say(Admin, &["switch", "port", "add", "tor1", "te2"], 0);
    f.say(Admin, &["switch", "port", "add", "up1", "p9"], 0);
    f.say(Admin, &["switch", "port", "connect", "tor1", "te1", "n1", "eth0"], 0);
    f.say(Admin, &["switch", "port", "connect", "tor1", "te2", "n2", "eth0"], 0);
    f.say(Alice, &["node", "connect", "n1", "eth0", "alpha-net", "--wait"], 0);
    let o = f.say(Bob, &["node", "connect", "n2", "eth0", "beta-net", "--wait", "--timeout", "30"], 0);
    let done = String::from_utf8_lossy(&o.stdout).into_owned();
    f.action = done.split_whitespace().nth(1).expect("action ID done: ...").to_string();
    f.messages("messages_networks_switches");

    // Images, keypairs, quotas.
    let (debian, alpine) = (bundles[0].to_str().unwrap(), bundles[1].to_str().unwrap());
    f.say(Alice, &["image", "upload", "debian", debian, "--project", "alpha"], 0);
    f.say(Alice, &["image", "upload", "debian2", debian, "--project", "alpha"], 4);
    f.say(Admin, &["image", "upload", "alpine", alpine], 0);
    let pubkey = d.join("id.pub");
    f.say(Alice, &["keypair", "add", "laptop", pubkey.to_str().unwrap(), "--project", "alpha"], 0);
    // Below what alpha uses (1 node, 1 image): refused with the way out.
    f.say(Admin, &["quota", "set", "alpha", "--max-nodes", "0", "--max-images", "0"], 6);
    f.say(Admin, &["quota", "set", "beta", "--max-nodes", "4"], 0);
    f.messages("messages_images_quotas");

    // A deployment to beta's n2, which has no runtime: it fails at once (within the 1 s timeout).
    f.say(Bob, &["deploy", "--image", "alpine", "--project", "beta", "--timeout", "1", "--no-wait"], 0);
    f.say(Bob, &["deploy", "watch", "1"], 8);
    f.messages("messages_deploy");

    // n1's runtime checks in; three machines netboot in enrollment mode (one is
    // rejected, one accepted as node e1); n3 takes a full-mode address lease;
    // n1 is to boot its disk; n2's console is captured.
    rt.block_on(async {
        checkin(&f.url, "52:54:00:00:00:11", None).await;
        enroll(st, &f.url, "52:54:00:bb:00:09").await;
        enroll(st, &f.url, "52:54:00:bb:00:10").await;
        enroll(st, &f.url, "52:54:00:bb:00:11").await;
        let ip = |s: &str| s.parse::<std::net::Ipv4Addr>().unwrap();
        let pool = metalcast_netboot::Pool {
            start: ip("10.9.0.100"),
            end: ip("10.9.0.120"),
            netmask: ip("255.255.255.0"),
            router: None,
            dns: vec![],
            lease_secs: 3600,
            reservations: vec![],
        };
        let b = DbBackend(st.clone());
        let mac: metalcast_netboot::Mac = "52:54:00:00:00:31".parse().unwrap();
        let lease = b.lease_offer(mac, None, &pool).await.unwrap().expect("an address");
        b.lease_commit(mac, lease.ip, &pool).await.unwrap().expect("bound");
    });
    f.say(Admin, &["enrollment", "reject", "52:54:00:bb:00:10"], 0);
    f.say(Admin, &["enrollment", "accept", "52:54:00:bb:00:11", "--node", "e1"], 0);
    f.say(Alice, &["node", "boot", "n1", "local"], 0);
    f.say(Bob, &["node", "console", "start", "n2"], 0);
    f.messages("messages_runtime_netboot");

    // The market: alice offers n1 (buy-now, then an auction) in 2100; bob buys and bids.
    f.say(Admin, &["credits", "mint", "beta", "50000", "--memo", "welcome", "--idempotency-key", "mint-1"], 0);
    #[rustfmt::skip]
    f.say(Alice, &["market", "offer", "create", "n1", "--project", "alpha", "--start", "4102444800",
        "--end", "4102459200", "--reserve", "1000", "--buy-now", "1200"], 0);
    #[rustfmt::skip]
    f.say(Alice, &["market", "offer", "create", "n1", "--project", "alpha", "--start", "4102531200",
        "--end", "4102545600", "--reserve", "900", "--closes", "4102488000", "--audience", "beta", "--notice", "600"], 0);
    f.say(Bob, &["market", "buy", "1", "--project", "beta", "--idempotency-key", "buy-1"], 0);
    // The same key again: the first answer, replayed.
    f.say(Bob, &["market", "buy", "1", "--project", "beta", "--idempotency-key", "buy-1"], 0);
    f.say(Bob, &["market", "bid", "place", "2", "--project", "beta", "--max", "1500"], 0);
    #[rustfmt::skip]
    f.say(Bob, &["market", "autobuy", "create", "--project", "beta", "--filter", "cpus>=999", "--target", "1",
        "--max", "1", "--daily-budget", "10", "--hours", "1"], 0);
    #[rustfmt::skip]
    f.say(Bob, &["credits", "transfer", "--from", "beta", "--to", "alpha", "12.5", "--memo", "thanks"], 0);
    f.messages("messages_market");
}

/// Every list and show command, as a table and as JSON.
fn list_and_show(f: &Fleet) {
    use Who::*;
    f.show("whoami", Alice, &["whoami"]);
    f.show("project_list", Admin, &["project", "list"]);
    f.show("project_networks", Alice, &["project", "networks", "alpha"]);
    f.show("project_node_list", Alice, &["project", "node", "list", "alpha"]);

    f.show("node_list", Admin, &["node", "list"]);
    f.show("node_list_free", Admin, &["node", "list", "free"]);
    f.show("node_list_names", Admin, &["node", "list", "--names"]);
    f.show("node_list_long", Admin, &["node", "list", "--long"]);
    f.show("node_list_project", Admin, &["node", "list", "--project", "beta", "--state", "failed"]);
    f.show("node_show", Admin, &["node", "show", "n1"]);
    f.show("node_runtime", Alice, &["node", "runtime", "n1"]);
    f.show("node_runtime_never", Admin, &["node", "runtime", "n3"]);
    f.show("node_power_status", Bob, &["node", "power", "status", "n2"]);
    f.show("node_boot", Alice, &["node", "boot", "n1"]);
    // The bench console is captured by a task of the server: wait for its text.
    for _ in 0..100 {
        if f.json(Bob, &["node", "console", "show", "n2"]).as_str().is_some_and(|s| s.contains("login")) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    f.show("node_console_show", Bob, &["node", "console", "show", "n2"]);

    f.show("network_list", Admin, &["network", "list"]);
    f.show("network_show", Alice, &["network", "show", "alpha-net"]);
    f.show("network_attachments", Alice, &["network", "attachments", "alpha-net"]);

    f.show("switch_list", Admin, &["switch", "list"]);
    f.show("switch_show", Admin, &["switch", "show", "tor1"]);
    f.show("switch_port_show", Admin, &["switch", "port", "show", "tor1", "te1"]);

    f.show("user_list", Admin, &["user", "list"]);
    f.show("user_show", Admin, &["user", "show", "alice"]);
    f.show("token_list", Alice, &["token", "list"]);
    f.show("events", Admin, &["events"]);
    f.show("events_project", Alice, &["events"]);
    f.show("events_node", Admin, &["events", "--node", "n1"]);
    // The networking action of n2's connect (its id is masked in the snapshots).
    f.show("action", Bob, &["action", &f.action]);

    f.show("image_list", Alice, &["image", "list"]);
    f.show("image_show", Alice, &["image", "show", "debian"]);
    f.show("keypair_list", Alice, &["keypair", "list"]);
    f.show("keypair_show", Alice, &["keypair", "show", "laptop"]);
    f.show("quota_show", Alice, &["quota", "show", "alpha"]);

    f.show("deploy_list", Bob, &["deploy", "list"]);
    f.show("deploy_show", Bob, &["deploy", "show", "1"]);

    f.show_sorted("enrollment_list", Admin, &["enrollment", "list"], Some("mac"));
    f.show("enrollment_show", Admin, &["enrollment", "show", "52:54:00:bb:00:09"]);
    f.show("netboot_leases", Admin, &["netboot", "leases"]);

    f.show("market_offer_list", Bob, &["market", "offer", "list"]);
    f.show("market_offer_show", Bob, &["market", "offer", "show", "2"]);
    f.show("market_bid_list", Bob, &["market", "bid", "list"]);
    // Sealed: until its auction settles, the offer's owner sees none of its bids.
    f.show("market_bid_list_offer", Alice, &["market", "bid", "list", "--offer", "2"]);
    f.show("market_lease_list", Bob, &["market", "lease", "list"]);
    f.show("market_lease_show", Alice, &["market", "lease", "show", "1"]);
    f.show("market_autobuy_list", Bob, &["market", "autobuy", "list"]);
    f.show("market_stats", Admin, &["market", "stats"]);
    f.show("credits_balance", Bob, &["credits", "balance", "beta"]);
    f.show("credits_balance_all", Admin, &["credits", "balance"]);
    f.show("credits_history", Admin, &["credits", "history"]);
    f.show("credits_audit", Admin, &["credits", "audit"]);
}
