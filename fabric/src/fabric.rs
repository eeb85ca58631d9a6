//! [`Fabric`], its [`FabricBuilder`], and the pieces it hands out: [`Host`],
//! [`Switch`], [`Tap`].

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use metalcast_ebpf::{Direction, LossConfig, LossInjector, LossStats};

use crate::cmd::{self, bridge, ip, tc};
use crate::{FabricError, Netns, sys};

/// The bridge's IGMP/MLD query response interval (hosts answer queries
/// within this; the bridge floods multicast for this long after start-up).
const QUERY_RESPONSE_INTERVAL: Duration = Duration::from_millis(500);

/// One way through a host's link to the switch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Flow {
    /// Switch -> host (the host's download). Shaped at the egress of the
    /// switch-side veth port, in the switch namespace.
    ToHost,
    /// Host -> switch (the host's upload). Shaped at the egress of the
    /// host-side veth, in the host's namespace.
    FromHost,
}

/// A token-bucket rate limit (`tc qdisc ... tbf rate .. burst ..`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    /// Sustained rate, bits per second.
    pub bits_per_sec: u64,
    /// Bucket size in bytes (burst allowed at line rate); at least one MTU.
    pub burst_bytes: u32,
}

impl Rate {
    /// `mbit` Mbit/s with a burst of 10 ms worth of traffic (at least 16 KB).
    pub fn mbit(mbit: u64) -> Self {
        Self::bits_per_sec(mbit * 1_000_000)
    }

    /// `bps` bit/s with a burst of 10 ms worth of traffic (at least 16 KB).
    pub fn bits_per_sec(bps: u64) -> Self {
        let burst = (bps / 8 / 100).clamp(16_000, u64::from(u32::MAX));
        Rate { bits_per_sec: bps, burst_bytes: u32::try_from(burst).expect("clamped to u32") }
    }

    /// Overrides the burst size.
    pub fn with_burst(mut self, bytes: u32) -> Self {
        self.burst_bytes = bytes;
        self
    }
}

/// Loss injectors of a fabric, keyed by (host name, flow).
type Injectors = Arc<Mutex<HashMap<(String, Flow), LossInjector>>>;

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding either lock (injectors, live namespaces) cannot
    // leave the map or list inconsistent.
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The switch: a Linux bridge in its own namespace.
#[derive(Debug)]
pub struct Switch {
    netns: Netns,
    bridge: String,
    vlan_filtering: bool,
}

impl Switch {
    /// The switch's namespace (run QEMU here: `switch.netns().command("qemu-system-x86_64")`).
    pub fn netns(&self) -> &Netns {
        &self.netns
    }

    /// The bridge's interface name.
    pub fn bridge(&self) -> &str {
        &self.bridge
    }

    /// Whether VLAN filtering is on.
    pub fn vlan_filtering(&self) -> bool {
        self.vlan_filtering
    }

    /// `bridge vlan add dev <port> vid <vid> [pvid untagged]`: lets `vid` through
    /// `port`; with `pvid_untagged` it is also the port's native VLAN (untagged
    /// frames in, tag stripped out). Needs VLAN filtering.
    pub fn vlan_add(&self, port: &str, vid: u16, pvid_untagged: bool) -> Result<(), FabricError> {
        self.require_vlan_filtering()?;
        let vid = vid.to_string();
        let mut args = vec!["vlan", "add", "dev", port, "vid", &vid];
        if pvid_untagged {
            args.extend(["pvid", "untagged"]);
        }
        bridge(self.netns.name(), args).map(drop)
    }

    /// `bridge vlan del dev <port> vid <vid>`. Needs VLAN filtering.
    pub fn vlan_del(&self, port: &str, vid: u16) -> Result<(), FabricError> {
        self.require_vlan_filtering()?;
        bridge(self.netns.name(), ["vlan", "del", "dev", port, "vid", &vid.to_string()]).map(drop)
    }

    /// Makes `vid` the port's only VLAN, native (pvid, untagged): removes the
    /// default VLAN 1 and adds `vid`.
    pub fn set_access_vlan(&self, port: &str, vid: u16) -> Result<(), FabricError> {
        self.vlan_add(port, vid, true)?;
        if vid != 1 {
            self.vlan_del(port, 1)?;
        }
        Ok(())
    }

