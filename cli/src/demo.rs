//! `metalcast demo`: the README's main job. Stands up a complete deployment
//! fabric on this machine and deploys through the control plane, the way an
//! operator would:
//! - a namespace fabric (a bridge with IGMP snooping, the control plane's
//!   namespace and N node namespaces, eBPF loss on every node link), plus
//!   optional QEMU guest nodes on taps of the same bridge (`--qemu`);
//! - the control plane (`metalcast serve`, SQLite) on the provisioning
//!   network, with an admin token from `metalcast admin bootstrap`;
//! - the real node runtime on every node (`metalcast-node agent` in the
//!   namespaces; the bootstrap initramfs booted by every guest);
//! - a signed sample image (with `--qemu`: the Debian kernel and an initramfs
//!   whose init prints a marker) uploaded to the registry, and a deployment
//!   of it to every node of the `demo` project by RaptorQ multicast, with
//!   live progress and the summary table;
//! - with `--qemu`: each guest's marker on its console after kexec, its
//!   metadata served for it alone, and with `--reclaim` the first guest
//!   reclaimed by kexec back into the runtime and found in the free pool.
//!
//! Everything it made is removed when it ends.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use metalcast_fabric::qemu::{Guest, GuestBoot, GuestSpec};
use metalcast_fabric::{Fabric, Flow, LossConfig};
use metalcast_image::SecretKey;
use metalcast_operator_api::v0::{NodeFilter, NodeRegister};
use metalcast_operator_api::v1::{HandoverSpec, UploadQuery, WipeSpec};
use metalcast_operator_api::{Auth, Client};

use crate::demo_crash::{Drill, Killed, ServerSpec};
use serde_json::json;

/// Arguments of `metalcast demo`.
#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Namespace nodes to deploy to.
    #[arg(long, default_value_t = 8)]
    pub nodes: usize,
    /// QEMU guest nodes (TCG) that netboot the runtime from metalcast serve
    /// (its own DHCP, TFTP and HTTP iPXE: no dnsmasq) and really kexec into
    /// the image. Needs qemu-system-x86, ipxe and the Debian kernel from
    /// `node-runtime/fetch-kernel.sh`; builds a static runtime with cargo.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..=4))]
    pub qemu: u8,
    /// After the deployment, reclaim the first guest: kexec back into the
    /// runtime, zero its disk (checked from the host: the disk image reads
    /// back as zeroes), and check it is in the free pool.
    #[arg(long, requires = "qemu")]
    pub reclaim: bool,
    /// After the deployment, trade the last guest on the marketplace: project
    /// demo offers it (interruptible, wiped between leases), project buyer
    /// buys it, sees it and deploys its own image to it by kexec; then demo
    /// recalls the lease: the guest is reclaimed by kexec, its disk zeroed
    /// (checked from the host), it is back in demo, and buyer gets 403 on it.
    /// With `--reclaim` it needs `--qemu 2` (the first guest is reclaimed).
    #[arg(long, requires = "qemu")]
    pub market: bool,
    /// Size of the sample disk image, MiB (a quarter of it is data, the rest holes).
    #[arg(long, default_value_t = 64)]
    pub disk_mib: u64,
    /// Random packet loss on every namespace node's link, percent (injected by eBPF).
    #[arg(long, default_value_t = 1.0)]
    pub loss: f64,
    /// Send rate cap, Mbit/s (0: none; the rate adapts to the nodes' loss below it).
    #[arg(long, default_value_t = 0)]
    pub rate_mbit: u64,
    /// Keep the work directory (bundles, keys, database, guest consoles) instead of deleting it.
    #[arg(long)]
    pub keep: bool,
    /// After the demo, leave everything up (fabric, control plane, node
    /// runtimes, guests) for experiments until Ctrl-C or SIGTERM, printing how
    /// to reach the control plane; then remove it all as usual.
    #[arg(long, conflicts_with = "kill_server_at")]
    pub keep_fabric: bool,
    /// Crash drill instead of the plain deployment: kill the control plane
    /// with SIGKILL when this share of the blocks (percent) is through,
    /// restart it at once, and require that it resumes the session: every
    /// node `verified`, none having taken in 1.3 times the image. Use with
    /// `--rate-mbit` so the deployment lasts long enough to be killed.
    #[arg(long, value_parser = clap::value_parser!(u8).range(1..=99), conflicts_with = "qemu")]
    pub kill_server_at: Option<u8>,
    /// Rounds of the crash drill.
    #[arg(long, default_value_t = 1, requires = "kill_server_at")]
    pub rounds: u32,
    /// In the crash drill, pause the owning replica (SIGSTOP) instead of
    /// killing it, until another replica has taken the deployment over (past
    /// the dead timeout), then let it go on (SIGCONT): its first write of the
    /// deployment must change nothing and it must stop. Needs `--replicas 2`
    /// or more.
    #[arg(long, requires = "kill_server_at")]
    pub pause_server: bool,
    /// Control-plane replicas (`metalcast serve` processes on one PostgreSQL
    /// database, each on its own port; the nodes are given every replica's
    /// URL). With `--kill-server-at`, each round's replica is killed and
    /// another one must take the deployment over. Needs `--database-url`.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=5), requires = "database_url")]
    pub replicas: u8,
    /// A PostgreSQL server to run the control plane on instead of SQLite
    /// (`postgres://user:password@host[:port]/database`, a role with
    /// CREATEDB): the demo creates a fresh database there, and drops it at
    /// the end unless `--keep`.
    #[arg(long, conflicts_with = "qemu")]
    pub database_url: Option<String>,
}

