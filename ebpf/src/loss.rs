//! Loss injector: loader for `src/loss.bpf.c`, a tc classifier (clsact, or tcx
//! on kernels >= 6.6) that drops, duplicates and corrupts packets.
//!
//! The loss model, applied to each packet that is *subject* to it (all packets,
//! or only UDP when [`LossConfig::udp_only`] is set so ARP/IGMP/ICMP survive):
//!
//! 1. independent random drop with probability [`LossConfig::drop_ppm`];
//! 2. if [`LossConfig::gilbert_elliott`] is set, a two-state Markov chain
//!    (one per attached link): the packet is lost with the current state's loss
//!    probability, then the chain moves good->bad / bad->good;
//! 3. a surviving packet is duplicated (one extra copy, sent right before it
//!    via `bpf_clone_redirect` to the same interface and direction) with
//!    probability [`LossConfig::duplicate_ppm`];
//! 4. a surviving UDP packet has one payload byte (uniformly chosen) XORed with
//!    a random non-zero value with probability [`LossConfig::corrupt_ppm`];
//!    checksums are left stale (veth delivers them anyway, see docs).
//!
//! All probabilities are in parts per million ([`PPM`] = certain).

use std::fmt;
use std::fs::File;
use std::io;

use aya::maps::{Array, MapError, PerCpuArray};
use aya::programs::{ProgramError, SchedClassifier, TcAttachType, tc};
use aya::{Ebpf, EbpfError};

use crate::netns;

/// One million: a probability of [`PPM`] parts per million is certainty.
pub const PPM: u32 = 1_000_000;

const CONFIG_MAP: &str = "LOSS_CONFIG";
const STATS_MAP: &str = "LOSS_STATS";
const FLAG_UDP_ONLY: u32 = 0x1;
const FLAG_GILBERT: u32 = 0x2;

/// Which way through the interface the injector acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// Packets received by the interface (tc ingress).
    Ingress,
    /// Packets sent by the interface (tc egress).
    Egress,
}

impl Direction {
    fn program(self) -> &'static str {
        match self {
            Direction::Ingress => "loss_ingress",
            Direction::Egress => "loss_egress",
        }
    }

    fn attach_type(self) -> TcAttachType {
        match self {
            Direction::Ingress => TcAttachType::Ingress,
            Direction::Egress => TcAttachType::Egress,
        }
    }
}

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Direction::Ingress => "ingress",
            Direction::Egress => "egress",
        })
    }
}

/// Gilbert-Elliott bursty loss: a two-state (good/bad) Markov chain stepped
/// once per packet. Mean burst (bad-state sojourn) length is
/// `PPM / p_bad_to_good_ppm` packets; the long-run fraction of time in the bad
/// state is `p_gb / (p_gb + p_bg)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct GilbertElliott {
    /// Probability (ppm) of moving from the good to the bad state per packet.
    pub p_good_to_bad_ppm: u32,
    /// Probability (ppm) of moving from the bad to the good state per packet.
    pub p_bad_to_good_ppm: u32,
    /// Loss probability (ppm) while in the bad state (classically 100%).
    pub loss_in_bad_ppm: u32,
    /// Loss probability (ppm) while in the good state (classically 0).
    pub loss_in_good_ppm: u32,
}

impl GilbertElliott {
    /// The classic Gilbert model: everything lost in the bad state, nothing in
    /// the good state, with the given transition probabilities in percent.
    pub fn gilbert(p_good_to_bad_percent: f64, p_bad_to_good_percent: f64) -> Self {
        GilbertElliott {
            p_good_to_bad_ppm: percent_to_ppm(p_good_to_bad_percent),
            p_bad_to_good_ppm: percent_to_ppm(p_bad_to_good_percent),
            loss_in_bad_ppm: PPM,
            loss_in_good_ppm: 0,
        }
    }
}