    /// IPv4/IPv6 multicast groups the bridge's IGMP/MLD snooping has learned,
    /// as `(port, group)` pairs (`bridge mdb show`). Poll this to know that
    /// receivers' joins have reached the switch.
    pub fn mdb(&self) -> Result<Vec<(String, String)>, FabricError> {
        let mut command = cmd::tool("bridge", Some(self.netns.name()), ["-j", "mdb", "show"]);
        let out = cmd::run(&mut command)?;
        let parse_err = |detail: String| FabricError::Parse { command: cmd::render(&command), detail };
        let json: serde_json::Value = serde_json::from_str(&out).map_err(|e| parse_err(e.to_string()))?;
        let mut groups = Vec::new();
        for bridge in json.as_array().into_iter().flatten() {
            for entry in bridge["mdb"].as_array().into_iter().flatten() {
                if let (Some(port), Some(grp)) = (entry["port"].as_str(), entry["grp"].as_str()) {
                    groups.push((port.to_owned(), grp.to_owned()));
                }
            }
        }
        Ok(groups)
    }

    fn require_vlan_filtering(&self) -> Result<(), FabricError> {
        if self.vlan_filtering {
            Ok(())
        } else {
            Err(FabricError::InvalidConfig { reason: "VLAN helpers need FabricBuilder::vlan_filtering(true)".into() })
        }
    }
}

/// A tap device on the bridge, for a QEMU guest started in the switch
/// namespace: `-netdev tap,id=n0,ifname=<ifname>,script=no,downscript=no`.
#[derive(Debug)]
pub struct Tap {
    name: String,
    ifname: String,
    netns: Netns,
}

impl Tap {
    /// The name given to the builder.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The tap interface's name (in the switch namespace).
    pub fn ifname(&self) -> &str {
        &self.ifname
    }

    /// The namespace the tap lives in (the switch's).
    pub fn netns(&self) -> &Netns {
        &self.netns
    }
}

/// A host (sender, receiver or extra) joined to the switch by a veth pair.
pub struct Host {
    name: String,
    netns: Netns,
    switch_netns: Netns,
    ifname: String,
    port: String,
    ipv4: Ipv4Addr,
    prefix_len: u8,
    ipv6: Option<Ipv6Addr>,
    mac: [u8; 6],
    ifindex: u32,
    port_ifindex: u32,
    injectors: Injectors,
}

impl fmt::Debug for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Host")
            .field("name", &self.name)
            .field("netns", &self.netns.name())
            .field("ifname", &self.ifname)
            .field("ipv4", &self.ipv4)
            .field("mac", &self.mac_string())
            .finish_non_exhaustive()
    }
}

impl Host {
    /// The host's name in the fabric (`sender`, `r0`.., or an extra host's).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The host's network namespace.
    pub fn netns(&self) -> &Netns {
        &self.netns
    }

    /// The namespace's name.
    pub fn netns_name(&self) -> &str {
        self.netns.name()
    }

    /// The host's interface (its end of the veth pair).
    pub fn ifname(&self) -> &str {
        &self.ifname
    }

    /// The interface's index (in the host's namespace).
    pub fn ifindex(&self) -> u32 {
        self.ifindex
    }

    /// The switch-side end of the veth pair (a bridge port).
    pub fn switch_port(&self) -> &str {
        &self.port
    }

    /// The switch port's index (in the switch namespace).
    pub fn switch_port_ifindex(&self) -> u32 {
        self.port_ifindex
    }

    /// The host's IPv4 address.
    pub fn ipv4(&self) -> Ipv4Addr {
        self.ipv4
    }

    /// The IPv4 prefix length of the fabric's subnet.
    pub fn prefix_len(&self) -> u8 {
        self.prefix_len
    }

    /// The host's ULA IPv6 address, if the fabric has IPv6 enabled.
    pub fn ipv6(&self) -> Option<Ipv6Addr> {
        self.ipv6
    }

    /// The host's IPv6 link-local address (EUI-64 from the MAC; DAD is off).
    pub fn ipv6_link_local(&self) -> Ipv6Addr {
        let m = self.mac;
        Ipv6Addr::new(
            0xfe80,
            0,
            0,
            0,
            u16::from_be_bytes([m[0] ^ 0x02, m[1]]),
            u16::from_be_bytes([m[2], 0xff]),
            u16::from_be_bytes([0xfe, m[3]]),
            u16::from_be_bytes([m[4], m[5]]),
        )
    }