const PORT: u16 = 7000;
const MARKER: &str = "metalcast-demo-tenant";
fn sample_disk(dir: &Path, disk_mib: u64) -> anyhow::Result<PathBuf> {
    use std::os::unix::fs::FileExt;
    let disk = dir.join("disk.raw");
    let f = std::fs::File::create(&disk).context("creating the sample disk")?;
    f.set_len(disk_mib << 20)?;
    let islands = 4u64;
    let island = (disk_mib << 20) / 4 / islands;
    for i in 0..islands {
        f.write_all_at(&pseudo_random(island as usize, i + 2), i * (disk_mib << 20) / islands)?;
    }
    Ok(disk)
}

fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut v = Vec::with_capacity(len + 8);
    while v.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.extend_from_slice(&x.to_le_bytes());
    }
    v.truncate(len);
    v
}

/// `metalcast-node` next to this binary.
fn node_binary() -> anyhow::Result<PathBuf> {
    let me = std::env::current_exe().context("locating metalcast")?;
    let p = me.with_file_name("metalcast-node");
    ensure!(p.exists(), "{} not found: build the workspace (cargo build --release)", p.display());
    Ok(p)
}

struct Images {
    /// The image deployed to every node.
    tenant: PathBuf,
    /// The runtime image guests boot from and are reclaimed into (with `--qemu`).
    runtime: Option<PathBuf>,
    /// (kernel, initrd) the guests boot first.
    guest_boot: Option<(PathBuf, PathBuf)>,
}

fn build_bundle(
    name: &str,
    kernel: PathBuf,
    initrds: Vec<PathBuf>,
    cmdline: String,
    disk: Option<PathBuf>,
    key: &SecretKey,
    out: &Path,
) -> anyhow::Result<()> {
    let spec = metalcast_image::spec_from_inputs(name, Some(kernel), initrds, cmdline, None, disk, None)?;
    let b = metalcast_image::build(&spec, out, Some(key), &indicatif::ProgressBar::hidden())
        .with_context(|| format!("building {}", out.display()))?;
    eprintln!("   {name}: {} MiB of parts -> {} MiB bundle", b.input_bytes >> 20, b.bundle_bytes >> 20);
    Ok(())
}

