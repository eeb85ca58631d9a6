//! A discrete-event simulation of one sender and 10 to 10,000 receivers,
//! predicting wire bytes and time until all are done for three schemes:
//!
//! - **metalcast**: the repair scheme of `docs/wire-protocol.md` and
//!   `transport/src/sender.rs`. The sender streams each block's source symbols
//!   once; after a block's burst, receivers' reports (every 5 ms) reach the
//!   sender, which gathers for 6 ms and sends the **maximum** need over all
//!   receivers (each receiver's need inflated by its loss rate,
//!   `need + ceil(need p / (1 - p))`) as fresh repair symbols; repeats until
//!   every receiver has the block. A receiver holding K + h symbols (h >= 0)
//!   with some lost decodes with probability 1 - 0.01^(h+1) (RFC 6330's figure
//!   for RaptorQ); a failed decode asks for one more symbol. Repair bursts and first-pass blocks
//!   alternate, as in the sender; the last block is closed by the poll the
//!   sender sends as soon as it goes idle.
//! - **nack** (udpcast-style ARQ): data in slices of `slice` packets; after
//!   each slice every receiver acknowledges or lists what it lost, and the
//!   sender retransmits the **union** of lost packets, round after round,
//!   until every receiver has the slice. Each round costs one round trip plus
//!   the sender's handling of N acknowledgements.
//! - **unicast** (HTTP over TCP): N streams share the sender's link; each lost
//!   segment is sent again (1/(1-p) transmissions per segment); a stream is
//!   also capped by TCP's loss response (Mathis: MSS/RTT x 1.22/sqrt(p)).
//!
//! Loss is per receiver and independent across receivers: random (Bernoulli)
//! or bursty (Gilbert: lose everything in the bad state), like the fabric's
//! eBPF injector. Time is driven by the sender's link: every packet takes its
//! frame's time at the link rate (or at metalcast's payload rate cap). For
//! metalcast, CPU bounds time too: per-packet and per-decode costs of each
//! receiver (each on its own CPUs, or all sharing the cores of one box, as on
//! the test fabric), plus a fixed start-up (join phase).

use std::collections::BinaryHeap;

use crate::suite::Loss;

/// Simulation parameters.
#[derive(Debug, Clone)]
pub struct Config {
    /// Receivers.
    pub receivers: usize,
    /// Loss on every receiver's link.
    pub loss: Loss,
    /// Image bytes (incompressible: stored = raw).
    pub image_bytes: u64,
    /// Bundle chunk size, bytes: one chunk is one RaptorQ source block
    /// (`metalcast-image build --chunk-size`; 1 MiB by default).
    pub chunk_bytes: u64,
    /// Link MTU.
    pub mtu: usize,
    /// Sender link rate, Mbit/s of Ethernet frames.
    pub link_mbit: f64,
    /// metalcast's payload rate cap, Mbit/s (0: none).
    pub rate_mbit: f64,
    /// Round trip sender -> receiver -> sender, seconds (reports, acks, TCP).
    pub rtt: f64,
    /// Sender CPU per acknowledgement handled (nack scheme), seconds.
    pub ack_cost: f64,
    /// NACK slice size, packets (udpcast adapts up to 1024).
    pub slice: usize,
    /// Seed of the random stream (same seed, same result).
    pub seed: u64,
    /// metalcast receiver CPU per packet received (recvmmsg share, MAC check, copy), seconds.
    pub rx_packet_cpu: f64,
    /// metalcast receiver CPU per block that needs a RaptorQ decode (a chunk), seconds: the fixed part.
    pub decode_cpu: f64,
    /// metalcast receiver CPU per lost source symbol a decode recovers, seconds (blocks that
    /// lost at most `MAX_FAST_ERASURES` source symbols: the few-erasure decoder).
    pub decode_symbol_cpu: f64,
    /// metalcast receiver CPU per block that lost more: a full RaptorQ decode, seconds.
    pub full_decode_cpu: f64,
    /// metalcast sender CPU per packet sent (read, encode, MAC, GSO send), seconds.
    pub tx_packet_cpu: f64,
    /// `Some(c)`: sender and all receivers share `c` cores (a one-box fabric); `None`: each has its own.
    pub shared_cores: Option<f64>,
    /// Share of the shared cores' time a CPU-bound one-box run really keeps busy with the
    /// session (scheduling gaps, waits), 0 to 1; calibrated by `simulate --validate`.
    pub cpu_efficiency: f64,
    /// Fixed start-up cost of a metalcast session (join phase), seconds.
    pub startup: f64,
    /// metalcast's feedback: plans and suppression (wire version 4, `true`),
    /// or every receiver reporting every 5 ms (version 3).
    pub suppression: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            receivers: 8,
            loss: Loss::Random(1.0),
            image_bytes: 1 << 30,
            chunk_bytes: CHUNK,
            mtu: 1500,
            link_mbit: 1000.0,
            rate_mbit: 0.0,
            rtt: 200e-6,
            ack_cost: 2e-6,
            slice: 1024,
            seed: 1,
            // Defaults from the 2-vCPU dev VM at MTU 1500; `simulate --validate` measures its own
            // (and prints them) before predicting.
            rx_packet_cpu: 4.5e-6,
            decode_cpu: 0.05e-3,
            decode_symbol_cpu: 0.05e-3,
            full_decode_cpu: 2e-3,
            tx_packet_cpu: 4.3e-6,
            shared_cores: None,
            cpu_efficiency: 1.0,
            startup: 0.03,
            suppression: true,
        }
    }
}