    /// The interface's MAC address.
    pub fn mac(&self) -> [u8; 6] {
        self.mac
    }

    /// The MAC as `aa:bb:cc:dd:ee:ff`.
    pub fn mac_string(&self) -> String {
        self.mac.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":")
    }

    /// A [`Command`] running `program` in the host's namespace.
    pub fn command(&self, program: impl AsRef<OsStr>) -> Command {
        self.netns.command(program)
    }

    /// Runs `f` on a new thread inside the host's namespace (see [`Netns::spawn_in`]).
    pub fn spawn_in<F, T>(&self, f: F) -> Result<JoinHandle<T>, FabricError>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        self.netns.spawn_in(f)
    }

    /// Runs `f` inside the host's namespace and waits (see [`Netns::run_in`]).
    pub fn run_in<F, T>(&self, f: F) -> Result<T, FabricError>
    where
        F: FnOnce() -> T + Send,
        T: Send,
    {
        self.netns.run_in(f)
    }

    /// Sets (or with `None` removes) a rate limit on one direction of the link.
    pub fn set_rate(&self, flow: Flow, rate: Option<Rate>) -> Result<(), FabricError> {
        let (ns, dev) = self.end(flow);
        match rate {
            Some(rate) => {
                if rate.bits_per_sec == 0 || rate.burst_bytes < 1600 {
                    return Err(FabricError::InvalidConfig {
                        reason: format!("rate {rate:?}: need a non-zero rate and a burst of at least one MTU"),
                    });
                }
                let bps = format!("{}bit", rate.bits_per_sec);
                let burst = rate.burst_bytes.to_string();
                tc(
                    ns,
                    ["qdisc", "replace", "dev", dev, "root", "tbf", "rate", &bps, "burst", &burst, "latency", "100ms"],
                )
                .map(drop)
            }
            None => match tc(ns, ["qdisc", "del", "dev", dev, "root"]) {
                // Deleting the default qdisc fails harmlessly: nothing to remove.
                Err(FabricError::Command { stderr, .. })
                    if stderr.contains("Cannot delete qdisc with handle of zero") =>
                {
                    Ok(())
                }
                other => other.map(drop),
            },
        }
    }

    /// Injects loss on one direction of the link: attaches the eBPF loss
    /// injector on first use, afterwards just rewrites its config.
    pub fn set_loss(&self, flow: Flow, config: LossConfig) -> Result<(), FabricError> {
        let loss_err = |source| FabricError::Loss { host: self.name.clone(), flow, source };
        let mut injectors = lock(&self.injectors);
        let key = (self.name.clone(), flow);
        if let Some(injector) = injectors.get_mut(&key) {
            return injector.set_config(config).map_err(loss_err);
        }
        let (ns, dev) = self.end(flow);
        let injector = Netns::new(ns.to_owned())
            .run_in(|| LossInjector::attach(dev, Direction::Egress, config))?
            .map_err(loss_err)?;
        injectors.insert(key, injector);
        Ok(())
    }

    /// Detaches the loss injector from one direction of the link (no-op if none).
    pub fn clear_loss(&self, flow: Flow) {
        let injector = lock(&self.injectors).remove(&(self.name.clone(), flow));
        drop(injector);
    }

    /// Counters of the loss injector on one direction (`None` if none attached).
    pub fn loss_stats(&self, flow: Flow) -> Result<Option<LossStats>, FabricError> {
        let injectors = lock(&self.injectors);
        match injectors.get(&(self.name.clone(), flow)) {
            None => Ok(None),
            Some(injector) => {
                injector.stats().map(Some).map_err(|source| FabricError::Loss { host: self.name.clone(), flow, source })
            }
        }
    }

    /// (namespace, device) whose egress carries `flow`.
    fn end(&self, flow: Flow) -> (&str, &str) {
        match flow {
            Flow::ToHost => (self.switch_netns.name(), &self.port),
            Flow::FromHost => (self.netns.name(), &self.ifname),
        }
    }
}

/// Configures a [`Fabric`]; see [`Fabric::builder`].
#[derive(Debug, Clone)]
pub struct FabricBuilder {
    receivers: usize,
    extra_hosts: Vec<String>,
    subnet: Ipv4Addr,
    ipv6: bool,
    snooping: bool,
    vlan_filtering: bool,
    rates: Vec<(String, Flow, Rate)>,
    losses: Vec<(String, Flow, LossConfig)>,
    taps: Vec<String>,
    mtu: u32,
    nic_segmentation: bool,
}

