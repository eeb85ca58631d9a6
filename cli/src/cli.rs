//! The `metalcast` command line: `serve`, `admin bootstrap`, `completions`,
//! and `<noun> <verb>` commands that call the REST API (run by
//! [`crate::cli_client`]).
//!
//! Exit codes: 0 success; 1 other error (bad local input, I/O, server
//! startup); 2 usage error (from clap); 3 cannot reach the server (or a
//! deployment's event stream was lost: `deploy watch ID` reattaches);
//! 4 authentication/authorization refused (401/403); 5 not found (404);
//! 6 conflict (409); 7 any other API error; 8 a deployment ended with failed nodes.

use std::net::SocketAddr;

use clap::parser::ValueSource;
use clap::{ArgMatches, Args, CommandFactory, Parser, Subcommand, ValueEnum};
use metalcast_operator_api::v1::WipeSpec;

/// Command line of the `metalcast` binary.
#[derive(Debug, Parser)]
#[command(
    name = "metalcast",
    version,
    about = "metalcast control plane: bare metal as a service (HIL-compatible API)",
    after_help = "Exit codes: 0 ok, 1 error, 2 usage, 3 server unreachable or deployment stream lost, \
                  4 unauthorized/forbidden, 5 not found, 6 conflict, 7 other API error, \
                  8 deployment finished with failed nodes."
)]
pub struct Cli {
    /// Server URL for client commands.
    #[arg(long, env = "METALCAST_URL", default_value = "http://127.0.0.1:7000", global = true)]
    pub url: String,
    /// API token (`mct_...`), sent as a Bearer token. Either a token or
    /// --user/--password: a flag beats the environment, and the two given
    /// the same way (both flags, or both variables) are refused.
    #[arg(long, env = "METALCAST_TOKEN", global = true, hide_env_values = true)]
    pub token: Option<String>,
    /// User for HTTP Basic authentication (instead of a token).
    #[arg(long, env = "METALCAST_USER", global = true)]
    pub user: Option<String>,
    /// Password for HTTP Basic authentication.
    #[arg(long, env = "METALCAST_PASSWORD", global = true, hide_env_values = true)]
    pub password: Option<String>,
    /// PEM CA certificate to trust (instead of the system roots) for https URLs.
    #[arg(long, env = "METALCAST_CA_CERT", global = true)]
    pub ca_cert: Option<std::path::PathBuf>,
    /// Output format of client commands.
    #[arg(short = 'o', long, value_enum, default_value_t = Output::Table, global = true)]
    pub output: Output,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// Human-readable table.
    Table,
    /// The JSON returned by the server.
    Json,
}

/// Options of `metalcast serve` and `metalcast admin bootstrap`.
#[derive(Debug, Args)]
pub struct DbArgs {
    /// Database URL: `sqlite://FILE?mode=rwc` or `postgres://user:pw@host/db`.
    #[arg(long, env = "METALCAST_DATABASE_URL", default_value = metalcast_control_plane::db::DEFAULT_URL, hide_env_values = true)]
    pub database_url: String,
}

/// Deployment options of `metalcast serve`.
#[derive(Debug, Args)]
pub struct ProvisionArgs {
    /// This server's IPv4 address on the provisioning network: the multicast
    /// sender binds it and node reports come back to it. Without it,
    /// deployments are refused.
    #[arg(long, env = "METALCAST_PROVISION_ADDR")]
    pub provision_addr: Option<std::net::Ipv4Addr>,
    /// URL nodes use to reach this server (metadata seed URLs on the kernel
    /// command line); default `http://PROVISION_ADDR:LISTEN_PORT`.
    #[arg(long, env = "METALCAST_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// MTU of the provisioning network (sets the multicast symbol size; 9000 for jumbo frames).
    #[arg(long, default_value_t = 1500)]
    pub provision_mtu: usize,
    /// Default cap on the multicast send rate, Mbit/s of UDP payload (0: none);
    /// below it the rate adapts to the loss the nodes report.
    #[arg(long, default_value_t = 0)]
    pub rate_mbit: u64,
    /// Image (the bootstrap bundle from `metalcast-image initramfs`) that
    /// reclaimed nodes are kexec'd back into.
    #[arg(long)]
    pub runtime_image: Option<String>,
    /// The network (`/v0/network/NAME`, usually admin-owned) the nodes'
    /// runtime reaches this server on. Deployments and reclaims first put
    /// one NIC of each node on it (its native VLAN, through the node's
    /// switch port) if no NIC is on it, and record a node event; a reclaim
    /// leaves the node on it. Without it, the operator keeps the nodes on
    /// the provisioning network by hand.
    #[arg(long, env = "METALCAST_PROVISION_NETWORK")]
    pub provision_network: Option<String>,
    /// On SIGTERM / SIGINT: new deployments are refused at once, and the
    /// running ones may finish for up to this many seconds (their nodes
    /// still report) before they are stopped and recorded as interrupted.
    #[arg(long, env = "METALCAST_DRAIN_SECS", default_value_t = 120)]
    pub drain_secs: u64,
    /// Another replica on the same database without a heartbeat for this
    /// many seconds is dead: its deployments and networking actions are
    /// failed with the reason (docs/scale-out.md). A replica on this host
    /// whose process is gone is dead at once.
    #[arg(long, env = "METALCAST_REPLICA_DEAD_SECS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(3..=3600))]
    pub replica_dead_secs: u64,
}