fn images(a: &DemoArgs, dir: &Path, key: &SecretKey, pubkey: &Path, cp_url: &str) -> anyhow::Result<Images> {
    let disk = sample_disk(dir, a.disk_mib)?;
    let tenant = dir.join("demo.mcb");
    if a.qemu == 0 {
        eprintln!("== building a signed sample image: a kernel and a {} MiB sparse disk", a.disk_mib);
        let kernel = dir.join("vmlinuz");
        let host_kernel = std::fs::read_dir("/boot")
            .ok()
            .and_then(|d| d.filter_map(Result::ok).map(|e| e.path()).find(|p| p.to_string_lossy().contains("vmlinuz")));
        if host_kernel.and_then(|k| std::fs::copy(k, &kernel).ok()).is_none() {
            std::fs::write(&kernel, pseudo_random(8 << 20, 1)).context("writing a sample kernel")?;
        }
        build_bundle("demo", kernel, vec![], "console=ttyS0".into(), Some(disk), key, &tenant)?;
        return Ok(Images { tenant, runtime: None, guest_boot: None });
    }
    eprintln!("== building the bootstrap (runtime) image and a tenant image with the Debian kernel");
    metalcast_fabric::qemu::qemu().map_err(anyhow::Error::msg)?;
    ensure!(
        Path::new("/usr/lib/ipxe/undionly.kpxe").is_file(),
        "--qemu netboots the guests through metalcast serve: it needs Debian's ipxe package (apt-get install ipxe)"
    );
    let (vmlinuz, modules) = metalcast_fabric::qemu::kernel().map_err(anyhow::Error::msg)?;
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).parent().context("workspace directory")?;
    eprintln!("   building the static runtime (cargo)");
    let node_static = metalcast_fabric::qemu::static_node(workspace).map_err(anyhow::Error::msg)?;
    let initramfs = |name: &str| -> anyhow::Result<PathBuf> {
        let out = dir.join(name);
        metalcast_image::initramfs::build_initramfs(
            &metalcast_image::initramfs::InitramfsSpec {
                init: node_static.clone(),
                modules_root: Some(modules.clone()),
                modules: metalcast_fabric::qemu::GUEST_MODULES.iter().map(|m| m.to_string()).collect(),
                files: vec![(pubkey.to_path_buf(), "/etc/metalcast/trusted/site.pub".into())],
                programs: Vec::new(),
                zstd_level: 9,
            },
            &out,
        )
        .with_context(|| format!("building {name}"))?;
        Ok(out)
    };
    let common = format!("console=ttyS0 quiet panic=-1 ip=dhcp metalcast.cp={cp_url}");
    let boot_initrd = initramfs("bootstrap.img")?;
    let runtime = dir.join("runtime.mcb");
    build_bundle("runtime", vmlinuz.clone(), vec![boot_initrd.clone()], common.clone(), None, key, &runtime)?;
    let tenant_initrd = initramfs("tenant.img")?;
    build_bundle(
        "demo",
        vmlinuz.clone(),
        vec![tenant_initrd],
        format!("{common} metalcast.role=tenant metalcast.marker={MARKER}"),
        Some(disk),
        key,
        &tenant,
    )?;
    Ok(Images { tenant, runtime: Some(runtime), guest_boot: Some((vmlinuz, boot_initrd)) })
}

/// Runs the demo.
pub fn run(a: DemoArgs) -> anyhow::Result<()> {
    metalcast_fabric::bpf_capable().context("the demo builds a network fabric on this machine: run it as root")?;
    let t_start = Instant::now();
    let work = tempfile::Builder::new().prefix("metalcast-demo-").tempdir_in("/var/tmp")?;
    let dir = work.path().to_path_buf();
    eprintln!("== work directory {}", dir.display());
    let made_db = std::sync::Mutex::new(None);
    let result = run_in(&a, &dir, &made_db);
    if let Some((server, name)) = made_db.into_inner().unwrap_or_else(|p| p.into_inner()) {
        if a.keep {
            eprintln!("== kept database {name}");
        } else {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            if let Err(e) = rt.block_on(metalcast_control_plane::db::drop_postgres_database(&server, &name)) {
                eprintln!("== could not drop database {name}: {e}");
            }
        }
    }
    if a.keep {
        eprintln!("== kept {}", work.keep().display());
    }
    eprintln!("== done in {:.1}s; everything the demo made is removed", t_start.elapsed().as_secs_f64());
    result
}

/// A database the demo made: (server URL, name), dropped at the end.
type MadeDb = std::sync::Mutex<Option<(String, String)>>;