/// The knobs of the loss model (see the [module docs](self)). `Default` is a
/// transparent link.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LossConfig {
    /// Independent random drop probability (ppm).
    pub drop_ppm: u32,
    /// Optional bursty loss on top of the random drop.
    pub gilbert_elliott: Option<GilbertElliott>,
    /// Duplication probability (ppm) of surviving packets.
    pub duplicate_ppm: u32,
    /// Probability (ppm) of flipping one UDP payload byte of surviving packets.
    pub corrupt_ppm: u32,
    /// Only UDP (IPv4, or IPv6 without extension headers) is subject to the
    /// model; everything else (ARP, IGMP, ICMP, TCP...) passes untouched.
    pub udp_only: bool,
}

/// Converts a percentage (0.0..=100.0) to parts per million, clamped.
pub fn percent_to_ppm(percent: f64) -> u32 {
    (percent.clamp(0.0, 100.0) * 10_000.0).round() as u32
}

impl LossConfig {
    /// A transparent link (nothing dropped, duplicated or corrupted).
    pub fn none() -> Self {
        Self::default()
    }

    /// Independent random loss of `percent` % of packets.
    pub fn random_drop_percent(percent: f64) -> Self {
        LossConfig { drop_ppm: percent_to_ppm(percent), ..Self::default() }
    }

    /// Bursty loss following `model`.
    pub fn bursty(model: GilbertElliott) -> Self {
        LossConfig { gilbert_elliott: Some(model), ..Self::default() }
    }

    /// Also duplicate `percent` % of surviving packets.
    pub fn with_duplicate_percent(mut self, percent: f64) -> Self {
        self.duplicate_ppm = percent_to_ppm(percent);
        self
    }

    /// Also corrupt one UDP payload byte in `percent` % of surviving packets.
    pub fn with_corrupt_percent(mut self, percent: f64) -> Self {
        self.corrupt_ppm = percent_to_ppm(percent);
        self
    }

    /// Restrict the model to UDP packets (ARP/IGMP/ICMP/TCP pass untouched).
    pub fn udp_only(mut self) -> Self {
        self.udp_only = true;
        self
    }

    /// Checks every probability is at most [`PPM`].
    pub fn validate(&self) -> Result<(), LossError> {
        let ge = self.gilbert_elliott.unwrap_or_default();
        for (field, value) in [
            ("drop_ppm", self.drop_ppm),
            ("duplicate_ppm", self.duplicate_ppm),
            ("corrupt_ppm", self.corrupt_ppm),
            ("gilbert_elliott.p_good_to_bad_ppm", ge.p_good_to_bad_ppm),
            ("gilbert_elliott.p_bad_to_good_ppm", ge.p_bad_to_good_ppm),
            ("gilbert_elliott.loss_in_bad_ppm", ge.loss_in_bad_ppm),
            ("gilbert_elliott.loss_in_good_ppm", ge.loss_in_good_ppm),
        ] {
            if value > PPM {
                return Err(LossError::InvalidConfig { field, value });
            }
        }
        Ok(())
    }

    fn to_raw(self) -> RawConfig {
        let ge = self.gilbert_elliott.unwrap_or_default();
        let mut flags = 0;
        if self.udp_only {
            flags |= FLAG_UDP_ONLY;
        }
        if self.gilbert_elliott.is_some() {
            flags |= FLAG_GILBERT;
        }
        RawConfig {
            drop_ppm: self.drop_ppm,
            ge_p_good_bad: ge.p_good_to_bad_ppm,
            ge_p_bad_good: ge.p_bad_to_good_ppm,
            ge_loss_bad: ge.loss_in_bad_ppm,
            ge_loss_good: ge.loss_in_good_ppm,
            dup_ppm: self.duplicate_ppm,
            corrupt_ppm: self.corrupt_ppm,
            flags,
        }
    }
}

/// Mirror of `struct loss_config` in `loss.bpf.c`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
struct RawConfig {
    drop_ppm: u32,
    ge_p_good_bad: u32,
    ge_p_bad_good: u32,
    ge_loss_bad: u32,
    ge_loss_good: u32,
    dup_ppm: u32,
    corrupt_ppm: u32,
    flags: u32,
}

// SAFETY: `RawConfig` is `#[repr(C)]`, made only of `u32`s (no padding, every
// bit pattern valid), and mirrors the C `struct loss_config` byte for byte.
unsafe impl aya::Pod for RawConfig {}