/// Marketplace options of `metalcast serve` (docs/marketplace.md).
#[derive(Debug, Args)]
pub struct MarketArgs {
    /// Seconds between the market's passes (auctions to settle, leases to start, end, grant, revoke; autobuy).
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub market_tick_secs: u64,
    /// Seconds between the end of a lease and the start of the next one on the same node (the reclaim and wipe run in it).
    #[arg(long, default_value_t = 300, value_parser = clap::value_parser!(i64).range(0..=86_400))]
    pub market_cleaning_gap_secs: i64,
    /// The market's fee on every lease payment, in basis points (1/100 %).
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(i64).range(0..=10_000))]
    pub market_fee_bps: i64,
    /// Failed grant or revoke attempts before a lease fails (a grant: full refund; a revoke: the node goes to the admins).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(i64).range(1..=100))]
    pub market_attempts: i64,
    /// Seconds a lease's revoke waits for the node to come back to the runtime (kexec or BMC).
    #[arg(long, default_value_t = 300, value_parser = clap::value_parser!(u64).range(5..=3600))]
    pub market_revoke_timeout_secs: u64,
}

impl MarketArgs {
    /// The settings.
    pub fn config(&self) -> metalcast_control_plane::app::market::MarketConfig {
        metalcast_control_plane::app::market::MarketConfig {
            tick: std::time::Duration::from_secs(self.market_tick_secs),
            cleaning_gap_secs: self.market_cleaning_gap_secs,
            fee_bps: self.market_fee_bps,
            attempts: self.market_attempts,
            revoke_timeout: std::time::Duration::from_secs(self.market_revoke_timeout_secs),
        }
    }
}

/// Built-in netboot options of `metalcast serve` (docs/netboot.md): DHCP
/// (full or proxy), TFTP of the iPXE binaries, and the iPXE script, kernel
/// and initrd over this server's HTTP.
#[derive(Debug, Args)]
pub struct NetbootArgs {
    /// DHCP mode: `full` (an isolated provisioning network: addresses from
    /// --netboot-pool), `proxy` (beside a site DHCP server: boot files only,
    /// to known MACs, also on port 4011), or `off` (TFTP and HTTP only).
    /// Without it, netboot is disabled.
    #[arg(long, env = "METALCAST_NETBOOT_MODE", value_parser = ["full", "proxy", "off"])]
    pub netboot_mode: Option<String>,
    /// Interface the DHCP and TFTP sockets are bound to (SO_BINDTODEVICE).
    #[arg(long, env = "METALCAST_NETBOOT_INTERFACE")]
    pub netboot_interface: Option<String>,
    /// This server's address on the provisioning network (DHCP server id, TFTP server) [default: --provision-addr].
    #[arg(long)]
    pub netboot_server_ip: Option<std::net::Ipv4Addr>,
    /// Full mode's address pool, `FIRST-LAST`.
    #[arg(long, value_name = "FIRST-LAST")]
    pub netboot_pool: Option<String>,
    /// Full mode's netmask.
    #[arg(long, default_value = "255.255.255.0")]
    pub netboot_netmask: std::net::Ipv4Addr,
    /// Full mode's router (option 3).
    #[arg(long)]
    pub netboot_router: Option<std::net::Ipv4Addr>,
    /// Full mode's DNS servers (option 6); repeatable.
    #[arg(long)]
    pub netboot_dns: Vec<std::net::Ipv4Addr>,
    /// Full mode's lease time, seconds.
    #[arg(long, default_value_t = 3600, value_parser = clap::value_parser!(u32).range(60..))]
    pub netboot_lease_secs: u32,
    /// A fixed address for one MAC, `MAC=IP`; repeatable.
    #[arg(long, value_name = "MAC=IP")]
    pub netboot_reserve: Vec<String>,
    /// Directory of the iPXE binaries served by TFTP (Debian's `ipxe`: undionly.kpxe, ipxe.efi, snponly.efi).
    #[arg(long, default_value = "/usr/lib/ipxe")]
    pub netboot_boot_dir: std::path::PathBuf,
    /// The UEFI iPXE binary in --netboot-boot-dir (`snponly.efi` for NICs whose UEFI driver iPXE lacks).
    #[arg(long, default_value = "ipxe.efi")]
    pub netboot_uefi_file: String,
    /// The runtime's kernel, served to netbooting nodes.
    #[arg(long, requires = "netboot_initrd")]
    pub netboot_kernel: Option<std::path::PathBuf>,
    /// The runtime's initramfs (`metalcast-image initramfs`), served to netbooting nodes.
    #[arg(long, requires = "netboot_kernel")]
    pub netboot_initrd: Option<std::path::PathBuf>,
    /// Words added to the runtime's kernel command line (e.g. `console=ttyS0`); `ip=dhcp` is always there.
    #[arg(long, default_value = "")]
    pub netboot_cmdline: String,
    /// Unknown MACs boot the runtime in enrollment mode and wait as pending enrollments for an admin.
    #[arg(long)]
    pub netboot_enroll: bool,
    /// DHCP server port (67; another only for tests).
    #[arg(long, default_value_t = 67, hide = true)]
    pub netboot_dhcp_port: u16,
    /// Port DHCP replies go to (68; another only for tests).
    #[arg(long, default_value_t = 68, hide = true)]
    pub netboot_client_port: u16,
    /// proxyDHCP's PXE boot-server port (proxy mode; 0: off).
    #[arg(long, default_value_t = 4011)]
    pub netboot_proxy_port: u16,
    /// TFTP port (0: no TFTP).
    #[arg(long, default_value_t = 69)]
    pub netboot_tftp_port: u16,
}