/// One scheme's prediction.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Prediction {
    /// Scheme name.
    pub scheme: &'static str,
    /// Receivers.
    pub receivers: usize,
    /// Mean loss, percent.
    pub loss_percent: f64,
    /// Sender's data bytes at the IP level / image bytes.
    pub wire_ip: f64,
    /// Sender's data bytes at the UDP/TCP payload level / image bytes.
    pub wire_payload: f64,
    /// Feedback (reports, acks) at the IP level / image bytes, all receivers together.
    pub feedback_ip: f64,
    /// Feedback packets (reports, acks) per receiver.
    pub reports_per_receiver: f64,
    /// Packets the sender sent.
    pub packets: u64,
    /// Seconds until every receiver is done.
    pub secs: f64,
    /// Of that, what the link and the feedback loop alone would take (no CPU limit).
    pub link_secs: f64,
    /// And what the CPU work alone would take (at `cpu_efficiency`; 0 if not modelled).
    pub cpu_secs: f64,
}

/// splitmix64: small, fast, good enough for Monte Carlo, reproducible by seed.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator from a seed.
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    /// Uniform in [0, 1).
    pub fn f64(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Trials before the first success, success probability `p` (0 < p <= 1).
    pub fn geometric(&mut self, p: f64) -> u64 {
        if p >= 1.0 {
            return 0;
        }
        let u = 1.0 - self.f64(); // (0, 1]
        (u.ln() / (1.0 - p).ln()).floor().min(u64::MAX as f64 / 2.0) as u64
    }

    /// Binomial(n, p) by geometric skips: O(n p) expected.
    pub fn binomial(&mut self, n: u64, p: f64) -> u64 {
        if p <= 0.0 {
            return 0;
        }
        if p >= 1.0 {
            return n;
        }
        let (mut hits, mut i) = (0, self.geometric(p));
        while i < n {
            hits += 1;
            i += 1 + self.geometric(p);
        }
        hits
    }
}

/// One receiver's loss process.
#[derive(Debug, Clone)]
enum Channel {
    Random(f64),
    /// Gilbert: everything lost in the bad state; `left` packets remain in the current state.
    Gilbert {
        enter: f64,
        leave: f64,
        bad: bool,
        left: u64,
    },
}

impl Channel {
    fn new(loss: Loss, rng: &mut Rng) -> Self {
        match loss {
            Loss::Random(p) => Channel::Random(p / 100.0),
            Loss::Bursty { enter, leave } => {
                let (enter, leave) = (enter / 100.0, leave / 100.0);
                // Start in the stationary distribution.
                let bad = rng.f64() < enter / (enter + leave);
                let left = 1 + rng.geometric(if bad { leave } else { enter.max(1e-12) });
                Channel::Gilbert { enter, leave, bad, left }
            }
        }
    }