/// Mirror of `struct loss_stats` in `loss.bpf.c`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
struct RawStats {
    seen: u64,
    dropped: u64,
    duplicated: u64,
    corrupted: u64,
    ignored: u64,
}

// SAFETY: `RawStats` is `#[repr(C)]`, made only of `u64`s (no padding, every
// bit pattern valid), and mirrors the C `struct loss_stats` byte for byte.
unsafe impl aya::Pod for RawStats {}

/// Counters of one injector, summed over CPUs, since it was attached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LossStats {
    /// Packets subject to the loss model.
    pub seen: u64,
    /// Of those, dropped (random or Gilbert-Elliott).
    pub dropped: u64,
    /// Of those, duplicated (one extra copy each).
    pub duplicated: u64,
    /// Of those, with one UDP payload byte flipped.
    pub corrupted: u64,
    /// Packets passed untouched: non-UDP with `udp_only`, and our own
    /// duplicates re-entering the hook.
    pub ignored: u64,
}

/// Errors of the loss injector.
#[derive(Debug, thiserror::Error)]
pub enum LossError {
    /// A probability is above [`PPM`].
    #[error("invalid loss config: {field} = {value} ppm exceeds {PPM}")]
    InvalidConfig {
        /// The offending field.
        field: &'static str,
        /// Its value.
        value: u32,
    },
    /// The embedded object could not be loaded (parsing, maps, BTF).
    #[error("loading the loss eBPF object failed: {source}")]
    Load {
        /// The aya error.
        #[source]
        source: Box<EbpfError>,
    },
    /// The object lacks an expected program or map (stale object?).
    #[error("the loss eBPF object has no {kind} named {name}")]
    Missing {
        /// "program" or "map".
        kind: &'static str,
        /// The expected name.
        name: &'static str,
    },
    /// Loading (verifying) the program failed.
    #[error("loading tc program {program} failed: {source}")]
    Verify {
        /// Program name.
        program: &'static str,
        /// The aya error.
        #[source]
        source: Box<ProgramError>,
    },
    /// Attaching the program failed.
    #[error("attaching tc program {program} to {ifname} ({direction}) failed: {source}")]
    Attach {
        /// Program name.
        program: &'static str,
        /// Interface name.
        ifname: String,
        /// Direction.
        direction: Direction,
        /// The aya error.
        #[source]
        source: Box<ProgramError>,
    },
    /// Adding the clsact qdisc failed.
    #[error("adding clsact qdisc to {ifname} failed: {source}")]
    Qdisc {
        /// Interface name.
        ifname: String,
        /// The aya error.
        #[source]
        source: Box<tc::TcError>,
    },
    /// Reading or writing a map failed.
    #[error("map {map} access failed: {source}")]
    Map {
        /// Map name.
        map: &'static str,
        /// The aya error.
        #[source]
        source: Box<MapError>,
    },
    /// The caller's network namespace could not be opened.
    #[error("opening the current network namespace failed: {source}")]
    Netns {
        /// The OS error.
        #[source]
        source: io::Error,
    },
}

/// A loss injector attached to one interface and direction. Dropping it
/// detaches the program (in the network namespace it was attached in);
/// deleting that namespace also removes it.
pub struct LossInjector {
    ebpf: Option<Ebpf>,
    ifname: String,
    direction: Direction,
    config: LossConfig,
    netns: File,
}

