//! `metalcast`: the operator's command. A thin binary over the libraries:
//! `serve` runs the control plane (`metalcast_control_plane`), the client
//! commands talk to one over its REST API through the typed client of
//! `metalcast_operator_api` ([`cli`] defines them, [`cli_client`],
//! [`cli_deploy`], [`cli_registry`], [`cli_market`] and [`cli_netboot`] run them, [`table`]
//! prints answers for humans), `send` streams a bundle by multicast ([`send`], over
//! `metalcast_transport`) and `demo` stands up the README's main job on a
//! namespace fabric ([`demo`], over `metalcast_fabric`).

#[macro_use]
mod stdout;
mod cli;
mod cli_client;
mod cli_deploy;
mod cli_error;
mod cli_market;
mod cli_netboot;
mod cli_registry;
mod demo;
mod demo_crash;
mod send;
mod serve_config;
mod table;

use std::process::ExitCode;

use anyhow::Context;
use clap::FromArgMatches;
use cli::{AdminCmd, Cli, Command, Output};
use cli_client::run_client;
use metalcast_control_plane::app::deployments::Provision;
use metalcast_control_plane::registry::Registry;
use metalcast_control_plane::{AppState, VlanPool, db};
use metalcast_image::PublicKey;
use table::render_table;

fn main() -> ExitCode {
    let argv = match serve_config::expand(std::env::args_os().collect()) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let matches = cli::command().get_matches_from(argv);
    let mut cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    // Only a client command uses credentials: `serve` must not fail over the caller's environment.
    if cli::is_client(&cli.command)
        && let Err(msg) = cli.settle_credentials(&matches)
    {
        eprintln!("error: {msg}");
        return ExitCode::from(2);
    }
    let filter = tracing_subscriber::EnvFilter::try_from_env("METALCAST_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    // METALCAST_LOG_FORMAT=json: one JSON object per event (for log shippers).
    if std::env::var("METALCAST_LOG_FORMAT").is_ok_and(|f| f == "json") {
        logs.json().init();
    } else {
        logs.init();
    }
    // The imaging commands run on their own threads, outside the async runtime.
    match std::mem::replace(&mut cli.command, Command::Whoami) {
        Command::Send(a) => {
            let json = a.json;
            return match send::run(a) {
                Ok(s) => {
                    if json {
                        outln!("{}", serde_json::to_string_pretty(&s).unwrap_or_default());
                    } else {
                        send::print_summary(&s);
                    }
                    if s.done() == s.receivers.len() { ExitCode::SUCCESS } else { ExitCode::from(1) }
                }
                Err(e) => {
                    eprintln!("error: {e:#}");
                    ExitCode::from(1)
                }
            };
        }
        Command::Demo(a) => {
            return match demo::run(a) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e:#}");
                    ExitCode::from(1)
                }
            };
        }
        other => cli.command = other,
    }
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start tokio runtime: {e}");
            return ExitCode::from(1);
        }
    };
    rt.block_on(async_main(cli))
}

async fn async_main(cli: Cli) -> ExitCode {
    match &cli.command {
        Command::Serve {
            listen,
            db,
            vlan_range,
            tls_cert,
            tls_key,
            data_dir,
            trusted_keys,
            max_image_mib,
            provision,
            upstream,
            market,
            netboot,
            config: _,
        } => {
            let tls = tls_cert.as_deref().zip(tls_key.as_deref());
            let registry = match registry(data_dir, trusted_keys, *max_image_mib) {
                Ok(r) => r,
                Err(e) => return report(Err(e)),
            };
            let scheme = if tls.is_some() { "https" } else { "http" };
            let provision_args_drain = provision.drain_secs;
            let dead_after = std::time::Duration::from_secs(provision.replica_dead_secs);
            let provision = Provision {
                addr: provision.provision_addr,
                public_url: provision
                    .public_url
                    .clone()
                    .or_else(|| provision.provision_addr.map(|a| format!("{scheme}://{a}:{}", listen.port()))),
                rate_mbit: provision.rate_mbit,
                mtu: provision.provision_mtu,
                runtime_image: provision.runtime_image.clone(),
                network: provision.provision_network.clone(),
            };
            let upstream = match upstream.config() {
                Ok(u) => u,
                Err(e) => return report(Err(e)),
            };
            let drain = std::time::Duration::from_secs(provision_args_drain);
            let netboot = match netboot_config(netboot, &provision) {
                Ok(n) => n,
                Err(e) => return report(Err(e)),
            };
            let serve = Serve {
                listen: *listen,
                url: &db.database_url,
                vlans: *vlan_range,
                tls,
                registry,
                provision,
                upstream,
                drain,
                dead_after,
                market: market.config(),
                netboot,
            };
            report(serve.run().await)
        }
        Command::Admin(AdminCmd::Bootstrap { db, admin_user, admin_password }) => {
            report(bootstrap(&db.database_url, admin_user, admin_password.clone()).await)
        }
        Command::Completions { shell } => {
            // Into memory first: clap_complete panics on a failed write.
            let mut script = Vec::new();
            clap_complete::generate(*shell, &mut cli::command(), "metalcast", &mut script);
            stdout::write_bytes(&script);
            ExitCode::SUCCESS
        }
        _ => match run_client(&cli).await {
            Ok(v) => {
                let text = match cli.output {
                    Output::Json => format!("{}\n", serde_json::to_string_pretty(&v).unwrap_or_default()),
                    Output::Table => render_table(&v),
                };
                stdout::write_bytes(text.as_bytes());
                ExitCode::SUCCESS
            }
            Err(e) => {
                let mut msg = e.to_string();
                let mut src = std::error::Error::source(&e).and_then(std::error::Error::source);
                while let Some(s) = src {
                    msg = format!("{msg}: {s}");
                    src = s.source();
                }
                eprintln!("error: {msg}");
                ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(1))
            }
        },
    }
}