    /// Of `n` consecutive packets, how many arrive.
    fn receive(&mut self, n: u64, rng: &mut Rng) -> u64 {
        match self {
            Channel::Random(p) => n - rng.binomial(n, *p),
            Channel::Gilbert { enter, leave, bad, left } => {
                let (mut n, mut got) = (n, 0);
                while n > 0 {
                    let m = n.min(*left);
                    if !*bad {
                        got += m;
                    }
                    n -= m;
                    *left -= m;
                    if *left == 0 {
                        *bad = !*bad;
                        *left = 1 + rng.geometric(if *bad { *leave } else { enter.max(1e-12) });
                    }
                }
                got
            }
        }
    }
}

/// RaptorQ: chance that decoding K + extra symbols fails (about 1% at K, 100x less per extra symbol).
fn decode_fails(extra: u64, rng: &mut Rng) -> bool {
    rng.f64() < 0.01f64.powi(i32::try_from(extra + 1).unwrap_or(i32::MAX))
}

/// Symbol size for an MTU, as the transport picks it.
pub fn symbol_size(mtu: usize) -> u64 {
    metalcast_transport::SessionSpec::symbol_size_for_mtu(mtu).map(u64::from).unwrap_or(1440)
}

/// The default bundle chunk size.
const CHUNK: u64 = 1 << 20;
/// metalcast packet = IP/UDP 28 + header 16 + symbol + MAC 16 (wire version 5).
const MC_OVERHEAD_IP: u64 = 28 + metalcast_transport::packet::OVERHEAD as u64;
const ETH: u64 = 14;
const REPORT_INTERVAL: f64 = 0.005;
const GATHER: f64 = 0.006;

/// A repair burst waiting for its gather window to close.
#[derive(Debug, PartialEq)]
struct Pending {
    ready: f64,
    block: usize,
    /// Repair symbols the burst will carry.
    count: u64,
}
impl Eq for Pending {}
impl PartialOrd for Pending {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Pending {
    // Earliest first in a max-heap.
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        o.ready.total_cmp(&self.ready).then(o.block.cmp(&self.block))
    }
}

/// What one repair round of a block costs in feedback under suppression.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Round {
    /// Repair symbols the sender sends: the plan, raised by every ask above it.
    burst: u64,
    /// Need reports sent.
    asks: u64,
    /// The first ask's back-off, seconds (None: nobody asked).
    first: Option<f64>,
    /// Plans announced again (each ask above the plan raises it).
    announcements: u64,
}

/// One repair round of a block with plans and suppression: every receiver
/// hears the plan (`planned` symbols) unless its copy is lost (`p_miss`);
/// one whose need exceeds what it heard asks after a back-off uniform in
/// `[0, backoff_max / excess)`, unless a plan announced again by then (one
/// round trip after an ask that raised it) reaches it and covers it.
fn suppressed_round(needs: &[u64], planned: u64, p_miss: f64, backoff_max: f64, rtt: f64, rng: &mut Rng) -> Round {
    // (back-off, need, plan it heard)
    let mut asks: Vec<(f64, u64, u64)> = Vec::new();
    for &n in needs {
        let heard = if planned > 0 && rng.f64() >= p_miss { planned } else { 0 };
        if n > heard {
            asks.push((backoff_max * rng.f64() / (n - heard) as f64, n, heard));
        }
    }
    asks.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut round = Round { burst: planned, asks: 0, first: None, announcements: 0 };
    // (when it reaches the receivers, the plan)
    let mut announced: Vec<(f64, u64)> = Vec::new();
    for (d, n, heard) in asks {
        let latest = announced.iter().rev().find(|(t, _)| *t <= d).map(|&(_, o)| o);
        let known = match latest {
            Some(o) if rng.f64() >= p_miss => o.max(heard),
            _ => heard,
        };
        if n <= known {
            continue;
        }
        round.asks += 1;
        round.first.get_or_insert(d);
        if n > round.burst {
            round.burst = n;
            round.announcements += 1;
            announced.push((d + rtt, n));
        }
    }
    round
}

/// IP bytes of a plan packet with one entry (IP/UDP 28, header 16, body 8 + 12, MAC 16).
const PLAN_IP: u64 = MC_OVERHEAD_IP + 8 + 12;
/// IP bytes of a report with about one need (IP/UDP 28, header 16, body 48 + 8, MAC 16).
const REPORT_IP: f64 = (MC_OVERHEAD_IP + 48 + 8) as f64;