/// Options of `metalcast serve` that make it a nested control plane
/// (recursive HaaS, docs/recursion.md).
#[derive(Debug, Args)]
pub struct UpstreamArgs {
    /// Parent metalcast URL: serve the nodes that --upstream-project holds
    /// there (imported and kept in sync); power, boot device, console and
    /// networks are delegated to the parent.
    #[arg(long, env = "METALCAST_UPSTREAM", requires = "upstream_project")]
    pub upstream: Option<String>,
    /// Project at the parent whose nodes this instance serves.
    #[arg(long, env = "METALCAST_UPSTREAM_PROJECT", requires = "upstream")]
    pub upstream_project: Option<String>,
    /// API token (`mct_...`) of a member of --upstream-project at the parent.
    /// Prefer the environment or --upstream-token-file (argv is visible to other users).
    #[arg(long, env = "METALCAST_UPSTREAM_TOKEN", hide_env_values = true, conflicts_with = "upstream_token_file")]
    pub upstream_token: Option<String>,
    /// File holding the upstream API token.
    #[arg(long, env = "METALCAST_UPSTREAM_TOKEN_FILE")]
    pub upstream_token_file: Option<std::path::PathBuf>,
    /// Seconds between inventory syncs with the parent (doubling up to 60 while it is unreachable).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub upstream_sync_secs: u64,
}

impl UpstreamArgs {
    /// The parent connection settings, or `None` when not nested.
    pub fn config(&self) -> anyhow::Result<Option<metalcast_control_plane::app::upstream::UpstreamConfig>> {
        use anyhow::Context;
        let (Some(url), Some(project)) = (&self.upstream, &self.upstream_project) else {
            return Ok(None);
        };
        let token = match (&self.upstream_token, &self.upstream_token_file) {
            (Some(t), _) => t.clone(),
            (None, Some(f)) => {
                std::fs::read_to_string(f).with_context(|| format!("reading upstream token file {}", f.display()))?
            }
            (None, None) => anyhow::bail!("--upstream needs --upstream-token or --upstream-token-file"),
        };
        Ok(Some(metalcast_control_plane::app::upstream::UpstreamConfig {
            url: url.clone(),
            project: project.clone(),
            token: token.trim().to_string(),
            sync_interval: std::time::Duration::from_secs(self.upstream_sync_secs),
        }))
    }
}