impl fmt::Debug for LossInjector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LossInjector")
            .field("ifname", &self.ifname)
            .field("direction", &self.direction)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl LossInjector {
    /// Loads the loss program and attaches it to `ifname` (resolved in the
    /// calling thread's network namespace) in `direction`, configured with
    /// `config`. Adds a `clsact` qdisc if needed (kernels < 6.6; newer ones
    /// use tcx links).
    pub fn attach(ifname: &str, direction: Direction, config: LossConfig) -> Result<Self, LossError> {
        let netns = netns::current().map_err(|source| LossError::Netns { source })?;
        let mut ebpf = load(direction, config)?;
        let program = classifier(&mut ebpf, direction)?;
        match tc::qdisc_add_clsact(ifname) {
            Ok(()) => {}
            Err(tc::TcError::NetlinkError(e)) if e.raw_os_error() == Some(nix::errno::Errno::EEXIST as i32) => {}
            Err(e) => return Err(LossError::Qdisc { ifname: ifname.to_owned(), source: Box::new(e) }),
        }
        program.attach(ifname, direction.attach_type()).map_err(|e| LossError::Attach {
            program: direction.program(),
            ifname: ifname.to_owned(),
            direction,
            source: Box::new(e),
        })?;
        Ok(LossInjector { ebpf: Some(ebpf), ifname: ifname.to_owned(), direction, config, netns })
    }

    /// Replaces the configuration; takes effect for the next packet. The
    /// Gilbert-Elliott state and the counters are kept.
    pub fn set_config(&mut self, config: LossConfig) -> Result<(), LossError> {
        config.validate()?;
        write_config(self.ebpf_mut(), config)?;
        self.config = config;
        Ok(())
    }

    /// The configuration last set.
    pub fn config(&self) -> LossConfig {
        self.config
    }

    /// The interface this injector is attached to.
    pub fn ifname(&self) -> &str {
        &self.ifname
    }

    /// The direction this injector acts on.
    pub fn direction(&self) -> Direction {
        self.direction
    }

    /// Reads the counters (summed over CPUs).
    pub fn stats(&self) -> Result<LossStats, LossError> {
        read_stats(self.ebpf.as_ref().expect("ebpf is only taken in Drop"))
    }

    fn ebpf_mut(&mut self) -> &mut Ebpf {
        self.ebpf.as_mut().expect("ebpf is only taken in Drop")
    }
}

/// Loads the object, writes `config`, and loads (verifies) the program for
/// `direction`, without attaching it.
fn load(direction: Direction, config: LossConfig) -> Result<Ebpf, LossError> {
    config.validate()?;
    let mut ebpf = Ebpf::load(crate::objects::LOSS).map_err(|e| LossError::Load { source: Box::new(e) })?;
    write_config(&mut ebpf, config)?;
    let program = direction.program();
    let verify_err = |e| LossError::Verify { program, source: Box::new(e) };
    let classifier: &mut SchedClassifier = ebpf
        .program_mut(program)
        .ok_or(LossError::Missing { kind: "program", name: program })?
        .try_into()
        .map_err(verify_err)?;
    classifier.load().map_err(verify_err)?;
    Ok(ebpf)
}

/// The (loaded) classifier for `direction`.
fn classifier(ebpf: &mut Ebpf, direction: Direction) -> Result<&mut SchedClassifier, LossError> {
    let program = direction.program();
    ebpf.program_mut(program)
        .ok_or(LossError::Missing { kind: "program", name: program })?
        .try_into()
        .map_err(|e| LossError::Verify { program, source: Box::new(e) })
}

fn read_stats(ebpf: &Ebpf) -> Result<LossStats, LossError> {
    let map_err = |e| LossError::Map { map: STATS_MAP, source: Box::new(e) };
    let map = ebpf.map(STATS_MAP).ok_or(LossError::Missing { kind: "map", name: STATS_MAP })?;
    let array: PerCpuArray<_, RawStats> = PerCpuArray::try_from(map).map_err(map_err)?;
    let per_cpu = array.get(&0, 0).map_err(map_err)?;
    Ok(per_cpu.iter().fold(LossStats::default(), |acc, s| LossStats {
        seen: acc.seen + s.seen,
        dropped: acc.dropped + s.dropped,
        duplicated: acc.duplicated + s.duplicated,
        corrupted: acc.corrupted + s.corrupted,
        ignored: acc.ignored + s.ignored,
    }))
}

fn write_config(ebpf: &mut Ebpf, config: LossConfig) -> Result<(), LossError> {
    let map_err = |e| LossError::Map { map: CONFIG_MAP, source: Box::new(e) };
    let map = ebpf.map_mut(CONFIG_MAP).ok_or(LossError::Missing { kind: "map", name: CONFIG_MAP })?;
    let mut array: Array<_, RawConfig> = Array::try_from(map).map_err(map_err)?;
    array.set(0, config.to_raw(), 0).map_err(map_err)
}

