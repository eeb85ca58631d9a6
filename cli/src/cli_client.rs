//! The client commands (`metalcast <noun> <verb>`): one function per command
//! group over the typed [`Client`] of `metalcast-operator-api`. Each returns
//! the JSON to print: the server's answer as it sent it (`-o json`), which
//! `main` renders as a table otherwise.

use metalcast_operator_api::v0::{
    NetworkCreate, NodeFilter, NodeRegister, PowerStatus, StatusId, SwitchRegister, UserCreate,
};
use metalcast_operator_api::{Auth, Client};
use serde_json::Value;

use crate::cli::{
    Cli, Command, ConsoleVerb, MetadataCmd, NetworkCmd, NicCmd, NodeCmd, Output, PortCmd, PowerVerb, ProjectCmd,
    ProjectNodeCmd, SwitchCmd, SwitchType, TokenCmd, UserCmd, Which,
};
use crate::cli_error::{CliError, out};

/// The client for the global options: `--url`, `--token` (else `--user`
/// and `--password`), `--ca-cert`.
pub fn client(cli: &Cli) -> Result<Client, CliError> {
    let mut b = metalcast_operator_api::reqwest::Client::builder();
    if let Some(path) = &cli.ca_cert {
        let pem = std::fs::read(path).map_err(|e| CliError::Input(format!("reading {}: {e}", path.display())))?;
        let cert = metalcast_operator_api::reqwest::Certificate::from_pem(&pem)
            .map_err(|e| CliError::Input(format!("{} is not a PEM certificate: {e}", path.display())))?;
        b = b.tls_certs_only([cert]);
    }
    let auth = match (&cli.token, &cli.user) {
        (Some(t), _) => Auth::Bearer(t.clone()),
        (None, Some(u)) => Auth::Basic { user: u.clone(), password: cli.password.clone() },
        (None, None) => Auth::None,
    };
    Ok(Client::with_builder(&cli.url, auth, b)?)
}

/// A call that answers nothing: prints nothing.
fn done(r: Result<(), metalcast_operator_api::Error>) -> Result<Value, CliError> {
    r?;
    Ok(Value::Null)
}

/// A call that creates, registers, adds, grants, connects or sets something
/// and answers nothing: for humans one line saying what was done (`node n1
/// registered`); under `-o json` nothing (`null`), as before, so scripts see
/// no change.
fn made(r: Result<(), metalcast_operator_api::Error>, human: bool, what: String) -> Result<Value, CliError> {
    r?;
    Ok(if human { Value::String(what) } else { Value::Null })
}

/// The id of an asynchronous networking call, as the server sent it.
fn status_id(r: Result<String, metalcast_operator_api::Error>) -> Result<Value, CliError> {
    out(StatusId { status_id: r? })
}

/// `--wait`: polls `GET /v0/networking_action/ID` until it is no longer
/// PENDING, for at most `timeout` seconds. DONE answers the action (with its
/// `status_id`; for humans one line); ERROR and the timeout are errors (exit 1).
async fn wait_action(c: &Client, id: &str, timeout: u64, human: bool) -> Result<Value, CliError> {
    use metalcast_operator_api::v0::ActionStatus;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(timeout);
    let mut pause = std::time::Duration::from_millis(100);
    loop {
        let a = c.networking_action(id).await?;
        let what = match &a.new_network {
            Some(net) => format!("nic {} of node {} on network {net} ({})", a.nic, a.node, a.channel),
            None => format!("nic {} of node {} off its network ({})", a.nic, a.node, a.channel),
        };
        match a.status {
            ActionStatus::Done if human => return Ok(Value::String(format!("action {id} done: {what}"))),
            ActionStatus::Done => {
                let mut v = out(&a)?;
                v["status_id"] = Value::String(id.to_string());
                return Ok(v);
            }
            ActionStatus::Error => {
                return Err(CliError::Input(format!(
                    "networking action {id} ended in ERROR: the switch was not changed ({what}); \
                     see `metalcast events --node {}` and the server's log",
                    a.node
                )));
            }
            ActionStatus::Pending => {}
        }
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            return Err(CliError::Input(format!(
                "networking action {id} is still PENDING after {timeout} s; check it later with `metalcast action {id}`"
            )));
        }
        tokio::time::sleep(pause.min(left)).await;
        pause = (pause * 2).min(std::time::Duration::from_secs(2));
    }
}