/// Top-level commands.
// Parsed once at start-up and matched once: `serve`'s many flags make its
// variant large, which costs nothing here.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the API server.
    #[command(args_override_self = true)]
    Serve {
        /// TOML file of serve flags (`listen = "0.0.0.0:7000"`, `[netboot] mode = "full"` for
        /// --netboot-mode ...); flags given on the command line win (docs/netboot.md).
        #[arg(long, value_name = "FILE")]
        config: Option<std::path::PathBuf>,
        /// Address to listen on.
        #[arg(long, env = "METALCAST_LISTEN", default_value = "127.0.0.1:7000")]
        listen: SocketAddr,
        #[command(flatten)]
        db: DbArgs,
        /// VLAN id pool for networks, `FIRST-LAST`.
        #[arg(long, default_value = "100-3999", value_parser = parse_vlan_range)]
        vlan_range: metalcast_control_plane::VlanPool,
        /// Serve HTTPS with this PEM certificate chain (needs --tls-key).
        #[arg(long, env = "METALCAST_TLS_CERT", requires = "tls_key")]
        tls_cert: Option<std::path::PathBuf>,
        /// PEM private key for --tls-cert.
        #[arg(long, env = "METALCAST_TLS_KEY", requires = "tls_cert")]
        tls_key: Option<std::path::PathBuf>,
        /// Directory for server data (the image registry's bundles).
        #[arg(long, env = "METALCAST_DATA_DIR", default_value = "metalcast-data")]
        data_dir: std::path::PathBuf,
        /// Public key file (from `metalcast-image keygen`) whose signed bundles the
        /// image registry accepts; repeat for several signers. Without any, uploads are refused.
        #[arg(long = "trusted-key", value_name = "FILE")]
        trusted_keys: Vec<std::path::PathBuf>,
        /// Largest image bundle accepted in one upload, in MiB.
        #[arg(long, default_value_t = metalcast_control_plane::registry::DEFAULT_MAX_UPLOAD >> 20)]
        max_image_mib: u64,
        #[command(flatten)]
        provision: ProvisionArgs,
        #[command(flatten)]
        upstream: UpstreamArgs,
        #[command(flatten)]
        market: MarketArgs,
        #[command(flatten)]
        netboot: NetbootArgs,
    },
    /// Server administration done directly on the database.
    #[command(subcommand)]
    Admin(AdminCmd),
    /// Print a shell completion script.
    Completions {
        /// Shell.
        shell: clap_complete::Shell,
    },
    /// Projects (tenants).
    #[command(subcommand)]
    Project(ProjectCmd),
    /// Nodes (bare-metal machines).
    #[command(subcommand)]
    Node(NodeCmd),
    /// Networks.
    #[command(subcommand)]
    Network(NetworkCmd),
    /// Switches and their ports.
    #[command(subcommand)]
    Switch(SwitchCmd),
    /// Users.
    #[command(subcommand)]
    User(UserCmd),
    /// Show the status of a networking action.
    Action {
        /// Status id returned by connect/detach/revert.
        status_id: String,
    },
    /// API tokens.
    #[command(subcommand)]
    Token(TokenCmd),
    /// Show who the credentials belong to.
    Whoami,
    /// Node events of your projects, e.g. why a nested instance's parent took a node back.
    Events {
        /// Only events of this node.
        #[arg(long)]
        node: Option<String>,
    },
    /// Image registry: upload signed bundles, list, share, delete.
    #[command(subcommand)]
    Image(crate::cli_registry::ImageCmd),
    /// SSH public keys for deployed operating systems.
    #[command(subcommand)]
    Keypair(crate::cli_registry::KeypairCmd),
    /// Project quotas (nodes, images, image storage).
    #[command(subcommand)]
    Quota(crate::cli_registry::QuotaCmd),
    /// The marketplace: offer your nodes' time, buy or bid for others', leases, autobuy, price stats.
    #[command(subcommand)]
    Market(crate::cli_market::MarketCmd),
    /// Credits ledger: balances, history, transfers; mint, reverse and audit (admins).
    #[command(subcommand)]
    Credits(crate::cli_market::CreditsCmd),
    /// Machines that netbooted in enrollment mode: list, accept as nodes, reject (admins).
    #[command(subcommand)]
    Enrollment(crate::cli_netboot::EnrollmentCmd),
    /// Built-in netboot: full mode's address leases (admins).
    #[command(subcommand)]
    Netboot(crate::cli_netboot::NetbootCmd),
    /// Deploy an image to nodes by multicast, with live progress; or list, show, watch, retry deployments.
    Deploy(crate::cli_deploy::DeployArgs),
    /// Stream a bundle by RaptorQ multicast until every expected receiver is done.
    Send(crate::send::SendArgs),
    /// The README's main job: a real multicast deploy to namespace nodes on this machine (root).
    Demo(crate::demo::DemoArgs),
}

/// `metalcast admin ...`
#[derive(Debug, Subcommand)]
pub enum AdminCmd {
    /// Create the first admin user and print its password and an API token.
    Bootstrap {
        #[command(flatten)]
        db: DbArgs,
        /// Admin user name.
        #[arg(long, default_value = "admin")]
        admin_user: String,
        /// Password (generated if omitted).
        #[arg(long, env = "METALCAST_ADMIN_PASSWORD", hide_env_values = true)]
        admin_password: Option<String>,
    },
}

/// `metalcast project ...`
#[derive(Debug, Subcommand)]
pub enum ProjectCmd {
    /// List projects (admin).
    List,
    /// Create a project (admin).
    Create {
        /// Project name.
        project: String,
    },
    /// Delete a project (admin; must own nothing).
    Delete {
        /// Project name.
        project: String,
    },
    /// A project's nodes.
    #[command(subcommand)]
    Node(ProjectNodeCmd),
    /// Networks the project can access.
    Networks {
        /// Project name.
        project: String,
    },
}

/// `metalcast project node ...`
#[derive(Debug, Subcommand)]
pub enum ProjectNodeCmd {
    /// Reserve a free node for the project.
    Add {
        /// Project name.
        project: String,
        /// Node name.
        node: String,
    },
    /// Return a node to the free pool.
    Remove {
        /// Project name.
        project: String,
        /// Node name.
        node: String,
    },
    /// List the project's nodes.
    List {
        /// Project name.
        project: String,
    },
}