/// metalcast's scheme (see the module docs).
pub fn metalcast(cfg: &Config) -> Prediction {
    let mut rng = Rng::new(cfg.seed);
    let t = symbol_size(cfg.mtu);
    let n = cfg.receivers;
    let blocks: Vec<u64> = (0..cfg.image_bytes.div_ceil(cfg.chunk_bytes))
        .map(|b| (cfg.image_bytes - b * cfg.chunk_bytes).min(cfg.chunk_bytes).div_ceil(t))
        .collect();
    let mut pkt_time = ((t + MC_OVERHEAD_IP + ETH) * 8) as f64 / (cfg.link_mbit * 1e6);
    if cfg.rate_mbit > 0.0 {
        pkt_time = pkt_time.max(((t + MC_OVERHEAD_IP - 28) * 8) as f64 / (cfg.rate_mbit * 1e6));
    }
    let p = cfg.loss.mean_percent() / 100.0;
    let inflate = |need: u64| need + (need as f64 * p / (1.0 - p)).ceil() as u64;
    let mut chans: Vec<Channel> = (0..n).map(|_| Channel::new(cfg.loss, &mut rng)).collect();
    // Per block: symbols each receiver holds, and how many decodes failed (extra wanted).
    let mut have = vec![vec![0u64; n]; blocks.len()];
    let mut extra = vec![vec![0u64; n]; blocks.len()];
    let mut done = vec![vec![false; n]; blocks.len()];
    let mut left = vec![n; blocks.len()];
    // Per block and receiver: source symbols that arrived in the first pass.
    let mut first_got = vec![vec![0u64; n]; blocks.len()];
    // Per receiver: packets received and decode CPU seconds (for the CPU bound).
    let mut rx_pkts = vec![0u64; n];
    let mut decode_secs = vec![0f64; n];
    let mut repairs = BinaryHeap::new();
    // Version 3: the earliest report after a burst among N receivers reporting every 5 ms at random phases.
    let feedback = REPORT_INTERVAL / (n as f64 + 1.0) + cfg.rtt / 2.0 + GATHER;
    let backoff_max = metalcast_transport::feedback::backoff_max(n).as_secs_f64();
    let mut predictor = metalcast_transport::feedback::Predictor::default();
    let (mut asks, mut plans) = (0u64, 0u64);
    let (mut now, mut next_first, mut packets, mut last_done) = (0.0f64, 0usize, 0u64, 0.0f64);
    let k_max = blocks.iter().copied().max().unwrap_or(0);
    let mut repair_budget = 0u64;
    loop {
        // As the sender: due repair bursts go first while each first-pass block's
        // symbol count (at most one block's worth banked) allows, then the next block.
        let due = repairs.peek().is_some_and(|p: &Pending| p.ready <= now);
        let (b, count, first) = if due && (repair_budget > 0 || next_first == blocks.len()) {
            let Pending { block, count, .. } = repairs.pop().expect("peeked");
            repair_budget = repair_budget.saturating_sub(count);
            (block, count, false)
        } else if next_first < blocks.len() {
            next_first += 1;
            repair_budget = (repair_budget + blocks[next_first - 1]).min(k_max);
            (next_first - 1, blocks[next_first - 1], true)
        } else if let Some(p) = repairs.peek() {
            // Idle until the next gather window closes.
            now = now.max(p.ready);
            continue;
        } else {
            break;
        };
        packets += count;
        now += count as f64 * pkt_time;
        for i in 0..n {
            if done[b][i] {
                continue;
            }
            let got = chans[i].receive(count, &mut rng);
            if first {
                first_got[b][i] = got;
            }
            have[b][i] += got;
            rx_pkts[i] += got;
            let k = blocks[b];
            if have[b][i] >= k + extra[b][i] {
                // Everything arrived in the first pass: no decode. Otherwise decode, which rarely fails.
                let clean = have[b][i] == k && count == k && extra[b][i] == 0;
                if !clean {
                    let lost = k - first_got[b][i];
                    decode_secs[i] += if lost as usize <= metalcast_transport::erasure::MAX_FAST_ERASURES {
                        cfg.decode_cpu + lost as f64 * cfg.decode_symbol_cpu
                    } else {
                        cfg.full_decode_cpu
                    };
                    if decode_fails(have[b][i] - k, &mut rng) {
                        extra[b][i] = have[b][i] - k + 1;
                        continue;
                    }
                }
                done[b][i] = true;
                left[b] -= 1;
            }
        }
        if first && cfg.suppression {
            // The plan announced with the block's source symbols (zero entries if nothing is planned).
            plans += 1;
        }
        if left[b] == 0 {
            last_done = last_done.max(now);
            continue;
        }
        // What each receiver still missing the block needs (inflated by its loss rate).
        let needs: Vec<u64> = (0..n)
            .filter(|&i| !done[b][i])
            .map(|i| inflate((blocks[b] + extra[b][i]).saturating_sub(have[b][i]).max(1)))
            .collect();
        let (count, ready) = if cfg.suppression {
            let predict = first && metalcast_transport::feedback::predicts(n);
            let planned = if predict { u64::from(predictor.plan()) } else { 0 };
            let r = suppressed_round(&needs, planned, p, backoff_max, cfg.rtt, &mut rng);
            asks += r.asks;
            plans += r.announcements;
            if first {
                predictor
                    .update(u32::try_from(planned).unwrap_or(u32::MAX), u32::try_from(r.burst).unwrap_or(u32::MAX));
            }
            // The block's own plan opened the gather window as its source ended; after
            // a burst, the first ask does.
            let wait = if first { GATHER } else { r.first.unwrap_or(0.0) + cfg.rtt / 2.0 + GATHER };
            (r.burst, now + wait)
        } else {
            (needs.iter().copied().max().unwrap_or(0), now + feedback)
        };
        repairs.push(Pending { ready, block: b, count });
    }
    // The link bounds time; so does CPU: each host's own, or the shared cores of a one-box fabric.
    let rx_cpu: Vec<f64> = (0..n).map(|i| rx_pkts[i] as f64 * cfg.rx_packet_cpu + decode_secs[i]).collect();
    let tx_cpu = packets as f64 * cfg.tx_packet_cpu;
    let cpu_bound = match cfg.shared_cores {
        Some(c) => (rx_cpu.iter().sum::<f64>() + tx_cpu) / (c * cfg.cpu_efficiency.clamp(0.05, 1.0)),
        None => rx_cpu.iter().copied().fold(tx_cpu, f64::max),
    };
    let link_secs = last_done + cfg.rtt;
    let secs = cfg.startup + link_secs.max(cpu_bound);
    let reports = if cfg.suppression {
        // Status reports at the interval the sender announces, the asks, one done report each.
        let status = metalcast_transport::feedback::status_interval(n).as_secs_f64();
        n as f64 * (secs / status).floor() + asks as f64 + n as f64
    } else {
        // Every receiver, every 5 ms.
        n as f64 * (secs / REPORT_INTERVAL)
    };
    let image = cfg.image_bytes as f64;
    Prediction {
        scheme: if cfg.suppression { "metalcast" } else { "metalcast, v3 feedback" },
        receivers: n,
        loss_percent: cfg.loss.mean_percent(),
        wire_ip: (packets * (t + MC_OVERHEAD_IP) + plans * PLAN_IP) as f64 / image,
        wire_payload: (packets * (t + MC_OVERHEAD_IP - 28) + plans * (PLAN_IP - 28)) as f64 / image,
        feedback_ip: reports * REPORT_IP / image,
        reports_per_receiver: reports / n as f64,
        packets,
        secs,
        link_secs,
        cpu_secs: cpu_bound,
    }
}