/// Run a client (REST) command; returns the JSON to print.
pub async fn run_client(cli: &Cli) -> Result<Value, CliError> {
    let c = client(cli)?;
    let human = cli.output == Output::Table;
    use Command as C;
    match &cli.command {
        C::Serve { .. } | C::Admin(_) | C::Completions { .. } | C::Send(_) | C::Demo(_) => {
            Err(CliError::Input("not a client command".into()))
        }
        C::Whoami => out(c.whoami().await?),
        C::Events { node } => out(c.events(node.as_deref()).await?),
        C::Action { status_id } => out(c.networking_action(status_id).await?),
        C::Project(p) => project(&c, p, human).await,
        C::Node(n) => node(&c, n, human).await,
        C::Network(n) => network(&c, n, human).await,
        C::Switch(s) => switch(&c, s, human).await,
        C::User(u) => user(&c, u, human).await,
        C::Token(t) => token(&c, t).await,
        C::Image(i) => crate::cli_registry::run_image(&c, i).await,
        C::Keypair(k) => crate::cli_registry::run_keypair(&c, k).await,
        C::Quota(q) => crate::cli_registry::run_quota(&c, q).await,
        C::Market(m) => crate::cli_market::run_market(&c, m, cli.output == Output::Json).await,
        C::Credits(m) => crate::cli_market::run_credits(&c, m, cli.output == Output::Json).await,
        C::Enrollment(e) => crate::cli_netboot::run_enrollment(&c, e, human).await,
        C::Netboot(n) => crate::cli_netboot::run_netboot(&c, n).await,
        C::Deploy(a) => crate::cli_deploy::run(&c, a, cli.output == Output::Json).await,
    }
}

/// `metalcast project ...`
async fn project(c: &Client, cmd: &ProjectCmd, human: bool) -> Result<Value, CliError> {
    match cmd {
        ProjectCmd::List => out(c.projects().await?),
        ProjectCmd::Create { project } => {
            made(c.project_create(project).await, human, format!("project {project} created"))
        }
        ProjectCmd::Delete { project } => done(c.project_delete(project).await),
        ProjectCmd::Networks { project } => out(c.project_networks(project).await?),
        ProjectCmd::Node(ProjectNodeCmd::Add { project, node }) => {
            made(c.project_connect_node(project, node).await, human, format!("node {node} added to project {project}"))
        }
        ProjectCmd::Node(ProjectNodeCmd::Remove { project, node }) => done(c.project_detach_node(project, node).await),
        ProjectCmd::Node(ProjectNodeCmd::List { project }) => out(c.project_nodes(project).await?),
    }
}