/// `--state`: one of the server's node states by name.
fn node_state() -> impl clap::builder::TypedValueParser<Value = metalcast_operator_api::v1::NodeStatus> {
    use clap::builder::TypedValueParser;
    use metalcast_operator_api::v1::NodeStatus;
    clap::builder::PossibleValuesParser::new(NodeStatus::ALL.map(NodeStatus::as_str))
        .map(|s| NodeStatus::ALL.into_iter().find(|v| v.as_str() == s).expect("one of the possible values"))
}

/// Which nodes to list.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Which {
    /// Every node.
    All,
    /// Nodes not in any project.
    Free,
}

/// Power actions.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum PowerVerb {
    /// Power on.
    On,
    /// Power off.
    Off,
    /// Power cycle.
    Cycle,
    /// Show power state.
    Status,
}

/// Console verbs.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ConsoleVerb {
    /// Start capturing the console log.
    Start,
    /// Print the captured log.
    Show,
    /// Stop capturing and delete the log.
    Stop,
}

/// `metalcast node ...`
#[derive(Debug, Subcommand)]
pub enum NodeCmd {
    /// Return a node to the free pool running the runtime (kexec, else BMC),
    /// optionally wiped, networks detached; prints the time of each phase.
    Reclaim {
        /// Node name.
        node: String,
        /// Erase the disks first.
        #[arg(long, value_enum, default_value_t = WipeSpec::None)]
        wipe: WipeSpec,
        /// Seconds to wait for the runtime to come back.
        #[arg(long)]
        timeout: Option<u64>,
    },
    /// List nodes, one row each: project, state (free, allocated, deploying,
    /// deployed, failed, reclaiming), newest deployment, last runtime check-in.
    List {
        /// `all` or `free` (free: the same as `--state free`).
        #[arg(value_enum, default_value = "all")]
        which: Which,
        /// Only this project's nodes.
        #[arg(long)]
        project: Option<String>,
        /// Only nodes in this state.
        #[arg(long, value_parser = node_state())]
        state: Option<metalcast_operator_api::v1::NodeStatus>,
        /// Also the power state, asked of each node's BMC (one call per node, 8 at a time).
        #[arg(long)]
        long: bool,
        /// Names only, one per line (HIL's node list).
        #[arg(long, conflicts_with_all = ["project", "state", "long"])]
        names: bool,
    },
    /// The node's runtime as this server last heard it: check-in (MAC,
    /// address, boot id, how long ago), hardware inventory and the newest
    /// phase report (e.g. why a wipe was refused).
    Runtime {
        /// Node name.
        node: String,
    },
    /// Show a node.
    Show {
        /// Node name.
        node: String,
    },
    /// Register a node (admin).
    Register {
        /// Node name.
        node: String,
        /// BMC description as JSON, e.g.
        /// '{"type":"ipmi","host":"10.0.0.5","user":"ADMIN","password":"x"}'.
        #[arg(long)]
        obm: String,
    },
    /// Delete a node (admin).
    Delete {
        /// Node name.
        node: String,
    },
    /// Power control.
    Power {
        /// on, off, cycle or status.
        #[arg(value_enum)]
        verb: PowerVerb,
        /// Node name.
        node: String,
    },
    /// Console log: `start` capturing, `show` the log, `stop` (deletes it).
    Console {
        /// start, show or stop.
        #[arg(value_enum)]
        verb: ConsoleVerb,
        /// Node name.
        node: String,
    },
    /// Show or set what the node boots when it netboots: runtime, local (its disk) or none.
    Boot {
        /// Node name.
        node: String,
        /// New choice; without it, show the current one.
        #[arg(value_enum)]
        choice: Option<metalcast_operator_api::netboot::BootChoice>,
    },
    /// Set the next boot device (disk, pxe, none).
    Bootdev {
        /// Node name.
        node: String,
        /// Boot device.
        device: String,
    },
    /// NICs.
    #[command(subcommand)]
    Nic(NicCmd),
    /// Metadata labels.
    #[command(subcommand)]
    Metadata(MetadataCmd),
    /// Connect a NIC to a network (asynchronous: prints a status id; with --wait, waits for the switch).
    Connect {
        /// Node name.
        node: String,
        /// NIC name.
        nic: String,
        /// Network name.
        network: String,
        /// Channel (`vlan/native` default, or `vlan/<id>`).
        #[arg(long)]
        channel: Option<String>,
        #[command(flatten)]
        wait: WaitArgs,
    },
    /// Detach a NIC from a network (asynchronous: prints a status id; with --wait, waits for the switch).
    Detach {
        /// Node name.
        node: String,
        /// NIC name.
        nic: String,
        /// Network name.
        network: String,
        #[command(flatten)]
        wait: WaitArgs,
    },
}