/// udpcast-style NACK/ARQ (see the module docs).
pub fn nack(cfg: &Config) -> Prediction {
    let mut rng = Rng::new(cfg.seed);
    // udpcast: 1456-byte blocks (its maximum) plus a 16-byte header, capped by the MTU.
    let block = (cfg.mtu as u64).saturating_sub(44).min(1456);
    let total = cfg.image_bytes.div_ceil(block);
    let pkt_time = ((block + 44 + ETH) * 8) as f64 / (cfg.link_mbit * 1e6);
    let p = cfg.loss.mean_percent() / 100.0;
    let n = cfg.receivers as u64;
    let round_cost = cfg.rtt + n as f64 * cfg.ack_cost;
    let (mut packets, mut secs, mut acks) = (0u64, 0.0f64, 0u64);
    let mut sent = 0u64;
    while sent < total {
        let s = (cfg.slice as u64).min(total - sent);
        sent += s;
        packets += s;
        secs += s as f64 * pkt_time;
        // Receivers still missing each packet of the slice.
        let mut missing: Vec<u64> = (0..s).map(|_| rng.binomial(n, p)).filter(|&m| m > 0).collect();
        secs += round_cost;
        acks += n;
        while !missing.is_empty() {
            let r = missing.len() as u64;
            packets += r;
            secs += r as f64 * pkt_time + round_cost;
            acks += n;
            missing = missing.into_iter().map(|m| rng.binomial(m, p)).filter(|&m| m > 0).collect();
        }
    }
    let image = cfg.image_bytes as f64;
    Prediction {
        scheme: "nack",
        receivers: cfg.receivers,
        loss_percent: cfg.loss.mean_percent(),
        wire_ip: (packets * (block + 44)) as f64 / image,
        wire_payload: (packets * (block + 16)) as f64 / image,
        // An acknowledgement or retransmit request: about 64 IP bytes.
        feedback_ip: (acks * 64) as f64 / image,
        reports_per_receiver: acks as f64 / n as f64,
        packets,
        secs,
        link_secs: secs,
        cpu_secs: 0.0,
    }
}