fn run_in(a: &DemoArgs, dir: &Path, dropped_db: &MadeDb) -> anyhow::Result<()> {
    let me = std::env::current_exe().context("locating metalcast")?;
    let key = SecretKey::generate();
    key.save(&dir.join("site"))?;
    let pubkey = dir.join("site.pub");

    let guests: Vec<String> = (0..a.qemu).map(|i| format!("g{i}")).collect();
    eprintln!(
        "== fabric: bridge with IGMP snooping, the control plane, {} namespace nodes ({}% loss per link){}",
        a.nodes,
        a.loss,
        if guests.is_empty() { String::new() } else { format!(", {} QEMU guests", guests.len()) }
    );
    let mut fb = Fabric::builder().receivers(a.nodes);
    for g in &guests {
        fb = fb.tap(g.clone());
    }
    let fabric = fb.build().context("building the namespace fabric")?;
    for n in fabric.receivers() {
        n.set_loss(Flow::ToHost, LossConfig::random_drop_percent(a.loss).udp_only())?;
    }
    let cp_ip = fabric.sender().ipv4();
    let cp_url = format!("http://{cp_ip}:{PORT}");

    let imgs = images(a, dir, &key, &pubkey, &cp_url)?;
    let node_bin = if a.qemu > 0 {
        let ws = Path::new(env!("CARGO_MANIFEST_DIR")).parent().context("workspace directory")?;
        metalcast_fabric::qemu::static_node(ws).map_err(anyhow::Error::msg)?
    } else {
        node_binary()?
    };

    let replicas = usize::from(a.replicas.max(1));
    let urls: Vec<String> = (0..replicas).map(|i| format!("http://{cp_ip}:{}", PORT + i as u16)).collect();
    // What the nodes are told: every replica, tried in turn.
    let cp_list = urls.join(",");
    let (db, serve_db) = match &a.database_url {
        None => {
            eprintln!(
                "== control plane: metalcast serve on {cp_url} (SQLite), admin token from metalcast admin bootstrap"
            );
            let db = format!("sqlite://{}?mode=rwc", dir.join("metalcast.db").display());
            (db.clone(), db)
        }
        Some(server) => {
            let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
            let name = format!("metalcast_demo_{}_{}", std::process::id(), nanos % 1_000_000_000);
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            let db = rt
                .block_on(metalcast_control_plane::db::create_postgres_database(server, &name))
                .with_context(|| format!("creating database {name}"))?;
            *dropped_db.lock().unwrap_or_else(|p| p.into_inner()) = Some((server.clone(), name.clone()));
            // The replicas reach the database through a Unix socket relayed to its TCP address.
            let (addr, port) = crate::demo_crash::postgres_addr(server)?;
            let sock = dir.join("pg");
            crate::demo_crash::relay_postgres(&sock, port, addr)?;
            let serve_db = format!("{db}?host={}", sock.display());
            eprintln!(
                "== control plane: {replicas} metalcast serve replica(s) on {} (PostgreSQL database {name}), admin \
                 token from metalcast admin bootstrap",
                urls.join(" ")
            );
            (db, serve_db)
        }
    };
    let out = std::process::Command::new(&me)
        .args(["admin", "bootstrap", "--database-url", &db, "--admin-user", "admin"])
        .output()
        .context("metalcast admin bootstrap")?;
    ensure!(out.status.success(), "admin bootstrap: {}", String::from_utf8_lossy(&out.stderr));
    let token = String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("token:").map(|t| t.trim().to_string()))
        .context("no token in the bootstrap output")?;
    let mut args: Vec<std::ffi::OsString> = ["serve", "--database-url", &serve_db].iter().map(Into::into).collect();
    if replicas > 1 {
        // A dead replica on this host is seen at once (its pid is gone); elsewhere after 6 s.
        args.extend(["--replica-dead-secs".into(), "6".into()]);
    }
    args.extend(["--data-dir".into(), dir.join("data").into(), "--trusted-key".into(), pubkey.clone().into()]);
    for a in ["--provision-addr", &cp_ip.to_string(), "--rate-mbit", &a.rate_mbit.to_string()] {
        args.push(a.into());
    }
    if imgs.runtime.is_some() {
        args.extend(["--runtime-image".into(), "runtime".into()]);
    }
    if let Some((kernel, initrd)) = imgs.guest_boot.as_ref().filter(|_| !guests.is_empty()) {
        // The guests netboot through the control plane itself: DHCP (full mode, on the provisioning
        // link only), iPXE's script, the runtime's kernel and initrd over HTTP.
        let [a, b, c, _] = cp_ip.octets();
        let pool = format!("{a}.{b}.{c}.100-{a}.{b}.{c}.150");
        for w in ["--netboot-mode", "full", "--netboot-interface", fabric.sender().ifname(), "--netboot-pool", &pool] {
            args.push(w.into());
        }
        args.extend(["--netboot-kernel".into(), kernel.into(), "--netboot-initrd".into(), initrd.into()]);
        args.extend(["--netboot-cmdline".into(), "console=ttyS0 quiet panic=-1".into()]);
    }
    let specs: Vec<ServerSpec> = (0..replicas)
        .map(|i| {
            let mut args = args.clone();
            args.extend(["--listen".into(), format!("{cp_ip}:{}", PORT + i as u16).into()]);
            let log = if replicas == 1 { dir.join("server.log") } else { dir.join(format!("server-{i}.log")) };
            ServerSpec { program: me.clone(), args, log }
        })
        .collect();
    // The first replica migrates the database before the others start.
    let servers: crate::demo_crash::Servers =
        std::sync::Arc::new(std::sync::Mutex::new(vec![Some(specs[0].start_with(fabric.sender().command(&me))?)]));

    // Everything that talks to the control plane runs on a thread in its namespace.
    let nodes: Vec<(String, String)> = fabric
        .receivers()
        .iter()
        .map(|n| (n.name().to_string(), n.mac_string()))
        .chain(guests.iter().enumerate().map(|(i, g)| (g.clone(), guest_mac(i))))
        .collect();
    // Registered before any guest powers on: netboot answers only MACs it knows.
    let (url1, token1, nodes1) = (cp_url.clone(), token.clone(), nodes.clone());
    let (tenant1, runtime1) = (imgs.tenant.clone(), imgs.runtime.clone());
    fabric
        .sender()
        .run_in(move || -> anyhow::Result<()> {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            rt.block_on(async {
                let c = Client::new(&url1, Auth::Bearer(token1))?;
                register(&c, &nodes1, &tenant1, runtime1.as_deref()).await
            })
        })
        .context("entering the control plane's namespace")??;
    for spec in specs.iter().skip(1) {
        let k = spec.start_with(fabric.sender().command(&me))?;
        servers.lock().unwrap_or_else(|p| p.into_inner()).push(Some(k));
    }

    eprintln!("== node runtimes: metalcast-node agent on every namespace node");
    let mut agents = Vec::new();
    for n in fabric.receivers() {
        let log = std::fs::File::create(dir.join(format!("{}.log", n.name())))?;
        let child = n
            .command(&node_bin)
            .args(["agent", "--control-plane", &cp_list, "--iface", n.ifname(), "--handover", "none", "--key"])
            .arg(&pubkey)
            .args(["--addr", &n.ipv4().to_string()])
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("starting metalcast-node agent")?;
        agents.push(Killed(child));
    }
    let mut vms = Vec::new();
    if imgs.guest_boot.is_some() && !guests.is_empty() {
        eprintln!(
            "== QEMU guests netboot the runtime from metalcast serve: DHCP, iPXE script, kernel and initrd \
             (TCG, -no-reboot: a firmware reboot would end them)"
        );
        for (i, g) in guests.iter().enumerate() {
            let tap = fabric.tap(g).context("guest tap")?;
            // A small disk full of 0xa5: the previous tenant's data that a reclaim must erase.
            let disk = dir.join(format!("{g}.disk"));
            std::fs::write(&disk, vec![0xa5u8; 8 << 20]).context("writing a guest disk")?;
            vms.push(Guest::start(
                tap,
                &GuestSpec {
                    name: g,
                    boot: GuestBoot::BiosPxe,
                    nic_model: if i % 2 == 0 { "e1000" } else { "virtio-net-pci" },
                    mac: &guest_mac(i),
                    disk: Some(&disk),
                    memory_mb: 512,
                },
                dir.join(format!("{g}.console")),
            )?);
        }
    }

    let tenant = imgs.tenant.clone();
    let (cp_url2, want_guests) = (cp_url.clone(), guests.clone());
    let a_reclaim = a.reclaim;
    ensure!(
        !(a.market && a.reclaim && guests.len() < 2),
        "--market with --reclaim needs two guests (--qemu 2): the first is reclaimed, the last traded"
    );
    let market_guest = a.market.then(|| guests.last().map(|g| (g.clone(), dir.join(format!("{g}.disk"))))).flatten();
    let consoles: Vec<_> = vms.iter().map(|v| (v.name.clone(), std::sync::Arc::clone(&v.console))).collect();
    let first_disk = dir.join("g0.disk");
    ensure!(
        !a.pause_server || a.replicas > 1,
        "--pause-server needs --replicas 2 or more (another replica takes over)"
    );
    let drill = a.kill_server_at.map(|at_percent| Drill {
        at_percent,
        rounds: a.rounds,
        rate_mbit: a.rate_mbit,
        pause: a.pause_server,
    });
    let servers2 = std::sync::Arc::clone(&servers);
    let (urls2, token2, token_kept) = (urls.clone(), token.clone(), token.clone());
    fabric
        .sender()
        .run_in(move || -> anyhow::Result<()> {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            rt.block_on(drive(
                &cp_url2,
                &token,
                &nodes,
                &tenant,
                &want_guests,
                a_reclaim.then_some(first_disk.as_path()),
                market_guest.as_ref().map(|(g, d)| (g.as_str(), d.as_path())),
                &consoles,
                drill.map(|d| (d, Cluster { urls: &urls2, token: &token2, specs: &specs, servers: &servers2 })),
            ))
        })
        .context("entering the control plane's namespace")??;
    if a.keep_fabric {
        stay_up(dir, &fabric, &cp_url, &token_kept)?;
    }
    drop(vms);
    drop(agents);
    Ok(())
}