/// `--wait` of the asynchronous networking commands.
#[derive(Debug, Clone, Copy, Args)]
pub struct WaitArgs {
    /// Wait until the switch is changed (the action is DONE); exit 1 if it
    /// ends in ERROR or is still PENDING after --timeout.
    #[arg(long)]
    pub wait: bool,
    /// Seconds --wait waits at most.
    #[arg(long, default_value_t = 60, requires = "wait", value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub timeout: u64,
}

/// `metalcast node nic ...`
#[derive(Debug, Subcommand)]
pub enum NicCmd {
    /// Register a NIC (admin).
    Add {
        /// Node name.
        node: String,
        /// NIC name.
        nic: String,
        /// MAC address.
        macaddr: String,
    },
    /// Delete a NIC (admin).
    Delete {
        /// Node name.
        node: String,
        /// NIC name.
        nic: String,
    },
}

/// `metalcast node metadata ...`
#[derive(Debug, Subcommand)]
pub enum MetadataCmd {
    /// Set a label (value is JSON; plain text is stored as a string).
    Set {
        /// Node name.
        node: String,
        /// Label.
        label: String,
        /// Value.
        value: String,
    },
    /// Delete a label.
    Delete {
        /// Node name.
        node: String,
        /// Label.
        label: String,
    },
}

/// `metalcast network ...`
#[derive(Debug, Subcommand)]
pub enum NetworkCmd {
    /// List all networks (admin).
    List,
    /// Show a network.
    Show {
        /// Network name.
        network: String,
    },
    /// Create a network.
    Create {
        /// Network name.
        network: String,
        /// Owning project, or `admin`.
        #[arg(long)]
        owner: String,
        /// Project with access ('' = public, admin-owned only).
        #[arg(long, default_value = "")]
        access: String,
        /// Fixed VLAN id ('' = allocate from the pool).
        #[arg(long, default_value = "")]
        net_id: String,
    },
    /// Delete a network.
    Delete {
        /// Network name.
        network: String,
    },
    /// List nodes attached to a network.
    Attachments {
        /// Network name.
        network: String,
        /// Only this project's nodes.
        #[arg(long)]
        project: Option<String>,
    },
    /// Grant a project access to a network.
    Grant {
        /// Network name.
        network: String,
        /// Project name.
        project: String,
    },
    /// Revoke a project's access to a network.
    Revoke {
        /// Network name.
        network: String,
        /// Project name.
        project: String,
    },
}

/// `metalcast switch ...`
#[derive(Debug, Subcommand)]
pub enum SwitchCmd {
    /// List switches (admin).
    List,
    /// Show a switch.
    Show {
        /// Switch name.
        switch: String,
    },
    /// Register a switch (admin): `--type linux-bridge --bridge BR [--netns NS]`,
    /// `--type linux-vlan-bridges --netns NS`, or `--type upstream --parent-url URL
    /// --parent-project P --parent-node N`.
    Register {
        /// Switch name.
        switch: String,
        /// Driver.
        #[arg(long = "type", value_enum, default_value_t = SwitchType::LinuxBridge)]
        kind: SwitchType,
        /// linux-bridge: the bridge interface (vlan_filtering 1).
        #[arg(long, required_if_eq("kind", "linux-bridge"))]
        bridge: Option<String>,
        /// linux-bridge: the bridge's network namespace (default: the host's);
        /// linux-vlan-bridges: the namespace holding the ports.
        #[arg(long, required_if_eq("kind", "linux-vlan-bridges"))]
        netns: Option<String>,
        /// upstream: base URL of the parent control plane.
        #[arg(long, value_name = "URL", required_if_eq("kind", "upstream"))]
        parent_url: Option<String>,
        /// upstream: project at the parent that holds the node.
        #[arg(long, value_name = "PROJECT", required_if_eq("kind", "upstream"))]
        parent_project: Option<String>,
        /// upstream: the node's name at the parent.
        #[arg(long, value_name = "NODE", required_if_eq("kind", "upstream"))]
        parent_node: Option<String>,
    },
    /// Delete a switch (admin).
    Delete {
        /// Switch name.
        switch: String,
    },
    /// Ports.
    #[command(subcommand)]
    Port(PortCmd),
}

/// Switch drivers (the `type` of `PUT /v0/switch/<name>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SwitchType {
    /// One Linux bridge with VLAN filtering; ports are its member interfaces.
    LinuxBridge,
    /// One Linux bridge per VLAN in a network namespace (no VLAN filtering needed).
    LinuxVlanBridges,
    /// A node's switch at a parent control plane (nested instances).
    Upstream,
}