/// N TCP streams from one server (see the module docs).
pub fn unicast(cfg: &Config) -> Prediction {
    let mss = cfg.mtu as u64 - 52;
    let p = cfg.loss.mean_percent() / 100.0;
    let n = cfg.receivers as f64;
    let segments = cfg.image_bytes.div_ceil(mss) as f64 / (1.0 - p);
    let packets = (segments * n).round() as u64;
    let link = cfg.link_mbit * 1e6 / 8.0 * (mss as f64 / (mss + 52 + ETH) as f64);
    let mut per_stream = link / n;
    if p > 0.0 {
        per_stream = per_stream.min(mss as f64 / cfg.rtt * 1.22 / p.sqrt());
    }
    let secs = cfg.image_bytes as f64 / (1.0 - p) / per_stream + 3.0 * cfg.rtt;
    let image = cfg.image_bytes as f64;
    Prediction {
        scheme: "unicast",
        receivers: cfg.receivers,
        loss_percent: cfg.loss.mean_percent(),
        wire_ip: (packets * (mss + 52)) as f64 / image,
        wire_payload: (packets * mss) as f64 / image,
        // One ACK (52 bytes) per two segments.
        feedback_ip: packets as f64 / 2.0 * 52.0 / image,
        reports_per_receiver: packets as f64 / 2.0 / n,
        packets,
        secs,
        link_secs: secs,
        cpu_secs: 0.0,
    }
}

/// Every scheme for one configuration: metalcast with its feedback of
/// wire version 4 (plans and suppression) and of version 3 (every receiver
/// reports every 5 ms), NACK and unicast.
pub fn all(cfg: &Config) -> Vec<Prediction> {
    let v3 = Config { suppression: false, ..cfg.clone() };
    vec![metalcast(cfg), metalcast(&v3), nack(cfg), unicast(cfg)]
}