fn report(r: anyhow::Result<()>) -> ExitCode {
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}

/// Everything `metalcast serve` was told, settled from its flags.
struct Serve<'a> {
    listen: std::net::SocketAddr,
    url: &'a str,
    vlans: VlanPool,
    tls: Option<(&'a std::path::Path, &'a std::path::Path)>,
    registry: Registry,
    provision: Provision,
    upstream: Option<metalcast_control_plane::app::upstream::UpstreamConfig>,
    drain: std::time::Duration,
    dead_after: std::time::Duration,
    market: metalcast_control_plane::app::market::MarketConfig,
    netboot: Option<(metalcast_control_plane::app::netboot::NetbootConfig, metalcast_netboot::Config)>,
}

/// Netboot's settings from `serve`'s flags: the control plane's side and the DHCP/TFTP servers'.
fn netboot_config(
    a: &cli::NetbootArgs,
    provision: &Provision,
) -> anyhow::Result<Option<(metalcast_control_plane::app::netboot::NetbootConfig, metalcast_netboot::Config)>> {
    use metalcast_netboot as nb;
    let Some(mode) = &a.netboot_mode else { return Ok(None) };
    let mode: nb::Mode = mode.parse()?;
    let server_ip = a.netboot_server_ip.or(provision.addr).context(
        "--netboot-mode needs --netboot-server-ip or --provision-addr (this server's address for the nodes)",
    )?;
    let base_url = provision.public_url.clone().context("--netboot-mode needs --public-url or --provision-addr")?;
    let pool = match &a.netboot_pool {
        None if mode == nb::Mode::Full => anyhow::bail!("--netboot-mode full needs --netboot-pool FIRST-LAST"),
        None => None,
        Some(p) => {
            let (first, last) = p.split_once('-').context("--netboot-pool wants FIRST-LAST")?;
            let (start, end): (std::net::Ipv4Addr, std::net::Ipv4Addr) = (
                first.trim().parse().with_context(|| format!("--netboot-pool: {first:?}"))?,
                last.trim().parse().with_context(|| format!("--netboot-pool: {last:?}"))?,
            );
            anyhow::ensure!(start <= end, "--netboot-pool {p}: FIRST is after LAST");
            let reservations = a
                .netboot_reserve
                .iter()
                .map(|r| -> anyhow::Result<(nb::Mac, std::net::Ipv4Addr)> {
                    let (m, ip) = r.split_once('=').with_context(|| format!("--netboot-reserve {r:?}: want MAC=IP"))?;
                    Ok((
                        m.parse().map_err(|_| anyhow::anyhow!("--netboot-reserve {r:?}: bad MAC"))?,
                        ip.parse().with_context(|| format!("--netboot-reserve {r:?}: bad address"))?,
                    ))
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            Some(nb::Pool {
                start,
                end,
                netmask: a.netboot_netmask,
                router: a.netboot_router,
                dns: a.netboot_dns.clone(),
                lease_secs: a.netboot_lease_secs,
                reservations,
            })
        }
    };
    let mut servers = nb::Config::new(mode, server_ip);
    servers.interface = a.netboot_interface.clone();
    servers.dhcp_port = a.netboot_dhcp_port;
    servers.client_port = a.netboot_client_port;
    servers.proxy_port = (a.netboot_proxy_port != 0).then_some(a.netboot_proxy_port);
    servers.tftp_port = a.netboot_tftp_port;
    servers.boot_dir = a.netboot_boot_dir.clone();
    servers.uefi_file = a.netboot_uefi_file.clone();
    servers.http_ipxe_url = Some(format!("{base_url}/boot/ipxe.efi"));
    servers.pool = pool;
    let app = metalcast_control_plane::app::netboot::NetbootConfig {
        base_url,
        kernel: a.netboot_kernel.clone(),
        initrd: a.netboot_initrd.clone(),
        cmdline: format!("ip=dhcp {}", a.netboot_cmdline).trim().to_string(),
        enroll: a.netboot_enroll,
        boot_dir: a.netboot_boot_dir.clone(),
        uefi_file: a.netboot_uefi_file.clone(),
        ..Default::default()
    };
    for f in [&app.kernel, &app.initrd].into_iter().flatten() {
        anyhow::ensure!(f.is_file(), "netboot file {} does not exist", f.display());
    }
    Ok(Some((app, servers)))
}

impl Serve<'_> {
    async fn run(self) -> anyhow::Result<()> {
        let Serve { listen, url, vlans, tls, registry, provision, upstream, drain, dead_after, market, netboot } = self;
        let db = db::connect(url).await.with_context(|| format!("opening database {}", redact(url)))?;
        let listener = tokio::net::TcpListener::bind(listen).await.with_context(|| format!("binding {listen}"))?;
        let shutdown = async {
            let ctrl_c = tokio::signal::ctrl_c();
            #[cfg(unix)]
            {
                let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                    .expect("installing SIGTERM handler");
                tokio::select! {
                    _ = ctrl_c => {},
                    _ = term.recv() => {},
                }
            }
            #[cfg(not(unix))]
            let _ = ctrl_c.await;
            tracing::info!("shutting down");
        };
        if provision.addr.is_none() {
            tracing::warn!("no --provision-addr given: deployments will be refused");
        }
        let mut state = AppState::new(db, vlans)
            .with_registry(registry)
            .with_provision(provision)
            .with_drain_time(drain)
            .with_replica_dead_after(dead_after)
            .with_market(market);
        let servers = match netboot {
            Some((app, servers)) => {
                state = state.with_netboot(app);
                Some(servers)
            }
            None => None,
        };
        if let Some(cfg) = upstream {
            let up = metalcast_control_plane::app::upstream::Upstream::new(cfg).map_err(anyhow::Error::msg)?;
            tracing::info!(url = %up.config().url, project = %up.config().project, "nested control plane (upstream)");
            state = state.with_upstream(up);
        }
        // Nested instance: import and follow the parent's inventory.
        let _sync = metalcast_control_plane::app::upstream::spawn_sync(&state);
        let _netboot = match servers {
            Some(cfg) => {
                let mode = cfg.mode;
                let nb = metalcast_control_plane::app::netboot::start(&state, cfg).await.context("starting netboot")?;
                tracing::info!(%mode, sockets = ?nb.local_addrs(), "netboot: DHCP and TFTP servers running");
                Some(nb)
            }
            None => None,
        };
        match tls {
            Some((cert, key)) => metalcast_control_plane::serve_tls(listener, state, shutdown, cert.into(), key.into())
                .await
                .with_context(|| format!("serving HTTPS with {}", cert.display())),
            None => metalcast_control_plane::serve(listener, state, shutdown).await.context("serving HTTP"),
        }
    }
}

/// The image registry from `serve`'s flags; every trusted key must load.
fn registry(dir: &std::path::Path, keys: &[std::path::PathBuf], max_mib: u64) -> anyhow::Result<Registry> {
    let trusted = keys
        .iter()
        .map(|k| PublicKey::load(k).with_context(|| format!("loading trusted key {}", k.display())))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut reg = Registry::new(dir, trusted);
    reg.max_upload = max_mib.saturating_mul(1 << 20);
    reg.ensure_dirs().with_context(|| format!("creating data directory {}", dir.display()))?;
    if reg.trusted.is_empty() {
        tracing::warn!("no --trusted-key given: image uploads will be refused");
    }
    Ok(reg)
}

async fn bootstrap(url: &str, user: &str, password: Option<String>) -> anyhow::Result<()> {
    let db = db::connect(url).await.with_context(|| format!("opening database {}", redact(url)))?;
    let st = AppState::new(db, VlanPool::default());
    let b = metalcast_control_plane::app::tokens::bootstrap_admin(&st, user, password)
        .await
        .context("creating the admin user")?;
    outln!("user:     {}", b.user);
    outln!("password: {}", b.password);
    outln!("token:    {}", b.token.token);
    outln!("# export METALCAST_TOKEN={}", b.token.token);
    Ok(())
}

/// Hide a password in a database URL for messages.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            match creds.split_once(':') {
                Some((u, _)) => format!("{}://{u}:***@{}", &url[..s], &url[at + 1..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}