/// `metalcast switch port ...`
#[derive(Debug, Subcommand)]
pub enum PortCmd {
    /// Register a port.
    Add {
        /// Switch name.
        switch: String,
        /// Port (interface) name.
        port: String,
    },
    /// Delete a port.
    Delete {
        /// Switch name.
        switch: String,
        /// Port name.
        port: String,
    },
    /// Show what is connected to a port.
    Show {
        /// Switch name.
        switch: String,
        /// Port name.
        port: String,
    },
    /// Connect a node's NIC to a port.
    Connect {
        /// Switch name.
        switch: String,
        /// Port name.
        port: String,
        /// Node name.
        node: String,
        /// NIC name.
        nic: String,
    },
    /// Detach the NIC from a port.
    Detach {
        /// Switch name.
        switch: String,
        /// Port name.
        port: String,
    },
    /// Remove every network from a port (asynchronous).
    Revert {
        /// Switch name.
        switch: String,
        /// Port name.
        port: String,
    },
}

/// `metalcast user ...`
#[derive(Debug, Subcommand)]
pub enum UserCmd {
    /// Create a user (admin). The new user's password is asked for (twice,
    /// not echoed) when stdin is a terminal; scripts give it on stdin with
    /// --password-stdin, or in METALCAST_NEW_PASSWORD.
    Create {
        /// User name. (Its own id: the global --user is another argument.)
        #[arg(id = "user_name", value_name = "USER")]
        user: String,
        /// Make the user an administrator.
        #[arg(long)]
        admin: bool,
        /// Read the new user's password from stdin (its first line).
        #[arg(long, conflicts_with = "new_password")]
        password_stdin: bool,
        /// Deprecated (other users can read a command line): the new user's
        /// password. Use the prompt, --password-stdin or METALCAST_NEW_PASSWORD.
        #[arg(long, value_name = "PASSWORD")]
        new_password: Option<String>,
    },
    /// List users with their admin flag and projects (admin).
    List,
    /// Show one user's admin flag and projects (admin).
    Show {
        /// User name. (Its own id: the global --user is another argument.)
        #[arg(id = "user_name", value_name = "USER")]
        user: String,
    },
    /// Make a user an administrator or not (admin; not yourself).
    SetAdmin {
        /// User name. (Its own id: the global --user is another argument.)
        #[arg(id = "user_name", value_name = "USER")]
        user: String,
        /// yes or no (also true/false, on/off).
        #[arg(action = clap::ArgAction::Set, value_parser = clap::builder::BoolishValueParser::new(), value_name = "YES|NO")]
        admin: bool,
    },
    /// Delete a user (admin).
    Delete {
        /// User name. (Its own id: the global --user is another argument.)
        #[arg(id = "user_name", value_name = "USER")]
        user: String,
    },
    /// Add a user to a project (admin).
    AddProject {
        /// User name. (Its own id: the global --user is another argument.)
        #[arg(id = "user_name", value_name = "USER")]
        user: String,
        /// Project name.
        project: String,
    },
    /// Remove a user from a project (admin).
    RemoveProject {
        /// User name. (Its own id: the global --user is another argument.)
        #[arg(id = "user_name", value_name = "USER")]
        user: String,
        /// Project name.
        project: String,
    },
}

/// `metalcast token ...`
#[derive(Debug, Subcommand)]
pub enum TokenCmd {
    /// Create a token for yourself.
    Create {
        /// Description.
        #[arg(long, default_value = "")]
        description: String,
    },
    /// List tokens.
    List,
    /// Delete a token.
    Delete {
        /// Token id.
        id: String,
    },
}

/// The options of the client commands (the global ones of [`Cli`]).
const CLIENT_ARGS: [&str; 6] = ["url", "token", "user", "password", "ca_cert", "output"];

/// The commands that talk to no server: their help and completions leave
/// out [`CLIENT_ARGS`], which would do nothing there.
pub const LOCAL_COMMANDS: [&str; 5] = ["serve", "admin", "completions", "send", "demo"];

/// The command line of `metalcast`: [`Cli`], with the client options hidden
/// under [`LOCAL_COMMANDS`]. They stay global (so `metalcast -o json node
/// list` and `metalcast node list -o json` both work) and are still
/// accepted there, and ignored, so no existing invocation breaks.
pub fn command() -> clap::Command {
    let mut c = Cli::command();
    // Building propagates the global options into every subcommand, where they can then be hidden.
    c.build();
    for name in LOCAL_COMMANDS {
        c = c.mut_subcommand(name, hide_client_args);
    }
    c
}

/// `c` and its subcommands without the client options in their help.
fn hide_client_args(c: clap::Command) -> clap::Command {
    // mut_args keeps the arguments in place: the built command's key map
    // indexes them (mut_arg would move one to the end and `--help` would
    // then find another argument).
    let mut c = c.mut_args(|a| if CLIENT_ARGS.contains(&a.get_id().as_str()) { a.hide(true) } else { a });
    let subs: Vec<String> = c.get_subcommands().map(|s| s.get_name().to_string()).collect();
    for name in subs {
        c = c.mut_subcommand(name, hide_client_args);
    }
    c
}

