//! Loss injection through the fabric (eBPF tc program); need root + CAP_BPF.

mod common;

use std::collections::HashMap;
use std::net::UdpSocket;
use std::sync::mpsc;
use std::time::Duration;

use common::{drain, udp_receiver};
use metalcast_fabric::{Fabric, Flow, GilbertElliott, LossConfig, LossStats, skip_unless_root};

const PORT: u16 = 7000;
const PAYLOAD: usize = 200;
/// Packets the host stack itself may lose or mangle under a burst (e.g. a full
/// per-CPU backlog queue); counters and observations must agree within this.
const SLACK: u64 = 10;

/// Payload of packet `seq`: its number, then a pattern derived from it.
fn payload(seq: u32) -> Vec<u8> {
    let mut p = seq.to_be_bytes().to_vec();
    p.extend((0..PAYLOAD - 4).map(|i| (seq as usize * 7 + i) as u8));
    p
}

/// What r0 received when the sender sent `count` numbered packets to it.
struct Outcome {
    /// How many times each sequence number arrived intact.
    intact: HashMap<u32, u32>,
    /// Packets whose content did not match their sequence number.
    corrupted: usize,
    count: u32,
}

impl Outcome {
    fn received_intact(&self) -> usize {
        self.intact.len()
    }

    fn lost_fraction(&self) -> f64 {
        1.0 - self.received_intact() as f64 / f64::from(self.count)
    }

    fn duplicates(&self) -> u32 {
        self.intact.values().map(|n| n - 1).sum()
    }

    /// Mean length of runs of consecutive missing sequence numbers.
    fn mean_loss_run(&self) -> f64 {
        let (mut runs, mut lost, mut in_run) = (0u32, 0u32, false);
        for seq in 0..self.count {
            if self.intact.contains_key(&seq) {
                in_run = false;
            } else {
                lost += 1;
                if !in_run {
                    runs += 1;
                    in_run = true;
                }
            }
        }
        if runs == 0 { 0.0 } else { f64::from(lost) / f64::from(runs) }
    }
}