/// Markdown table of predictions.
pub fn markdown(rows: &[Prediction]) -> String {
    let mut s = String::from(
        "| N | loss | scheme | wire/image IP | wire/image payload | feedback/image | reports/receiver | seconds |\n\
         |---:|---:|---|---:|---:|---:|---:|---:|\n",
    );
    for r in rows {
        s += &format!(
            "| {} | {:.2}% | {} | {:.4} | {:.4} | {:.4} | {:.0} | {:.2} |\n",
            r.receivers,
            r.loss_percent,
            r.scheme,
            r.wire_ip,
            r.wire_payload,
            r.feedback_ip,
            r.reports_per_receiver,
            r.secs
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(n: usize, loss: Loss) -> Config {
        Config { receivers: n, loss, image_bytes: 64 << 20, ..Config::default() }
    }

    #[test]
    fn no_loss_sends_exactly_the_source_symbols() {
        for n in [1, 10, 1000] {
            let c = cfg(n, Loss::Random(0.0));
            let p = metalcast(&c);
            let k = (1u64 << 20).div_ceil(1440);
            assert_eq!(p.packets, 64 * k, "N={n}");
            assert_eq!(nack(&c).packets, (64u64 << 20).div_ceil(1456));
            assert_eq!(unicast(&c).packets, n as u64 * (64u64 << 20).div_ceil(1448));
            // Time is the packets at the link rate, plus the feedback latency of the end.
            let wire_time = p.packets as f64 * (1440.0 + 60.0 + 14.0) * 8.0 / 1e9;
            assert!(p.secs >= wire_time && p.secs < wire_time + c.startup + 0.01, "{} vs {wire_time}", p.secs);
        }
    }

    #[test]
    fn more_loss_never_lowers_wire_bytes() {
        for scheme in [metalcast as fn(&Config) -> Prediction, nack, unicast] {
            let mut last = 0.0;
            for loss in [0.0, 0.5, 1.0, 2.0, 5.0, 10.0] {
                let w = scheme(&cfg(50, Loss::Random(loss))).wire_ip;
                assert!(w >= last, "{loss}%: {w} < {last}");
                last = w;
            }
        }
    }

    #[test]
    fn more_receivers_never_lower_wire_bytes() {
        let mut last = (0.0, 0.0);
        for n in [1, 10, 100, 1000] {
            let c = cfg(n, Loss::Random(1.0));
            let (m, a) = (metalcast(&c).wire_ip, nack(&c).wire_ip);
            assert!(m >= last.0 && a >= last.1, "N={n}");
            last = (m, a);
        }
    }

    #[test]
    fn repair_scales_better_than_nack_and_unicast() {
        let c = Config { image_bytes: 16 << 20, ..cfg(1000, Loss::Random(1.0)) };
        let (m, a, u) = (metalcast(&c), nack(&c), unicast(&c));
        assert!(m.wire_ip < a.wire_ip && a.wire_ip < u.wire_ip, "{m:?} {a:?} {u:?}");
        assert!(m.secs < u.secs);
        // Repair bounded: well under 2x the source even at 1000 receivers.
        assert!(m.wire_ip < 1.2, "{m:?}");
    }

    #[test]
    fn bigger_blocks_need_less_repair_for_many_receivers() {
        // The repair a block gets is the worst receiver's deficit; relative to K
        // that maximum shrinks as K grows (the loss count's spread grows as sqrt K).
        let small = metalcast(&cfg(1000, Loss::Random(1.0)));
        let big = metalcast(&Config { chunk_bytes: 4 << 20, ..cfg(1000, Loss::Random(1.0)) });
        assert!(big.wire_payload < small.wire_payload - 0.005, "{} vs {}", big.wire_payload, small.wire_payload);
        // Same source symbols either way (up to one partial symbol per block).
        let zero = |c: u64| metalcast(&Config { chunk_bytes: c, ..cfg(10, Loss::Random(0.0)) }).packets;
        assert_eq!(zero(4 << 20), 16 * (4u64 << 20).div_ceil(1440));
    }

    #[test]
    fn shared_cores_slow_a_one_box_fabric_down() {
        let own = cfg(8, Loss::Random(1.0));
        let shared = Config { shared_cores: Some(2.0), link_mbit: 10_000.0, ..own.clone() };
        let fast_link = Config { link_mbit: 10_000.0, ..own.clone() };
        assert!(metalcast(&shared).secs > metalcast(&fast_link).secs);
        assert_eq!(metalcast(&shared).packets, metalcast(&fast_link).packets);
    }

    #[test]
    fn same_seed_same_result_and_bursty_loss_rate() {
        let c = cfg(20, Loss::BURSTY);
        assert_eq!(metalcast(&c).packets, metalcast(&c).packets);
        let mut rng = Rng::new(7);
        let mut ch = Channel::new(Loss::BURSTY, &mut rng);
        let got: u64 = (0..10_000).map(|_| ch.receive(100, &mut rng)).sum();
        let loss = 1.0 - got as f64 / 1e6;
        assert!((loss - Loss::BURSTY.mean_percent() / 100.0).abs() < 0.002, "{loss}");
        let b: u64 = (0..1000).map(|_| rng.binomial(1000, 0.05)).sum();
        assert!((b as f64 / 1000.0 - 50.0).abs() < 1.5, "{b}");
    }
}