/// `metalcast node ...`
async fn node(c: &Client, cmd: &NodeCmd, human: bool) -> Result<Value, CliError> {
    match cmd {
        NodeCmd::List { which, names: true, .. } => {
            let which = match which {
                Which::All => NodeFilter::All,
                Which::Free => NodeFilter::Free,
            };
            out(c.nodes(which).await?)
        }
        NodeCmd::List { which, project, state, long, names: false } => {
            let state = match (which, state) {
                (Which::Free, None) => Some(metalcast_operator_api::v1::NodeStatus::Free),
                (_, s) => *s,
            };
            let rows = c.node_overview(project.as_deref(), state).await?;
            let power = if *long { node_power(c, &rows).await } else { Vec::new() };
            if human {
                return Ok(Value::String(node_table(&rows, &power)));
            }
            let mut v = serde_json::to_value(&rows).map_err(|e| CliError::Failed(e.to_string()))?;
            if let Some(a) = v.as_array_mut() {
                for (row, p) in a.iter_mut().zip(&power) {
                    row["power"] = p.clone().into();
                }
            }
            Ok(v)
        }
        NodeCmd::Show { node } => {
            let mut v = out(c.node(node).await?)?;
            if human {
                decode_metadata(&mut v);
            }
            Ok(v)
        }
        NodeCmd::Runtime { node } => {
            let r = c.node_runtime(node).await?;
            if human { Ok(runtime_rows(&r)) } else { out(r) }
        }
        NodeCmd::Reclaim { node, wipe, timeout } => out(crate::cli_deploy::reclaim(c, node, *wipe, *timeout).await?),
        NodeCmd::Register { node, obm } => {
            let obm: Value =
                serde_json::from_str(obm).map_err(|err| CliError::Input(format!("--obm is not JSON: {err}")))?;
            let r = c.node_register(node, &NodeRegister { obm, metadata: Default::default() }).await;
            made(r, human, format!("node {node} registered"))
        }
        NodeCmd::Delete { node } => done(c.node_delete(node).await),
        NodeCmd::Power { verb, node } => match verb {
            PowerVerb::On => done(c.power_on(node).await),
            PowerVerb::Off => done(c.power_off(node).await),
            PowerVerb::Cycle => done(c.power_cycle(node, false).await),
            PowerVerb::Status => out(PowerStatus { power_status: c.power_status(node).await? }),
        },
        NodeCmd::Console { verb, node } => match verb {
            ConsoleVerb::Start => done(c.console_start(node).await),
            ConsoleVerb::Show => {
                let log = c.console_show(node).await?;
                if log.trim().is_empty() { Ok(Value::Null) } else { Ok(Value::String(log)) }
            }
            ConsoleVerb::Stop => done(c.console_stop(node).await),
        },
        NodeCmd::Boot { node, choice } => crate::cli_netboot::node_boot(c, node, *choice).await,
        NodeCmd::Bootdev { node, device } => done(c.set_bootdev(node, device).await),
        NodeCmd::Nic(NicCmd::Add { node, nic, macaddr }) => made(
            c.nic_register(node, nic, macaddr).await,
            human,
            format!("nic {nic} ({macaddr}) of node {node} registered"),
        ),
        NodeCmd::Nic(NicCmd::Delete { node, nic }) => done(c.nic_delete(node, nic).await),
        NodeCmd::Metadata(MetadataCmd::Set { node, label, value }) => {
            let v = serde_json::from_str(value).unwrap_or(Value::String(value.clone()));
            made(c.metadata_set(node, label, v).await, human, format!("metadata {label} of node {node} set"))
        }
        NodeCmd::Metadata(MetadataCmd::Delete { node, label }) => done(c.metadata_delete(node, label).await),
        NodeCmd::Connect { node, nic, network, channel, wait } => {
            let id = c.connect_network(node, nic, network, channel.as_deref()).await;
            if wait.wait { wait_action(c, &id?, wait.timeout, human).await } else { status_id(id) }
        }
        NodeCmd::Detach { node, nic, network, wait } => {
            let id = c.detach_network(node, nic, network).await;
            if wait.wait { wait_action(c, &id?, wait.timeout, human).await } else { status_id(id) }
        }
    }
}

/// `metalcast network ...`
async fn network(c: &Client, cmd: &NetworkCmd, human: bool) -> Result<Value, CliError> {
    match cmd {
        NetworkCmd::List => out(c.networks().await?),
        NetworkCmd::Show { network } => out(c.network(network).await?),
        NetworkCmd::Create { network, owner, access, net_id } => {
            let body = NetworkCreate { owner: owner.clone(), access: access.clone(), net_id: net_id.clone() };
            made(c.network_create(network, &body).await, human, format!("network {network} created"))
        }
        NetworkCmd::Delete { network } => done(c.network_delete(network).await),
        NetworkCmd::Attachments { network, project } => out(c.network_attachments(network, project.as_deref()).await?),
        NetworkCmd::Grant { network, project } => {
            made(c.network_grant(network, project).await, human, format!("project {project} may use network {network}"))
        }
        NetworkCmd::Revoke { network, project } => done(c.network_revoke(network, project).await),
    }
}

/// `metalcast switch ...`
async fn switch(c: &Client, cmd: &SwitchCmd, human: bool) -> Result<Value, CliError> {
    match cmd {
        SwitchCmd::List => out(c.switches().await?),
        SwitchCmd::Show { switch } => out(c.switch(switch).await?),
        SwitchCmd::Register { switch, kind, bridge, netns, parent_url, parent_project, parent_node } => {
            let body = switch_body(*kind, bridge, netns, parent_url, parent_project, parent_node)?;
            made(c.switch_register(switch, &body).await, human, format!("switch {switch} registered"))
        }
        SwitchCmd::Delete { switch } => done(c.switch_delete(switch).await),
        SwitchCmd::Port(p) => match p {
            PortCmd::Add { switch, port } => {
                made(c.port_register(switch, port).await, human, format!("port {port} of switch {switch} registered"))
            }
            PortCmd::Delete { switch, port } => done(c.port_delete(switch, port).await),
            PortCmd::Show { switch, port } => out(c.port(switch, port).await?),
            PortCmd::Connect { switch, port, node, nic } => made(
                c.port_connect_nic(switch, port, node, nic).await,
                human,
                format!("nic {nic} of node {node} connected to port {port} of switch {switch}"),
            ),
            PortCmd::Detach { switch, port } => done(c.port_detach_nic(switch, port).await),
            PortCmd::Revert { switch, port } => status_id(c.port_revert(switch, port).await),
        },
    }
}