impl Default for FabricBuilder {
    fn default() -> Self {
        FabricBuilder {
            receivers: 2,
            extra_hosts: Vec::new(),
            subnet: Ipv4Addr::new(10, 77, 0, 0),
            ipv6: false,
            snooping: true,
            vlan_filtering: false,
            rates: Vec::new(),
            losses: Vec::new(),
            taps: Vec::new(),
            mtu: 1500,
            nic_segmentation: true,
        }
    }
}

impl FabricBuilder {
    /// Number of receiver hosts, named `r0`, `r1`, ... (default 2).
    pub fn receivers(mut self, n: usize) -> Self {
        self.receivers = n;
        self
    }

    /// Adds an extra host (e.g. `"attacker"`) after the receivers.
    pub fn host(mut self, name: impl Into<String>) -> Self {
        self.extra_hosts.push(name.into());
        self
    }

    /// The /24 test subnet (default 10.77.0.0); host i gets `.i+1` in the
    /// order sender, receivers, extra hosts. Only used inside the fabric.
    pub fn subnet(mut self, network: Ipv4Addr) -> Self {
        self.subnet = network;
        self
    }

    /// Also give every host a ULA address `fd00:77::<i+1>/64`.
    pub fn ipv6(mut self, on: bool) -> Self {
        self.ipv6 = on;
        self
    }

    /// IGMP/MLD snooping with the bridge as querier (default on).
    pub fn snooping(mut self, on: bool) -> Self {
        self.snooping = on;
        self
    }

    /// Turn on bridge VLAN filtering (every port starts in VLAN 1, untagged);
    /// needs a kernel with `CONFIG_BRIDGE_VLAN_FILTERING`, else `build` fails
    /// with [`FabricError::Unsupported`].
    pub fn vlan_filtering(mut self, on: bool) -> Self {
        self.vlan_filtering = on;
        self
    }

    /// Rate-limits one direction of `host`'s link.
    pub fn link_rate(mut self, host: impl Into<String>, flow: Flow, rate: Rate) -> Self {
        self.rates.push((host.into(), flow, rate));
        self
    }

    /// Injects loss on one direction of `host`'s link.
    pub fn link_loss(mut self, host: impl Into<String>, flow: Flow, config: LossConfig) -> Self {
        self.losses.push((host.into(), flow, config));
        self
    }

    /// Adds a tap device on the bridge, for a QEMU guest.
    pub fn tap(mut self, name: impl Into<String>) -> Self {
        self.taps.push(name.into());
        self
    }

    /// MTU of every link and tap (default 1500; 9000 for jumbo frames).
    pub fn mtu(mut self, mtu: u32) -> Self {
        self.mtu = mtu;
        self
    }

    /// Make hosts' veths segment UDP GSO batches in software before they
    /// leave the host, as a NIC does on the wire (default on): the bridge, the
    /// loss injector and the receivers then see individual datagrams, not
    /// 64 KB super-packets that would hide per-packet cost. Needs `ethtool`.
    pub fn nic_segmentation(mut self, on: bool) -> Self {
        self.nic_segmentation = on;
        self
    }