impl Drop for LossInjector {
    fn drop(&mut self) {
        // tcx links detach when their fd closes, wherever that happens; legacy
        // netlink filters are removed by ifindex, which is only meaningful in
        // the namespace we attached in. So drop there; if that namespace can
        // no longer be entered, leak the handles rather than risk detaching
        // something else (the namespace's deletion removes the filter anyway).
        let mut slot = self.ebpf.take();
        if netns::run_in(&self.netns, || drop(slot.take())).is_err() {
            std::mem::forget(slot.take());
        }
    }
}

#[cfg(test)]
mod tests {
    //! Config unit tests, and `BPF_PROG_TEST_RUN` tests of the program itself
    //! (need `CAP_BPF`; SKIP otherwise). Duplication is not exercised here:
    //! under test-run, `bpf_clone_redirect` would emit on the caller's
    //! loopback; the fabric's tests cover it.

    use aya::programs::{TestRun, TestRunOptions};

    use super::*;

    const TC_ACT_OK: u32 = 0;
    const TC_ACT_SHOT: u32 = 2;
    const HEADERS: usize = 14 + 20 + 8;

    fn bpf_capable() -> Result<(), String> {
        let status = std::fs::read_to_string("/proc/self/status").map_err(|e| e.to_string())?;
        let caps = status
            .lines()
            .find_map(|l| l.strip_prefix("CapEff:"))
            .and_then(|h| u64::from_str_radix(h.trim(), 16).ok())
            .ok_or("no CapEff")?;
        if caps & (1 << 39) == 0 { Err("needs CAP_BPF (run as root)".into()) } else { Ok(()) }
    }

    macro_rules! skip_unless_bpf {
        ($name:literal) => {
            if let Err(reason) = bpf_capable() {
                // CI (root, METALCAST_REQUIRE_PRIVILEGED=1) must not skip.
                assert!(
                    std::env::var("METALCAST_REQUIRE_PRIVILEGED").map_or(true, |v| v != "1"),
                    "{} cannot run: {reason}",
                    $name
                );
                eprintln!("SKIP {}: {reason}", $name);
                return;
            }
        };
    }

    /// Ethernet + IPv4 + UDP packet with a 32-byte payload of 0xAA.
    fn udp_packet() -> Vec<u8> {
        let mut p = vec![0x02, 0, 0, 0, 0, 1, 0x02, 0, 0, 0, 0, 2, 0x08, 0x00];
        let total: u16 = 20 + 8 + 32;
        p.extend([0x45, 0, (total >> 8) as u8, total as u8, 0, 0, 0x40, 0, 64, 17, 0, 0]);
        p.extend([10, 77, 0, 1, 10, 77, 0, 2]);
        p.extend([0x13, 0x88, 0x13, 0x89, 0, 40, 0, 0]);
        p.extend([0xAA; 32]);
        p
    }

    fn arp_packet() -> Vec<u8> {
        let mut p = vec![0xff; 6];
        p.extend([0x02, 0, 0, 0, 0, 1, 0x08, 0x06]);
        p.extend([0, 1, 8, 0, 6, 4, 0, 1]);
        p.extend([0u8; 20]);
        p.extend([0u8; 18]); // pad to 60 bytes
        p
    }

    struct Prog(Ebpf);

    impl Prog {
        fn new(config: LossConfig) -> Self {
            Prog(load(Direction::Egress, config).expect("load loss program"))
        }

        /// Runs the program on `packet`; returns (verdict, packet after).
        fn run(&mut self, packet: &[u8]) -> (u32, Vec<u8>) {
            let mut out = vec![0u8; packet.len() + 64];
            let program = classifier(&mut self.0, Direction::Egress).expect("program");
            let result = program
                .test_run(TestRunOptions { data_in: Some(packet), data_out: Some(&mut out), ..TestRunOptions::new() })
                .expect("BPF_PROG_TEST_RUN");
            out.truncate(result.data_size_out as usize);
            (result.return_value, out)
        }

        fn stats(&self) -> LossStats {
            read_stats(&self.0).expect("read stats")
        }
    }