/// The body of `switch register`; a flag of another type is refused.
fn switch_body(
    kind: SwitchType,
    bridge: &Option<String>,
    netns: &Option<String>,
    parent_url: &Option<String>,
    parent_project: &Option<String>,
    parent_node: &Option<String>,
) -> Result<SwitchRegister, CliError> {
    let flags = [
        ("--bridge", bridge.is_some()),
        ("--netns", netns.is_some()),
        ("--parent-url", parent_url.is_some()),
        ("--parent-project", parent_project.is_some()),
        ("--parent-node", parent_node.is_some()),
    ];
    let (type_name, allowed): (&str, &[&str]) = match kind {
        SwitchType::LinuxBridge => ("linux-bridge", &["--bridge", "--netns"]),
        SwitchType::LinuxVlanBridges => ("linux-vlan-bridges", &["--netns"]),
        SwitchType::Upstream => ("upstream", &["--parent-url", "--parent-project", "--parent-node"]),
    };
    if let Some((flag, _)) = flags.iter().find(|(f, given)| *given && !allowed.contains(f)) {
        return Err(CliError::Input(format!("{flag} does not apply to --type {type_name}")));
    }
    let need = |v: &Option<String>, flag: &str| {
        v.clone().ok_or_else(|| CliError::Input(format!("--type {type_name} needs {flag}")))
    };
    Ok(match kind {
        SwitchType::LinuxBridge => {
            SwitchRegister::LinuxBridge { bridge: need(bridge, "--bridge")?, netns: netns.clone() }
        }
        SwitchType::LinuxVlanBridges => SwitchRegister::VlanBridges { netns: need(netns, "--netns")? },
        SwitchType::Upstream => SwitchRegister::Upstream {
            url: need(parent_url, "--parent-url")?,
            project: need(parent_project, "--parent-project")?,
            node: need(parent_node, "--parent-node")?,
        },
    })
}

/// `metalcast user ...`
async fn user(c: &Client, cmd: &UserCmd, human: bool) -> Result<Value, CliError> {
    match cmd {
        UserCmd::Create { user, admin, password_stdin, new_password } => {
            let password = new_user_password(user, *password_stdin, new_password.as_deref())?;
            let body = UserCreate { password, is_admin: *admin };
            let kind = if *admin { "admin user" } else { "user" };
            made(c.user_create(user, &body).await, human, format!("{kind} {user} created"))
        }
        UserCmd::List => out(c.users().await?),
        UserCmd::Show { user } => match c.users().await?.remove(user) {
            Some(info) => out(info),
            None => Err(CliError::Api(metalcast_operator_api::Error::Api {
                status: 404,
                body: metalcast_operator_api::ErrorBody {
                    kind: "NotFoundError".into(),
                    msg: format!("user {user:?} does not exist"),
                },
            })),
        },
        UserCmd::SetAdmin { user, admin } => {
            let r = c.user_set_admin(user, *admin).await;
            let what = if *admin { "is now an administrator" } else { "is no longer an administrator" };
            made(r, human, format!("user {user} {what}"))
        }
        UserCmd::Delete { user } => done(c.user_delete(user).await),
        UserCmd::AddProject { user, project } => {
            made(c.user_add_project(user, project).await, human, format!("user {user} added to project {project}"))
        }
        UserCmd::RemoveProject { user, project } => done(c.user_remove_project(user, project).await),
    }
}

/// The password of `user create`: from stdin with `--password-stdin`, else
/// the deprecated `--new-password` (with a warning), else
/// `METALCAST_NEW_PASSWORD`, else asked for on the terminal.
fn new_user_password(user: &str, from_stdin: bool, argv: Option<&str>) -> Result<String, CliError> {
    use std::io::IsTerminal;
    let password = if from_stdin {
        let mut line = String::new();
        std::io::stdin()
            .read_line(&mut line)
            .map_err(|e| CliError::Input(format!("reading the password from stdin: {e}")))?;
        line.trim_end_matches(['\n', '\r']).to_string()
    } else if let Some(p) = argv {
        eprintln!(
            "warning: --new-password is deprecated (other users can read a command line): \
             use the prompt, --password-stdin or METALCAST_NEW_PASSWORD"
        );
        p.to_string()
    } else if let Ok(p) = std::env::var("METALCAST_NEW_PASSWORD") {
        p
    } else if std::io::stdin().is_terminal() {
        let ask = |prompt: String| {
            rpassword::prompt_password(prompt).map_err(|e| CliError::Input(format!("reading the password: {e}")))
        };
        let first = ask(format!("password for {user}: "))?;
        if ask(format!("password for {user} (again): "))? != first {
            return Err(CliError::Input("the two passwords differ".into()));
        }
        first
    } else {
        return Err(CliError::Input(
            "no password for the new user: stdin is not a terminal to ask on; give it with --password-stdin \
             or METALCAST_NEW_PASSWORD"
                .into(),
        ));
    };
    if password.is_empty() {
        return Err(CliError::Input("the password is empty".into()));
    }
    Ok(password)
}