    /// Creates the namespaces, bridge, links and shaping. On error, everything
    /// already created is removed again.
    pub fn build(self) -> Result<Fabric, FabricError> {
        crate::privileged()?;
        let names = self.host_names()?;
        let [a, b, c, d] = self.subnet.octets();
        if d != 0 {
            return Err(FabricError::InvalidConfig {
                reason: format!("subnet {} is not a /24 network address", self.subnet),
            });
        }

        let prefix = claim_prefix()?;
        track(format!("{prefix}-sw"));
        let switch_netns = Netns::new(format!("{prefix}-sw"));
        let mut fabric = Fabric {
            prefix: prefix.clone(),
            created: vec![switch_netns.name().to_owned()],
            switch: Switch {
                netns: switch_netns.clone(),
                bridge: format!("{prefix}br"),
                vlan_filtering: self.vlan_filtering,
            },
            hosts: Vec::new(),
            taps: Vec::new(),
            receivers: self.receivers,
            injectors: Arc::default(),
        };
        // From here on, an early return drops `fabric`, deleting what exists.
        let sw = switch_netns.name();
        let br = fabric.switch.bridge.clone();
        ip(sw, ["link", "set", "lo", "up"])?;
        let snoop = if self.snooping { "1" } else { "0" };
        // IGMPv3/MLDv2 queries keep hosts in v3 mode (in v2 mode, Linux hosts
        // that joined with v3 reports never send a leave). A short query
        // response interval makes hosts answer quickly and shortens the grace
        // period after which the bridge starts pruning (see below).
        let response = QUERY_RESPONSE_INTERVAL.as_millis() / 10;
        #[rustfmt::skip]
        ip(sw, [
            "link", "add", &br, "type", "bridge", "stp_state", "0",
            "mcast_snooping", snoop, "mcast_igmp_version", "3", "mcast_mld_version", "2",
            "mcast_query_response_interval", &response.to_string(),
        ])?;
        // Enabling the querier arms a timer of one response interval during
        // which the bridge floods all multicast (it waits for other queriers).
        ip(sw, ["link", "set", &br, "type", "bridge", "mcast_querier", snoop])?;
        let pruning_from = Instant::now() + QUERY_RESPONSE_INTERVAL + Duration::from_millis(50);
        if self.vlan_filtering {
            match ip(sw, ["link", "set", &br, "type", "bridge", "vlan_filtering", "1"]) {
                Err(FabricError::Command { stderr, .. }) if stderr.contains("not supported") => {
                    return Err(FabricError::Unsupported {
                        feature: "bridge vlan_filtering (CONFIG_BRIDGE_VLAN_FILTERING)",
                        detail: stderr,
                    });
                }
                other => other.map(drop)?,
            }
        }
        ip(sw, ["link", "set", &br, "up"])?;

        for (i, name) in names.iter().enumerate() {
            let host_ns = Netns::new(format!("{prefix}-{name}"));
            cmd::run(&mut cmd::tool("ip", None, ["netns", "add", host_ns.name()]))?;
            fabric.created.push(host_ns.name().to_owned());
            track(host_ns.name().to_owned());
            let h = host_ns.name();
            // No DAD: link-local (and ULA) addresses are usable immediately.
            host_ns
                .run_in(|| {
                    sys::write_sysctl("net/ipv6/conf/default/accept_dad", "0")
                        .and_then(|()| sys::write_sysctl("net/ipv6/conf/all/accept_dad", "0"))
                })?
                .map_err(|source| FabricError::Netns { netns: h.to_owned(), source })?;

            let ifname = format!("{prefix}h{i}");
            let port = format!("{prefix}p{i}");
            ip(sw, ["link", "add", &port, "type", "veth", "peer", "name", &ifname, "netns", h])?;
            let mtu = self.mtu.to_string();
            ip(sw, ["link", "set", &port, "mtu", &mtu])?;
            ip(h, ["link", "set", &ifname, "mtu", &mtu])?;
            ip(sw, ["link", "set", &port, "master", &br, "up"])?;
            ip(h, ["link", "set", "lo", "up"])?;
            ip(h, ["link", "set", &ifname, "up"])?;
            if self.nic_segmentation {
                cmd::ethtool(h, ["-K", &ifname, "tx-udp-segmentation", "off"])?;
            }
            let ipv4 = Ipv4Addr::new(a, b, c, u8::try_from(i + 1).expect("host_names caps hosts at 253"));
            ip(h, ["addr", "add", &format!("{ipv4}/24"), "brd", "+", "dev", &ifname])?;
            ip(h, ["route", "add", "239.0.0.0/8", "dev", &ifname])?;
            let ipv6 = if self.ipv6 {
                let addr = Ipv6Addr::new(0xfd00, 0x77, 0, 0, 0, 0, 0, u16::try_from(i + 1).expect("at most 253 hosts"));
                ip(h, ["-6", "addr", "add", &format!("{addr}/64"), "dev", &ifname, "nodad"])?;
                Some(addr)
            } else {
                None
            };
            let (ifindex, mac) = link_info(h, &ifname)?;
            let (port_ifindex, _) = link_info(sw, &port)?;
            fabric.hosts.push(Host {
                name: name.clone(),
                netns: host_ns.clone(),
                switch_netns: switch_netns.clone(),
                ifname,
                port,
                ipv4,
                prefix_len: 24,
                ipv6,
                mac,
                ifindex,
                port_ifindex,
                injectors: Arc::clone(&fabric.injectors),
            });
        }

        for (i, name) in self.taps.iter().enumerate() {
            let ifname = format!("{prefix}t{i}");
            ip(sw, ["tuntap", "add", "dev", &ifname, "mode", "tap"])?;
            ip(sw, ["link", "set", &ifname, "mtu", &self.mtu.to_string()])?;
            ip(sw, ["link", "set", &ifname, "master", &br, "up"])?;
            fabric.taps.push(Tap { name: name.clone(), ifname, netns: switch_netns.clone() });
        }

        for (host, flow, rate) in &self.rates {
            fabric.try_host(host)?.set_rate(*flow, Some(*rate))?;
        }
        for (host, flow, config) in &self.losses {
            fabric.try_host(host)?.set_loss(*flow, *config)?;
        }
        if self.snooping {
            // No event tells when the bridge's querier grace period is over;
            // wait it out so multicast is pruned from the moment we return.
            std::thread::sleep(pruning_from.saturating_duration_since(Instant::now()));
        }
        Ok(fabric)
    }