    #[test]
    fn percent_conversion_and_validation() {
        assert_eq!(percent_to_ppm(5.0), 50_000);
        assert_eq!(percent_to_ppm(0.0001), 1);
        assert_eq!(percent_to_ppm(150.0), PPM);
        assert_eq!(percent_to_ppm(-1.0), 0);
        assert!(LossConfig::random_drop_percent(100.0).validate().is_ok());
        let bad = LossConfig { corrupt_ppm: PPM + 1, ..LossConfig::none() };
        assert!(matches!(bad.validate(), Err(LossError::InvalidConfig { field: "corrupt_ppm", .. })));
        let raw = LossConfig::bursty(GilbertElliott::gilbert(1.0, 20.0)).udp_only().to_raw();
        assert_eq!(raw.flags, FLAG_UDP_ONLY | FLAG_GILBERT);
        assert_eq!((raw.ge_p_good_bad, raw.ge_p_bad_good, raw.ge_loss_bad), (10_000, 200_000, PPM));
    }

    #[test]
    fn test_run_pass_and_drop() {
        skip_unless_bpf!("test_run_pass_and_drop");
        let packet = udp_packet();
        let mut pass = Prog::new(LossConfig::none());
        assert_eq!(pass.run(&packet), (TC_ACT_OK, packet.clone()));
        let mut drop_all = Prog::new(LossConfig::random_drop_percent(100.0));
        assert_eq!(drop_all.run(&packet).0, TC_ACT_SHOT);
        let st = drop_all.stats();
        assert_eq!((st.seen, st.dropped), (1, 1));
    }

    #[test]
    fn test_run_udp_only_spares_arp() {
        skip_unless_bpf!("test_run_udp_only_spares_arp");
        let mut prog = Prog::new(LossConfig::random_drop_percent(100.0).udp_only());
        assert_eq!(prog.run(&arp_packet()).0, TC_ACT_OK, "ARP must pass with udp_only");
        assert_eq!(prog.run(&udp_packet()).0, TC_ACT_SHOT, "UDP must be dropped");
        let st = prog.stats();
        assert_eq!((st.seen, st.dropped, st.ignored), (1, 1, 1));
    }

    #[test]
    fn test_run_corrupt_flips_one_payload_byte() {
        skip_unless_bpf!("test_run_corrupt_flips_one_payload_byte");
        let packet = udp_packet();
        let mut prog = Prog::new(LossConfig::none().with_corrupt_percent(100.0));
        for _ in 0..20 {
            let (verdict, out) = prog.run(&packet);
            assert_eq!(verdict, TC_ACT_OK);
            assert_eq!(out.len(), packet.len());
            assert_eq!(out[..HEADERS], packet[..HEADERS], "headers must be untouched");
            let changed = out.iter().zip(&packet).filter(|(a, b)| a != b).count();
            assert_eq!(changed, 1, "exactly one payload byte flipped");
        }
        assert_eq!(prog.stats().corrupted, 20);
    }

    #[test]
    fn test_run_gilbert_elliott_state_machine() {
        skip_unless_bpf!("test_run_gilbert_elliott_state_machine");
        // Always go bad, never come back; lose everything in bad, nothing in good.
        let model =
            GilbertElliott { p_good_to_bad_ppm: PPM, p_bad_to_good_ppm: 0, loss_in_bad_ppm: PPM, loss_in_good_ppm: 0 };
        let mut prog = Prog::new(LossConfig::bursty(model));
        let packet = udp_packet();
        assert_eq!(prog.run(&packet).0, TC_ACT_OK, "first packet is decided in the good state");
        for _ in 0..10 {
            assert_eq!(prog.run(&packet).0, TC_ACT_SHOT, "then the chain is stuck in bad");
        }
        // Leaving the bad state for sure: the next packet is still lost (decided
        // in bad), the one after passes.
        let mut ebpf = prog.0;
        write_config(
            &mut ebpf,
            LossConfig::bursty(GilbertElliott { p_bad_to_good_ppm: PPM, p_good_to_bad_ppm: 0, ..model }),
        )
        .expect("reconfigure");
        let mut prog = Prog(ebpf);
        assert_eq!(prog.run(&packet).0, TC_ACT_SHOT);
        assert_eq!(prog.run(&packet).0, TC_ACT_OK);
        assert_eq!(prog.stats().dropped, 11);
    }
}