/// `metalcast token ...`
async fn token(c: &Client, cmd: &TokenCmd) -> Result<Value, CliError> {
    match cmd {
        TokenCmd::Create { description } => out(c.token_create(description).await?),
        TokenCmd::List => out(c.tokens().await?),
        TokenCmd::Delete { id } => done(c.token_delete(id).await),
    }
}

/// Each node's power state as its BMC says it (`on`, `off`; `none` without
/// a BMC; `?` when the call failed), 8 calls at a time, 10 s each.
async fn node_power(c: &Client, rows: &[metalcast_operator_api::v1::NodeSummary]) -> Vec<String> {
    use futures_util::StreamExt;
    futures_util::stream::iter(rows.iter().map(|r| async move {
        match tokio::time::timeout(std::time::Duration::from_secs(10), c.power_status(&r.name)).await {
            Ok(Ok(p)) => format!("{p:?}").to_lowercase(),
            Ok(Err(metalcast_operator_api::Error::Api { status: 501, .. })) => "none".to_string(),
            _ => "?".to_string(),
        }
    }))
    .buffered(8)
    .collect()
    .await
}

/// `node show` for humans: each metadata value as the value it is. The API
/// sends every value as its JSON text (HIL's format: the string `rack 4` is
/// `"\"rack 4\""`), which `-o json` keeps; a table shows `rack 4`, a number
/// as the number, a list or an object as the table shows any other.
fn decode_metadata(node: &mut Value) {
    let Some(labels) = node.get_mut("metadata").and_then(Value::as_object_mut) else { return };
    for value in labels.values_mut() {
        if let Some(decoded) = value.as_str().and_then(|text| serde_json::from_str::<Value>(text).ok()) {
            *value = decoded;
        }
    }
}

pub(crate) use metalcast_operator_api::display::ago;

/// `node list` for humans: one row per node (`power` when `--long`).
fn node_table(rows: &[metalcast_operator_api::v1::NodeSummary], power: &[String]) -> String {
    let mut t = crate::table::plain();
    let mut header = vec!["NAME", "PROJECT", "STATE", "LAST DEPLOYMENT", "CHECK-IN"];
    if !power.is_empty() {
        header.push("POWER");
    }
    t.set_header(header);
    for (i, r) in rows.iter().enumerate() {
        let last = match (r.last_deployment, &r.last_deployment_state) {
            (Some(id), Some(s)) => format!("{id} ({s})"),
            (Some(id), None) => id.to_string(),
            _ => "-".to_string(),
        };
        let mut row = vec![
            r.name.clone(),
            r.project.clone().unwrap_or_else(|| "-".into()),
            r.state.as_str().to_string(),
            last,
            r.checkin_age_secs.map_or_else(|| "never".to_string(), ago),
        ];
        if let Some(p) = power.get(i) {
            row.push(p.clone());
        }
        t.add_row(row);
    }
    crate::table::finish(t, &[]).trim_end_matches('\n').to_string()
}