/// `--keep-fabric`: everything stays up until SIGINT or SIGTERM; says how to reach it.
fn stay_up(dir: &Path, fabric: &Fabric, url: &str, token: &str) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let token_file = dir.join("admin-token");
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&token_file)
        .and_then(|mut f| writeln!(f, "{token}"))
        .with_context(|| format!("writing {}", token_file.display()))?;
    let ns = fabric.sender().netns().name();
    eprintln!("== the demo stays up until Ctrl-C or SIGTERM (--keep-fabric)");
    eprintln!("   control plane {url}, in network namespace {ns}; namespaces: {}", fabric.namespaces().join(" "));
    eprintln!(
        "   try: ip netns exec {ns} env METALCAST_URL={url} METALCAST_TOKEN=$(cat {}) metalcast node list",
        token_file.display()
    );
    outln!("demo kept up: url {url} netns {ns} token-file {}", token_file.display());
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            r = tokio::signal::ctrl_c() => r,
            _ = term.recv() => Ok(()),
        }
    })
    .context("waiting for Ctrl-C or SIGTERM")?;
    eprintln!("== stopping: removing everything the demo made");
    Ok(())
}

fn guest_mac(i: usize) -> String {
    format!("52:54:00:6d:01:{:02x}", i + 1)
}

type ConsoleRef = (String, metalcast_fabric::qemu::Console);