    fn host_names(&self) -> Result<Vec<String>, FabricError> {
        let mut names = vec!["sender".to_owned()];
        names.extend((0..self.receivers).map(|i| format!("r{i}")));
        names.extend(self.extra_hosts.iter().cloned());
        if names.len() > 253 {
            return Err(FabricError::InvalidConfig { reason: format!("{} hosts do not fit a /24", names.len()) });
        }
        for (i, name) in names.iter().enumerate() {
            let valid = !name.is_empty()
                && name.len() <= 32
                && name.bytes().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-' || c == b'_');
            if !valid || name == "sw" {
                return Err(FabricError::InvalidConfig {
                    reason: format!("host name `{name}`: use 1-32 of [a-z0-9_-], not `sw`"),
                });
            }
            if names[..i].contains(name) {
                return Err(FabricError::InvalidConfig { reason: format!("duplicate host name `{name}`") });
            }
        }
        for tap in &self.taps {
            if tap.is_empty() {
                return Err(FabricError::InvalidConfig { reason: "empty tap name".into() });
            }
        }
        Ok(names)
    }
}

/// Creates the switch namespace under a fresh prefix `mc<pid%10000 as 4 digits><n base36>` and
/// returns the prefix; retries if another process holds the name.
fn claim_prefix() -> Result<String, FabricError> {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    const ATTEMPTS: u32 = 64;
    let pid = std::process::id() % 10_000;
    let mut last = String::new();
    for _ in 0..ATTEMPTS {
        // Base-36, at most two digits: prefix <= 8 chars, so `<prefix>p<idx>`
        // stays within the 15-character interface name limit.
        let n = COUNTER.fetch_add(1, Ordering::Relaxed) % (36 * 36);
        let prefix = format!("mc{pid:04}{}", base36(n));
        last = format!("{prefix}-sw");
        match cmd::run(&mut cmd::tool("ip", None, ["netns", "add", &last])) {
            Ok(_) => return Ok(prefix),
            Err(FabricError::Command { stderr, .. }) if stderr.contains("exists") => continue,
            Err(e) => return Err(e),
        }
    }
    Err(FabricError::NameExhausted { attempts: ATTEMPTS, last })
}

fn base36(mut n: u32) -> String {
    const DIGITS: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut out = Vec::new();
    loop {
        out.push(DIGITS[(n % 36) as usize]);
        n /= 36;
        if n == 0 {
            break;
        }
    }
    out.reverse();
    String::from_utf8(out).expect("ASCII digits")
}

/// (ifindex, MAC) of `dev` in namespace `ns`.
fn link_info(ns: &str, dev: &str) -> Result<(u32, [u8; 6]), FabricError> {
    let mut command = cmd::tool("ip", Some(ns), ["-j", "link", "show", "dev", dev]);
    let out = cmd::run(&mut command)?;
    let parse_err = |detail: String| FabricError::Parse { command: cmd::render(&command), detail };
    let json: serde_json::Value = serde_json::from_str(&out).map_err(|e| parse_err(e.to_string()))?;
    let link = &json[0];
    let ifindex =
        link["ifindex"].as_u64().and_then(|i| u32::try_from(i).ok()).ok_or_else(|| parse_err("no ifindex".into()))?;
    let address = link["address"].as_str().ok_or_else(|| parse_err("no address".into()))?;
    let bytes: Vec<u8> = address.split(':').filter_map(|h| u8::from_str_radix(h, 16).ok()).collect();
    let mac = <[u8; 6]>::try_from(bytes).map_err(|_| parse_err(format!("bad MAC {address}")))?;
    Ok((ifindex, mac))
}