fn send_numbered(fabric: &Fabric, count: u32) -> Outcome {
    let r0 = fabric.host("r0");
    let dst = r0.ipv4();
    let (ready_tx, ready_rx) = mpsc::channel();
    let rx = r0
        .spawn_in(move || {
            let sock = udp_receiver(dst, PORT);
            ready_tx.send(()).expect("signal ready");
            drain(&sock, Duration::from_millis(700), Duration::from_secs(30))
        })
        .expect("spawn receiver");
    ready_rx.recv_timeout(Duration::from_secs(5)).expect("receiver ready");
    let src = fabric.sender().ipv4();
    fabric
        .sender()
        .run_in(|| {
            let sock = UdpSocket::bind((src, 0)).expect("bind");
            sock.connect((dst, PORT)).expect("connect");
            for seq in 0..count {
                sock.send(&payload(seq)).expect("send");
                // Pace (at most ~64k pps) so the stack's queues don't overflow.
                if seq % 64 == 63 {
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
        })
        .expect("run sender");
    let mut outcome = Outcome { intact: HashMap::new(), corrupted: 0, count };
    for p in rx.join().expect("receiver thread") {
        let seq = p.get(..4).map(|b| u32::from_be_bytes(b.try_into().expect("4 bytes")));
        match seq {
            Some(seq) if seq < count && p == payload(seq) => *outcome.intact.entry(seq).or_default() += 1,
            _ => outcome.corrupted += 1,
        }
    }
    outcome
}

fn fabric_with_loss(config: LossConfig) -> Fabric {
    Fabric::builder().receivers(1).link_loss("r0", Flow::ToHost, config).build().expect("build fabric")
}

fn stats(fabric: &Fabric) -> LossStats {
    fabric.host("r0").loss_stats(Flow::ToHost).expect("read stats").expect("injector attached")
}

#[test]
fn random_loss_5_percent_is_within_band() {
    skip_unless_root!(bpf);
    let fabric = fabric_with_loss(LossConfig::random_drop_percent(5.0).udp_only());
    let out = send_numbered(&fabric, 20_000);
    let st = stats(&fabric);
    let loss = out.lost_fraction() * 100.0;
    eprintln!("5% random: lost {loss:.2}%, mean run {:.2}, stats {st:?}", out.mean_loss_run());
    assert!((3.5..=6.5).contains(&loss), "loss {loss:.2}% outside 3.5..6.5%");
    assert_eq!(st.seen, 20_000, "every UDP packet passes the injector once");
    let missing = 20_000 - out.received_intact() as u64;
    assert!(st.dropped.abs_diff(missing) <= SLACK, "counter {} vs observed loss {missing}", st.dropped);
    assert_eq!(out.corrupted, 0);
    assert_eq!(out.duplicates(), 0);
}

#[test]
fn bursty_loss_has_longer_runs_than_random() {
    skip_unless_root!(bpf);
    // Gilbert: enter the bad state w.p. 1%, leave w.p. 20% -> mean burst 5,
    // average loss 1/21 (about 4.8%).
    let fabric = fabric_with_loss(LossConfig::bursty(GilbertElliott::gilbert(1.0, 20.0)).udp_only());
    let bursty = send_numbered(&fabric, 20_000);
    fabric.host("r0").set_loss(Flow::ToHost, LossConfig::random_drop_percent(5.0).udp_only()).expect("set random");
    let random = send_numbered(&fabric, 20_000);
    eprintln!(
        "bursty: lost {:.2}% mean run {:.2}; random: lost {:.2}% mean run {:.2}",
        bursty.lost_fraction() * 100.0,
        bursty.mean_loss_run(),
        random.lost_fraction() * 100.0,
        random.mean_loss_run()
    );
    assert!((0.02..0.09).contains(&bursty.lost_fraction()), "bursty loss rate off");
    assert!(bursty.mean_loss_run() > 3.0, "bursty mean run {:.2} too short", bursty.mean_loss_run());
    assert!(random.mean_loss_run() < 1.5, "random mean run {:.2} too long", random.mean_loss_run());
}

#[test]
fn duplicate_and_corrupt_are_counted_and_visible() {
    skip_unless_root!(bpf);
    let fabric = fabric_with_loss(LossConfig::none().with_duplicate_percent(10.0).udp_only());
    let out = send_numbered(&fabric, 5_000);
    let st = stats(&fabric);
    eprintln!("dup 10%: {} duplicates seen, stats {st:?}", out.duplicates());
    assert!(out.received_intact() >= 5_000 - SLACK as usize, "duplication must not lose packets");
    assert!((300..=700).contains(&out.duplicates()), "duplicates {} not near 10% of 5000", out.duplicates());
    assert!(u64::from(out.duplicates()).abs_diff(st.duplicated) <= SLACK, "every counted duplicate arrives");
    // Each copy passes the hook once more, untouched (plus ARP/IGMP/ND, not UDP).
    assert!(st.ignored >= st.duplicated, "copies must be passed untouched: {st:?}");

    fabric
        .host("r0")
        .set_loss(Flow::ToHost, LossConfig::none().with_corrupt_percent(10.0).udp_only())
        .expect("corrupt");
    let out = send_numbered(&fabric, 5_000);
    let corrupted = stats(&fabric).corrupted;
    eprintln!(
        "corrupt 10%: {} corrupted payloads seen, {} intact, counter {corrupted}",
        out.corrupted,
        out.received_intact()
    );
    assert!((300..=700).contains(&corrupted), "corrupted {corrupted} not near 10% of 5000");
    // Checksums are left stale; veth trusts them, so corrupted packets arrive.
    assert!(
        (out.corrupted as u64).abs_diff(corrupted) <= SLACK,
        "corrupted packets must arrive corrupted: seen {} vs counter {corrupted}",
        out.corrupted
    );
    assert!(out.received_intact() + out.corrupted >= 5_000 - SLACK as usize, "corruption must not drop packets");
}

#[test]
fn zero_loss_drops_nothing_and_config_changes_at_runtime() {
    skip_unless_root!(bpf);
    let fabric = fabric_with_loss(LossConfig::none());
    let out = send_numbered(&fabric, 20_000);
    let st = stats(&fabric);
    assert!(out.received_intact() >= 20_000 - SLACK as usize, "0% loss lost packets");
    assert_eq!(st.dropped, 0);
    assert!(st.seen >= 20_000, "without udp_only everything is seen: {st:?}");

    let r0 = fabric.host("r0");
    r0.set_loss(Flow::ToHost, LossConfig::random_drop_percent(100.0).udp_only()).expect("100%");
    let out = send_numbered(&fabric, 200);
    assert_eq!(out.received_intact(), 0, "100% loss let packets through");
    // ARP/ICMP still pass with udp_only: ping works.
    let ping = fabric.sender().command("ping").args(["-c", "1", "-W", "2", &r0.ipv4().to_string()]).output();
    assert!(ping.expect("ping").status.success(), "udp_only must spare ICMP");

    r0.clear_loss(Flow::ToHost);
    assert!(r0.loss_stats(Flow::ToHost).expect("stats").is_none());
    let out = send_numbered(&fabric, 200);
    assert_eq!(out.received_intact(), 200, "detached injector still drops");
}

#[test]
fn loss_from_host_direction_applies_on_the_sender_side() {
    skip_unless_root!(bpf);
    let fabric = Fabric::builder()
        .receivers(1)
        .link_loss("sender", Flow::FromHost, LossConfig::random_drop_percent(20.0).udp_only())
        .build()
        .expect("build");
    let out = send_numbered(&fabric, 5_000);
    let st = fabric.sender().loss_stats(Flow::FromHost).expect("stats").expect("attached");
    assert!((0.15..0.25).contains(&out.lost_fraction()), "loss {:.3}", out.lost_fraction());
    let missing = 5_000 - out.received_intact() as u64;
    assert!(st.dropped.abs_diff(missing) <= SLACK, "counter {} vs observed loss {missing}", st.dropped);
}