/// `node runtime` for humans: one row per fact, sizes in GiB, the check-in's
/// age in seconds, the inventory summed up (`-o json` has all of it).
fn runtime_rows(r: &metalcast_operator_api::v1::NodeRuntime) -> Value {
    let gib = |b: u64| format!("{:.1} GiB", b as f64 / f64::from(1u32 << 30));
    let mut rows = serde_json::Map::new();
    rows.insert("node".into(), r.node.clone().into());
    rows.insert("checked in".into(), (if r.checked_in { "yes" } else { "no" }).into());
    rows.insert("role".into(), r.role.clone().into());
    rows.insert("mac".into(), r.mac.clone().into());
    rows.insert("address".into(), r.address.clone().into());
    rows.insert("boot id".into(), r.boot_id.clone().into());
    rows.insert("last check-in".into(), r.secs_since_checkin.map(|s| ago(s as i64)).into());
    // The inventory's fields as the runtime API defines them (`metalcast_runtime_api::Inventory`).
    if let Some(i) = &r.inventory {
        let text = |v: &Value| v.as_str().unwrap_or("?").to_string();
        let list = |key: &str, f: &dyn Fn(&Value) -> String| {
            i[key].as_array().map(|a| a.iter().map(f).collect::<Vec<_>>().join(", ")).unwrap_or_default()
        };
        rows.insert("kernel".into(), i["kernel"].clone());
        rows.insert("cpus".into(), i["cpus"].clone());
        rows.insert("memory".into(), i["memory_bytes"].as_u64().map(gib).into());
        rows.insert(
            "disks".into(),
            list("disks", &|d| {
                format!("{} {}", text(&d["name"]), d["size_bytes"].as_u64().map(gib).unwrap_or_default())
            })
            .into(),
        );
        rows.insert("nics".into(), list("nics", &|n| format!("{} {}", text(&n["name"]), text(&n["mac"]))).into());
    }
    if let Some(rep) = &r.last_report {
        let field = |k: &str| rep[k].as_str().map(str::to_string).unwrap_or_else(|| rep[k].to_string());
        rows.insert(
            "last report".into(),
            format!("{} {}: {}", field("phase"), field("status"), field("detail")).into(),
        );
    }
    Value::Object(rows)
}

#[cfg(test)]
mod tests {
    use super::*;
    use metalcast_operator_api::{Error, ErrorBody};

    fn api(status: u16) -> CliError {
        CliError::Api(Error::Api { status, body: ErrorBody { msg: "m".into(), kind: "X".into() } })
    }

    #[test]
    fn switch_bodies() {
        let s = |v: &str| Some(v.to_string());
        let body =
            |kind, b, n, u, p, nd| serde_json::to_value(switch_body(kind, &b, &n, &u, &p, &nd).unwrap()).unwrap();
        assert_eq!(
            body(SwitchType::LinuxBridge, s("br0"), None, None, None, None),
            serde_json::json!({"type": "linux-bridge", "bridge": "br0"})
        );
        assert_eq!(
            body(SwitchType::LinuxVlanBridges, None, s("sw"), None, None, None),
            serde_json::json!({"type": "linux-vlan-bridges", "netns": "sw"})
        );
        assert_eq!(
            body(SwitchType::Upstream, None, None, s("http://p:7000"), s("pa"), s("n1")),
            serde_json::json!({"type": "upstream", "url": "http://p:7000", "project": "pa", "node": "n1"})
        );
        let e = switch_body(SwitchType::LinuxVlanBridges, &s("br0"), &s("sw"), &None, &None, &None).unwrap_err();
        assert_eq!(e.to_string(), "--bridge does not apply to --type linux-vlan-bridges");
    }

    #[test]
    fn metadata_values_for_humans() {
        let mut v = serde_json::json!({"name": "n1", "metadata": {
            "rack": "\"rack 4\"", "slots": "4", "tags": "[\"gpu\",\"ssd\"]", "bmc": "{\"vendor\":\"x\"}",
            "raw": "not json"}});
        decode_metadata(&mut v);
        assert_eq!(
            v["metadata"],
            serde_json::json!({"rack": "rack 4", "slots": 4, "tags": ["gpu", "ssd"], "bmc": {"vendor": "x"},
                "raw": "not json"})
        );
        assert_eq!(
            crate::table::render_table(&v),
            "metadata.bmc.vendor  x\nmetadata.rack        rack 4\nmetadata.raw         not json\n\
             metadata.slots       4\nmetadata.tags        gpu,ssd\nname                 n1\n"
        );
    }

    #[test]
    fn exit_codes_follow_the_status() {
        assert_eq!([401, 403, 404, 409, 422, 502].map(|s| api(s).exit_code()), [4, 4, 5, 6, 7, 7]);
        assert_eq!(CliError::Api(Error::BadUrl("x".into())).exit_code(), 3);
        assert_eq!(CliError::Input("x".into()).exit_code(), 1);
        assert_eq!(CliError::Failed("x".into()).exit_code(), 8);
        assert_eq!(CliError::StreamLost { id: 9, reason: "x".into() }.exit_code(), 3);
        assert_eq!(api(404).to_string(), "404: m");
    }
}