/// A network fabric: a switch namespace with a bridge, and hosts (one sender,
/// N receivers, extras) each in its own namespace, veth-linked to the bridge.
///
/// Dropping it detaches loss injectors and deletes exactly the namespaces it
/// created (by name), which removes all its interfaces and qdiscs.
pub struct Fabric {
    prefix: String,
    created: Vec<String>,
    switch: Switch,
    hosts: Vec<Host>,
    taps: Vec<Tap>,
    receivers: usize,
    injectors: Injectors,
}

impl fmt::Debug for Fabric {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Fabric")
            .field("prefix", &self.prefix)
            .field("switch", &self.switch)
            .field("hosts", &self.hosts)
            .field("taps", &self.taps)
            .finish_non_exhaustive()
    }
}

impl Fabric {
    /// Starts configuring a fabric (defaults: 2 receivers, 10.77.0.0/24,
    /// snooping on, no VLAN filtering, no IPv6 ULA, no shaping).
    pub fn builder() -> FabricBuilder {
        FabricBuilder::default()
    }

    /// The unique prefix of this fabric's namespace and interface names.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Names of the namespaces this fabric created (switch first).
    pub fn namespaces(&self) -> &[String] {
        &self.created
    }

    /// The switch.
    pub fn switch(&self) -> &Switch {
        &self.switch
    }

    /// All hosts: sender, receivers, extras, in that order.
    pub fn hosts(&self) -> &[Host] {
        &self.hosts
    }

    /// The sender (host `sender`).
    pub fn sender(&self) -> &Host {
        &self.hosts[0]
    }

    /// The receivers `r0`, `r1`, ...
    pub fn receivers(&self) -> &[Host] {
        &self.hosts[1..=self.receivers]
    }

    /// The host called `name`, if any.
    pub fn get_host(&self, name: &str) -> Option<&Host> {
        self.hosts.iter().find(|h| h.name == name)
    }

    /// The host called `name`, or [`FabricError::UnknownHost`].
    pub fn try_host(&self, name: &str) -> Result<&Host, FabricError> {
        self.get_host(name).ok_or_else(|| FabricError::UnknownHost { name: name.to_owned() })
    }

    /// The host called `name`.
    ///
    /// # Panics
    /// If there is no such host (a bug in the caller; see [`Fabric::try_host`]).
    pub fn host(&self, name: &str) -> &Host {
        self.get_host(name).unwrap_or_else(|| panic!("no host named `{name}` in fabric {}", self.prefix))
    }

    /// The tap called `name` (given to [`FabricBuilder::tap`]), if any.
    pub fn tap(&self, name: &str) -> Option<&Tap> {
        self.taps.iter().find(|t| t.name == name)
    }
}

impl Drop for Fabric {
    fn drop(&mut self) {
        lock(&self.injectors).clear();
        for ns in self.created.iter().rev() {
            if let Err(e) = cmd::run(&mut cmd::tool("ip", None, ["netns", "del", ns])) {
                eprintln!("metalcast-fabric: could not delete namespace {ns}: {e}");
            }
            lock(&LIVE).retain(|live| live != ns);
        }
    }
}

/// Namespaces of this process's live fabrics, for [`delete_live_namespaces`].
static LIVE: Mutex<Vec<String>> = Mutex::new(Vec::new());

fn track(ns: String) {
    lock(&LIVE).push(ns);
}

/// Deletes, by name, every namespace of every fabric of this process that has
/// not been dropped yet (newest first) and returns their names. For a
/// binary's signal handler thread, just before it exits: a process ended by a
/// signal runs no destructors. Fabrics still in use afterwards are broken;
/// dropping them later only prints that their namespaces are gone.
pub fn delete_live_namespaces() -> Vec<String> {
    let names: Vec<String> = std::mem::take(&mut *lock(&LIVE));
    for ns in names.iter().rev() {
        if let Err(e) = cmd::run(&mut cmd::tool("ip", None, ["netns", "del", ns])) {
            eprintln!("metalcast-fabric: could not delete namespace {ns}: {e}");
        }
    }
    names
}