/// True for a command that talks to a server (uses the client options).
pub fn is_client(cmd: &Command) -> bool {
    !matches!(
        cmd,
        Command::Serve { .. } | Command::Admin(_) | Command::Completions { .. } | Command::Send(_) | Command::Demo(_)
    )
}

fn parse_vlan_range(s: &str) -> Result<metalcast_control_plane::VlanPool, String> {
    let (a, b) = s.split_once('-').ok_or("expected FIRST-LAST")?;
    let first: u16 = a.trim().parse().map_err(|_| "bad first VLAN id")?;
    let last: u16 = b.trim().parse().map_err(|_| "bad last VLAN id")?;
    if first == 0 || last > 4094 || first > last {
        return Err("VLAN range must be within 1-4094 and FIRST <= LAST".into());
    }
    Ok(metalcast_control_plane::VlanPool { first, last })
}

impl Cli {
    /// Settles which credentials a client command uses. A flag on the
    /// command line beats the environment (`--user alice` while
    /// `METALCAST_TOKEN` is exported uses alice, not the token); a token and
    /// a user given the same way (both flags, or both variables) are refused,
    /// since either choice could act as someone the caller did not mean.
    pub fn settle_credentials(&mut self, m: &ArgMatches) -> Result<(), String> {
        // Global arguments: clap propagates their values (and sources) to the top-level matches.
        let from_flag = |id: &str| m.value_source(id) == Some(ValueSource::CommandLine);
        if self.token.is_some() && self.user.is_some() {
            match (from_flag("token"), from_flag("user")) {
                (true, false) => self.user = None,
                (false, true) => self.token = None,
                (true, true) => return Err("give either --token or --user/--password, not both".into()),
                (false, false) => {
                    return Err("both METALCAST_TOKEN and METALCAST_USER are set: unset one, or choose with \
                                --token or --user on the command line"
                        .into());
                }
            }
        }
        if self.user.is_none() {
            self.password = None;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{CommandFactory, FromArgMatches};

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
        command().debug_assert();
    }

    /// `serve --help` and `admin bootstrap --help` do not offer the client
    /// options; client commands still take them before or after the verb.
    #[test]
    fn client_options_only_where_they_apply() {
        let mut c = command();
        let help = |c: &mut clap::Command, path: &[&str]| {
            let mut sc = &mut *c;
            for p in path {
                sc = sc.find_subcommand_mut(p).unwrap();
            }
            sc.render_long_help().to_string()
        };
        for path in [&["serve"][..], &["admin", "bootstrap"], &["admin"], &["completions"], &["send"], &["demo"]] {
            let h = help(&mut c, path);
            for flag in ["--url", "--token", "--user ", "--password", "--ca-cert", "--output"] {
                assert!(!h.contains(flag), "{path:?} --help offers {flag}:\n{h}");
            }
        }
        let h = help(&mut c, &["node", "list"]);
        assert!(h.contains("--url") && h.contains("--output"), "{h}");
        for argv in [
            &["metalcast", "-o", "json", "--url", "http://x:1", "node", "list"][..],
            &["metalcast", "node", "list", "-o", "json", "--url", "http://x:1"],
        ] {
            let c = Cli::from_arg_matches(&command().try_get_matches_from(argv).unwrap()).unwrap();
            assert_eq!((c.output, c.url.as_str()), (Output::Json, "http://x:1"));
        }
        for argv in
            [&["metalcast", "serve", "--help"][..], &["metalcast", "admin", "bootstrap", "-h"], &["metalcast", "-h"]]
        {
            let e = command().try_get_matches_from(argv).unwrap_err();
            assert_eq!(e.kind(), clap::error::ErrorKind::DisplayHelp, "{argv:?}: {e}");
        }
        // Still accepted (and ignored) where hidden: old scripts keep working.
        assert!(
            command().try_get_matches_from(["metalcast", "-o", "json", "serve", "--listen", "127.0.0.1:1"]).is_ok()
        );
    }

    #[test]
    fn parses_hil_style_verbs() {
        let c = Cli::try_parse_from(["metalcast", "node", "list", "free", "-o", "json"]).unwrap();
        assert!(matches!(c.command, Command::Node(NodeCmd::List { which: Which::Free, .. })));
        assert_eq!(c.output, Output::Json);
        let c = Cli::try_parse_from(["metalcast", "project", "node", "add", "p1", "n1"]).unwrap();
        assert!(matches!(c.command, Command::Project(ProjectCmd::Node(ProjectNodeCmd::Add { .. }))));
        assert!(Cli::try_parse_from(["metalcast", "serve", "--vlan-range", "5-1"]).is_err());
        // `user create alice` names the new user; it must not set the global --user.
        let m =
            Cli::command().try_get_matches_from(["metalcast", "user", "create", "alice", "--password-stdin"]).unwrap();
        let c = Cli::from_arg_matches(&m).unwrap();
        assert_eq!(c.user, None);
        assert!(matches!(c.command, Command::User(UserCmd::Create { ref user, .. }) if user == "alice"));
    }
}