/// The control plane's replicas, for the crash drill.
struct Cluster<'a> {
    urls: &'a [String],
    token: &'a str,
    specs: &'a [ServerSpec],
    servers: &'a crate::demo_crash::Servers,
}

/// Waits for the server, then registers project demo, the nodes (the MACs of their NICs) and the images.
async fn register(c: &Client, nodes: &[(String, String)], tenant: &Path, runtime: Option<&Path>) -> anyhow::Result<()> {
    // The server is starting: wait for it to answer (bounded).
    crate::demo_crash::wait_health(c, Duration::from_secs(30)).await?;
    eprintln!("== registering project demo, {} nodes (MACs of their NICs), and the images", nodes.len());
    c.project_create("demo").await.context("creating project demo")?;
    for (n, mac) in nodes {
        let node = NodeRegister { obm: json!({"type": "none"}), metadata: Default::default() };
        c.node_register(n, &node).await.with_context(|| format!("registering node {n}"))?;
        c.nic_register(n, "eth0", mac).await.with_context(|| format!("registering {n}'s NIC"))?;
        c.project_connect_node("demo", n).await.with_context(|| format!("adding {n} to project demo"))?;
    }
    upload(c, "demo", tenant, Some("demo")).await?;
    if let Some(r) = runtime {
        upload(c, "runtime", r, None).await?;
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
async fn drive(
    url: &str,
    token: &str,
    nodes: &[(String, String)],
    tenant: &Path,
    guests: &[String],
    reclaim_disk: Option<&Path>,
    market_guest: Option<(&str, &Path)>,
    consoles: &[ConsoleRef],
    drill: Option<(Drill, Cluster<'_>)>,
) -> anyhow::Result<()> {
    let c = Client::new(url, Auth::Bearer(token.to_string()))?;
    eprintln!("== waiting for every node's runtime to check in");
    let t0 = Instant::now();
    for (n, _) in nodes {
        loop {
            let v = c.node_runtime(n).await.with_context(|| format!("node {n}'s runtime report"))?;
            if v.checked_in && v.role.as_deref() == Some("runtime") {
                break;
            }
            ensure!(t0.elapsed() < Duration::from_secs(240), "node {n}'s runtime did not check in within 240 s");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    eprintln!("   all {} checked in after {:.1}s", nodes.len(), t0.elapsed().as_secs_f64());

    if let Some((d, cluster)) = drill {
        let mut replicas = Vec::new();
        for (u, spec) in cluster.urls.iter().zip(cluster.specs) {
            let client = Client::new(u, Auth::Bearer(cluster.token.to_string()))?;
            crate::demo_crash::wait_health(&client, Duration::from_secs(30)).await?;
            replicas.push(crate::demo_crash::Replica { spec: spec.clone(), base: u.clone(), client });
        }
        let how = if replicas.len() == 1 { "restart".to_string() } else { format!("{} replicas", replicas.len()) };
        let what = if d.pause { "SIGSTOP of the owner" } else { "kill -9" };
        eprintln!("== crash drill: {} round(s) of deploy, {what} at {}%, {how}, resume", d.rounds, d.at_percent);
        return crate::demo_crash::run(&replicas, cluster.servers, "demo", "demo", d).await;
    }

    eprintln!("== metalcast deploy --image demo --project demo (one multicast session to every node)");
    let args = kexec_deploy("demo", Vec::new(), "demo");
    crate::cli_deploy::run(&c, &args, false).await?;

    for (name, console) in consoles {
        let (line, seed) = wait_console(console, &[&format!("metalcast-marker: {MARKER}")], Duration::from_secs(120))
            .await
            .with_context(|| format!("guest {name}: no tenant marker after kexec"))?;
        outln!("guest {name}: the tenant kernel is running ({line})");
        let Some(seed) = seed else { bail!("guest {name}: no metadata seed URL on its kernel command line") };
        let meta = c.get_url_text(&format!("{seed}meta-data")).await.context("reading the metadata seed")?;
        ensure!(meta.contains(&format!("local-hostname: \"{name}\"")), "guest {name}: metadata is not its own: {meta}");
        outln!("guest {name}: its metadata seed serves its own data ({})", meta.lines().next().unwrap_or_default());
    }
    if let (Some(disk), Some(g)) = (reclaim_disk, guests.first()) {
        eprintln!("== metalcast node reclaim {g} --wipe zero (kexec back into the runtime image, erase its disk)");
        let v = crate::cli_deploy::reclaim(&c, g, WipeSpec::Zero, None).await?;
        let phases: Vec<String> = v.phases.iter().map(|p| format!("{} {:.2}s", p.phase, p.secs)).collect();
        let data = std::fs::read(disk).with_context(|| format!("reading {}", disk.display()))?;
        ensure!(data.iter().all(|&b| b == 0), "{g}'s disk still holds data after the wipe");
        outln!("{g}'s disk reads back as zeroes from the host ({} MiB)", data.len() >> 20);
        let free = c.nodes(NodeFilter::Free).await.context("listing free nodes")?;
        ensure!(free.contains(g), "{g} is not in the free pool: {free:?}");
        outln!(
            "reclaimed {g} by {} in {:.2}s ({}); it is in the free pool, running the runtime",
            v.method,
            v.secs,
            phases.join(", ")
        );
    }
    if let Some((g, disk)) = market_guest {
        market(&c, url, g, disk, tenant, consoles).await?;
    }
    Ok(())
}

/// `metalcast deploy` of `image` to `nodes` (empty: all of `project`) into memory with a kexec hand-over.
fn kexec_deploy(image: &str, nodes: Vec<String>, project: &str) -> crate::cli_deploy::DeployArgs {
    crate::cli_deploy::DeployArgs {
        cmd: None,
        image: Some(image.into()),
        nodes,
        project: Some(project.into()),
        target: "memory".into(),
        handover: HandoverSpec::Kexec,
        append: String::new(),
        user_data: None,
        keypairs: Vec::new(),
        rate_mbit: None,
        timeout: Some(600),
        no_wait: false,
    }
}

/// A fresh idempotency key.
fn key() -> String {
    let mut b = [0u8; 12];
    getrandom::fill(&mut b).expect("random bytes");
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The marketplace on a real guest: offer, buy, deploy as the lessee,
/// recall, and the guest back with its owner, reclaimed by kexec and wiped.
async fn market(
    c: &Client,
    url: &str,
    g: &str,
    disk: &Path,
    tenant: &Path,
    consoles: &[ConsoleRef],
) -> anyhow::Result<()> {
    use metalcast_operator_api::market::{BuyRequest, LeaseState, Mint, OfferCreate};
    use metalcast_operator_api::v0::UserCreate;
    eprintln!("== marketplace: project demo offers {g}, project buyer buys it and deploys to it, demo recalls it");
    c.project_create("buyer").await.context("creating project buyer")?;
    c.user_create("bob", &UserCreate { password: "bob-pw".into(), is_admin: false }).await.context("user bob")?;
    c.user_add_project("bob", "buyer").await.context("bob joins buyer")?;
    let bob = Client::new(url, Auth::Basic { user: "bob".into(), password: Some("bob-pw".into()) })?;
    upload(c, "tenant-b", tenant, Some("buyer")).await?;
    let mint = Mint { project: "buyer".into(), amount: 1_000_000_000, memo: "demo credits".into() };
    c.mint(&mint, &key()).await.context("minting credits for buyer")?;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_secs() as i64;
    let req = OfferCreate {
        project: "demo".into(),
        nodes: vec![g.to_string()],
        start: 0,
        end: now + 3600,
        reserve_mph: 1000,
        buy_now_mph: Some(2000),
        closes_at: None,
        audience: Vec::new(),
        interruptible: true,
        notice_secs: 0,
        wipe: WipeSpec::Zero,
    };
    let offer = c.offer_create(&req, &key()).await.context("offering the guest")?.answer;
    let buy = BuyRequest { project: "buyer".into(), quantity: 1, start: None, end: None };
    let leases = bob.offer_buy(offer.id, &buy, &key()).await.context("buying the guest")?.answer;
    let id = leases.first().context("no lease")?.id;
    let wait = |want: LeaseState, bound: u64| {
        let bob = bob.clone();
        async move {
            let t0 = Instant::now();
            loop {
                let l = bob.lease(id).await.context("reading the lease")?;
                if l.state == want {
                    return anyhow::Ok(l);
                }
                ensure!(
                    t0.elapsed() < Duration::from_secs(bound),
                    "lease {id} is {:?}, not {want:?}: {}",
                    l.state,
                    l.reason
                );
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        }
    };
    wait(LeaseState::Active, 60).await?;
    let seen = bob.node(g).await.context("the lessee reads its node")?;
    ensure!(seen.project.as_deref() == Some("buyer"), "{g} is not in project buyer: {:?}", seen.project);
    outln!("market: buyer leased {g} (offer {}, lease {id}); it is in project buyer", offer.id);

    let console = consoles.iter().find(|(n, _)| n == g).map(|(_, c)| c.clone()).context("no console")?;
    let marker = format!("metalcast-marker: {MARKER}");
    let count = |c: &metalcast_fabric::qemu::Console| {
        c.lock().unwrap_or_else(|p| p.into_inner()).iter().filter(|(_, l)| l.contains(&marker)).count()
    };
    let before = count(&console);
    let args = kexec_deploy("tenant-b", vec![g.to_string()], "buyer");
    crate::cli_deploy::run(&bob, &args, false).await.context("the lessee's deployment")?;
    let t0 = Instant::now();
    while count(&console) <= before {
        ensure!(t0.elapsed() < Duration::from_secs(120), "{g}: no tenant marker after the lessee's deployment");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    outln!("market: the lessee deployed tenant-b to {g} by kexec; its kernel is running");

    c.lease_recall(id, &key()).await.context("recalling the lease")?;
    let t0 = Instant::now();
    let l = wait(LeaseState::Recalled, 600).await?;
    let data = std::fs::read(disk).with_context(|| format!("reading {}", disk.display()))?;
    ensure!(data.iter().all(|&b| b == 0), "{g}'s disk still holds data after the lease");
    let back = c.node(g).await.context("reading the node")?;
    ensure!(back.project.as_deref() == Some("demo"), "{g} is not back in demo: {:?}", back.project);
    match bob.node(g).await {
        Err(e) if e.status() == Some(403) => {}
        other => bail!("the former lessee still sees {g}: {other:?}"),
    }
    outln!(
        "market: demo recalled lease {id}; {g} reclaimed by kexec and wiped in {:.1}s, its disk reads back as zeroes, \
         it is back in project demo, and buyer gets 403 on it (paid {} milli-credits for {} s)",
        t0.elapsed().as_secs_f64(),
        l.cost,
        l.end - l.start
    );
    let audit = c.ledger_audit().await.context("ledger audit")?;
    ensure!(
        audit.sum == 0 && audit.drifted_accounts == 0 && audit.escrow_mismatches == 0 && audit.negative_balances == 0,
        "ledger audit: {audit:?}"
    );
    Ok(())
}

async fn upload(c: &Client, name: &str, path: &Path, project: Option<&str>) -> anyhow::Result<()> {
    let query = UploadQuery { project: project.map(str::to_string), visibility: None };
    c.image_upload(name, &query, path).await.with_context(|| format!("uploading {name}"))?;
    Ok(())
}

/// Waits for a console line containing one of `needles`; returns it and the
/// metadata seed URL seen earlier on the console (the runtime prints the
/// command line it kexecs with).
async fn wait_console(
    console: &metalcast_fabric::qemu::Console,
    needles: &[&str],
    timeout: Duration,
) -> anyhow::Result<(String, Option<String>)> {
    let t0 = Instant::now();
    loop {
        {
            let lines = console.lock().unwrap_or_else(|p| p.into_inner());
            if let Some((_, l)) = lines.iter().find(|(_, l)| needles.iter().any(|n| l.contains(n))) {
                let seed = lines.iter().rev().find_map(|(_, l)| {
                    let i = l.find("ds=nocloud;s=")?;
                    let rest = &l[i + "ds=nocloud;s=".len()..];
                    Some(rest.split(|c: char| c.is_whitespace() || c == '"').next()?.to_string())
                });
                return Ok((l.clone(), seed));
            }
        }
        ensure!(t0.elapsed() < timeout, "timed out after {timeout:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
