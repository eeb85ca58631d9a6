//! `simulate --validate`: the simulation's metalcast prediction next to real
//! fabric runs at small N, with the CPU costs of the model measured on this
//! machine first.
//!
//! On a one-box fabric the sender and every receiver share the same few
//! cores, so a run is CPU-bound long before the emulated link is full; the
//! simulation's time is only as good as its CPU constants. They are
//! calibrated here, never typed in:
//!
//! - **Per-packet costs** from metalcast runs at 0% loss on the same fabric
//!   (the calibration scenario): the sender thread's CPU per packet sent, and
//!   the rest of the machine's busy time (receive threads, decode threads,
//!   softirq fan-out through the bridge) per packet per receiver, both from
//!   `/proc/stat` and `getrusage`.
//! - **Decode costs** from timing the receivers' own few-erasure decoder on
//!   blocks of this MTU's symbol size with 1 to 8 lost symbols (a fixed part
//!   per block and a part per lost symbol, least squares), and RaptorQ's full
//!   decode, which receivers use past `MAX_FAST_ERASURES` lost symbols.
//! - **CPU efficiency**: the share of the cores a CPU-bound calibration run
//!   kept busy, so that the 0% prediction matches its measurement.
//!
//! Every other scenario (1%, 5%, bursty) is then predicted out of sample; the
//! 0% row is marked as the calibration.

use std::time::Instant;

use anyhow::Context;
use metalcast_fabric::{Fabric, Flow, Rate};
use metalcast_transport::SessionSpec;
use metalcast_transport::erasure::{FewErasures, MAX_FAST_ERASURES};
use metalcast_transport::session::SYMBOL_ALIGNMENT;

use crate::contender::{Env, Image};
use crate::contenders;
use crate::sim;
use crate::stats::Summary;
use crate::suite::{Config, Loss, Scenario, dev_tx, set_offloads};
use crate::sys::{machine_busy_secs, thread_cpu_secs};

/// A calibration run within this fraction of the model's link time is link-bound.
const LINK_BOUND_SLACK: f64 = 0.05;

/// A real fabric run of metalcast next to the simulation's prediction for it.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Validation {
    /// The scenario (one link rate, needed to predict time).
    pub scenario: Scenario,
    /// Whether this scenario calibrated the model's CPU constants (in sample).
    pub calibration: bool,
    /// Measured seconds until all done (median).
    pub measured_secs: f64,
    /// Predicted seconds.
    pub predicted_secs: f64,
    /// Measured sender data bytes (IP level) / image, median.
    pub measured_wire_ip: f64,
    /// Predicted sender data bytes (IP level) / image.
    pub predicted_wire_ip: f64,
}

impl Validation {
    /// |predicted - measured| / measured, for time and for wire bytes.
    pub fn errors(&self) -> (f64, f64) {
        (
            (self.predicted_secs - self.measured_secs).abs() / self.measured_secs,
            (self.predicted_wire_ip - self.measured_wire_ip).abs() / self.measured_wire_ip,
        )
    }
}

/// The model's CPU constants as measured on this machine.
#[derive(Debug, Clone, Copy, serde::Serialize, serde::Deserialize)]
pub struct Calibration {
    /// Sender thread CPU per packet sent, seconds.
    pub tx_packet_cpu: f64,
    /// Everything else the machine did per packet per receiver, seconds.
    pub rx_packet_cpu: f64,
    /// Decode: fixed CPU per decoded block, seconds.
    pub decode_cpu: f64,
    /// Decode: CPU per lost source symbol, seconds.
    pub decode_symbol_cpu: f64,
    /// A full RaptorQ decode of a block, seconds.
    pub full_decode_cpu: f64,
    /// Share of the cores a CPU-bound run keeps busy (1.0 when the
    /// calibration run was link-bound and could not tell).
    pub cpu_efficiency: f64,
    /// Whether the calibration run was CPU-bound (longer than the link needs).
    pub cpu_bound: bool,
    /// Cores of this machine.
    pub cores: f64,
}

impl Calibration {
    /// `base` with these constants, for a one-box fabric.
    pub fn apply(&self, base: &sim::Config) -> sim::Config {
        sim::Config {
            tx_packet_cpu: self.tx_packet_cpu,
            rx_packet_cpu: self.rx_packet_cpu,
            decode_cpu: self.decode_cpu,
            decode_symbol_cpu: self.decode_symbol_cpu,
            full_decode_cpu: self.full_decode_cpu,
            cpu_efficiency: self.cpu_efficiency,
            shared_cores: Some(self.cores),
            ..base.clone()
        }
    }
}

/// Times the few-erasure decoder on blocks of `chunk` bytes at `mtu`'s
/// symbol size; returns (fixed seconds per block, seconds per lost symbol,
/// seconds of a full RaptorQ decode).
pub fn decode_costs(mtu: usize, chunk: usize) -> anyhow::Result<(f64, f64, f64)> {
    let t = usize::from(SessionSpec::symbol_size_for_mtu(mtu).context("symbol size")?);
    let k = chunk.div_ceil(t) as u32;
    let block: Vec<u8> = (0..k as usize * t).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect();
    let mut dec = FewErasures::new(k);
    let mut points = Vec::new();
    for e in [1u32, 2, 4, 8] {
        let esis: Vec<u32> = (k..k + e).collect();
        let mut reps = vec![0u8; e as usize * t];
        dec.repairs_into(&block, t, k, &esis, &mut reps);
        let repairs: Vec<(u32, Vec<u8>)> =
            esis.iter().zip(reps.chunks_exact(t)).map(|(&x, s)| (x, s.to_vec())).collect();
        let missing: Vec<u32> = (0..e).map(|i| i * 7 % k).collect();
        let mut work = block.clone();
        let rounds = 40;
        let cpu0 = thread_cpu_secs();
        let wall0 = Instant::now();
        for _ in 0..rounds {
            work.copy_from_slice(&block);
            anyhow::ensure!(dec.decode(&mut work, t, k, &missing, &repairs), "calibration decode failed");
        }
        // Thread CPU has a coarse clock on some kernels; fall back on wall time if it read 0.
        let cpu = (thread_cpu_secs() - cpu0).max(0.0);
        let secs = if cpu > 0.0 { cpu } else { wall0.elapsed().as_secs_f64() };
        anyhow::ensure!(work == block, "calibration decode is wrong");
        points.push((f64::from(e), secs / f64::from(rounds)));
    }
    // Least squares: cost = a + b e.
    let n = points.len() as f64;
    let (sx, sy) = points.iter().fold((0.0, 0.0), |(x, y), p| (x + p.0, y + p.1));
    let (sxx, sxy) = points.iter().fold((0.0, 0.0), |(xx, xy), p| (xx + p.0 * p.0, xy + p.0 * p.1));
    let b = ((n * sxy - sx * sy) / (n * sxx - sx * sx)).max(0.0);
    let a = ((sy - b * sx) / n).max(0.0);

    // RaptorQ's full decode (more lost symbols than the few-erasure decoder takes): its cost
    // hardly depends on how many were lost.
    use raptorq::{EncodingPacket, ObjectTransmissionInformation, PayloadId, SourceBlockDecoder, SourceBlockEncoder};
    let lost = MAX_FAST_ERASURES as u32 + 10;
    let oti = ObjectTransmissionInformation::new(block.len() as u64, t as u16, 1, 1, SYMBOL_ALIGNMENT as u8);
    let enc = SourceBlockEncoder::new(0, &oti, &block);
    let mut packets: Vec<EncodingPacket> = enc.source_packets().into_iter().skip(lost as usize).collect();
    packets.extend(enc.repair_packets(0, lost + 2));
    let rounds = 5;
    let cpu0 = thread_cpu_secs();
    for _ in 0..rounds {
        let mut d = SourceBlockDecoder::new(0, &oti, block.len() as u64);
        let out =
            d.decode(packets.iter().map(|p| {
                EncodingPacket::new(PayloadId::new(0, p.payload_id().encoding_symbol_id()), p.data().to_vec())
            }));
        anyhow::ensure!(out.as_deref() == Some(&block[..]), "calibration full decode is wrong");
    }
    let full = (thread_cpu_secs() - cpu0).max(0.0) / f64::from(rounds);
    Ok((a, b, full))
}

/// One metalcast run on `f` and what the machine did during it.
struct Run {
    secs: f64,
    /// Sender data bytes at the IP level / image.
    wire_ip: f64,
    /// Packets the sender's interface sent.
    packets: u64,
    sender_cpu: f64,
    busy: f64,
}

fn run_once(f: &Fabric, env: &Env<'_>) -> anyhow::Result<Run> {
    let mc = contenders::by_name("metalcast")?;
    let dev = f.sender().ifname().to_owned();
    let d = dev.clone();
    let (b0, p0) = f.sender().run_in(move || dev_tx(&d))??;
    let busy0 = machine_busy_secs()?;
    let o = mc.run(env)?;
    let busy = machine_busy_secs()? - busy0;
    let (b1, p1) = f.sender().run_in(move || dev_tx(&dev))??;
    Ok(Run {
        secs: o.secs,
        wire_ip: (b1 - b0 - 14 * (p1 - p0)) as f64 / env.image.raw_bytes as f64,
        packets: p1 - p0,
        sender_cpu: o.sender_cpu,
        busy,
    })
}

/// Calibrates on metalcast at 0% loss, then runs metalcast for each loss of
/// `cfg` and compares with [`sim::metalcast`]. Wire bytes are the sender's
/// link only (the simulation's data bytes).
pub fn validate(cfg: &Config, base: &sim::Config) -> anyhow::Result<(Calibration, Vec<Validation>)> {
    metalcast_fabric::bpf_capable().context("validation builds a namespace fabric")?;
    let (&n, &size_mib, &link_mbit) = (
        cfg.receivers.first().context("no receiver count")?,
        cfg.sizes_mib.first().context("no image size")?,
        cfg.link_mbit.first().context("no link rate")?,
    );
    anyhow::ensure!(link_mbit > 0, "validation needs an emulated link rate (--link-mbit) to predict time");
    let root = crate::interrupt::scratch_dir(&cfg.scratch)?;
    let chunk = cfg.chunk_bytes;
    anyhow::ensure!(u64::from(chunk) == base.chunk_bytes, "the fabric's and the model's chunk sizes differ");
    let image = Image::make(&root.path().join("img"), size_mib, chunk)?;
    let f = Fabric::builder().receivers(n).mtu(cfg.mtu).build().context("building the fabric")?;
    set_offloads(&f, cfg.offloads)?;
    for h in f.hosts() {
        h.set_rate(Flow::ToHost, Some(Rate::mbit(link_mbit)))?;
        h.set_rate(Flow::FromHost, Some(Rate::mbit(link_mbit)))?;
    }
    let mut port = 45000;
    let mut runs_at = |loss: Loss| -> anyhow::Result<Vec<Run>> {
        for h in f.receivers() {
            h.set_loss(Flow::ToHost, loss.config(true))?;
        }
        let mut runs = Vec::new();
        for rep in 0..cfg.reps {
            let work = root.path().join(format!("run-{port}"));
            std::fs::create_dir_all(&work)?;
            let env = Env {
                fabric: &f,
                image: &image,
                work: &work,
                port,
                mtu: cfg.mtu,
                link_mbit,
                rate_mbit: cfg.rate_mbit,
                verify: false,
                timeout: cfg.timeout,
            };
            port += 10;
            let r = run_once(&f, &env)?;
            eprintln!(
                "validate N={n} loss {} rep {rep}: {:.2}s, sender wire ip {:.4}, machine busy {:.2} CPU s",
                loss.label(),
                r.secs,
                r.wire_ip,
                r.busy
            );
            runs.push(r);
        }
        Ok(runs)
    };

    // Calibration at 0% loss.
    let cal_loss = Loss::Random(0.0);
    let cal_runs = runs_at(cal_loss)?;
    let med = |v: Vec<f64>| Summary::of(&v).median;
    let cores = std::thread::available_parallelism().map_or(1.0, |c| c.get() as f64);
    let (decode_cpu, decode_symbol_cpu, full_decode_cpu) = decode_costs(cfg.mtu as usize, chunk as usize)?;
    let mut cal = Calibration {
        tx_packet_cpu: med(cal_runs.iter().map(|r| r.sender_cpu / r.packets.max(1) as f64).collect()),
        rx_packet_cpu: med(cal_runs
            .iter()
            .map(|r| (r.busy - r.sender_cpu).max(0.0) / (n as f64 * r.packets.max(1) as f64))
            .collect()),
        decode_cpu,
        decode_symbol_cpu,
        full_decode_cpu,
        cpu_efficiency: 1.0,
        cpu_bound: false,
        cores,
    };
    let scenario_cfg = |loss: Loss| sim::Config {
        receivers: n,
        loss,
        image_bytes: image.raw_bytes,
        mtu: cfg.mtu as usize,
        link_mbit: link_mbit as f64,
        rate_mbit: cfg.rate_mbit as f64,
        ..base.clone()
    };
    let cal_secs = med(cal_runs.iter().map(|r| r.secs).collect());
    let p0 = sim::metalcast(&cal.apply(&scenario_cfg(cal_loss)));
    let cpu_time = cal_secs - base.startup;
    // CPU-bound only if the run took clearly longer than the link needs: a run
    // at the link rate says nothing about how busy the cores could get, and
    // fitting it would read its idle cores as inefficiency.
    let cpu_bound = cpu_time > p0.link_secs * (1.0 + LINK_BOUND_SLACK) && p0.cpu_secs > 0.0;
    cal.cpu_bound = cpu_bound;
    if cpu_bound {
        // The cores were not all busy with the session all the time.
        cal.cpu_efficiency = (p0.cpu_secs / cpu_time).clamp(0.05, 1.0);
    }
    eprintln!(
        "calibration run {}: {cal_secs:.2} s against {:.2} s of link time",
        if cpu_bound { "CPU-bound" } else { "link-bound (CPU efficiency not fitted)" },
        p0.link_secs
    );
    eprintln!(
        "calibrated on N={n}, 0% loss: sender {:.2} us/packet, rest of the machine {:.2} us/packet/receiver, \
         decode {:.3} ms/block + {:.3} ms/lost symbol (full decode {:.2} ms), CPU efficiency {:.2} of {cores} cores",
        cal.tx_packet_cpu * 1e6,
        cal.rx_packet_cpu * 1e6,
        cal.decode_cpu * 1e3,
        cal.decode_symbol_cpu * 1e3,
        cal.full_decode_cpu * 1e3,
        cal.cpu_efficiency
    );

    let mut out = Vec::new();
    for &loss in &cfg.losses {
        let calibration = loss == cal_loss;
        let runs = if calibration { None } else { Some(runs_at(loss)?) };
        let runs = runs.as_ref().unwrap_or(&cal_runs);
        let p = sim::metalcast(&cal.apply(&scenario_cfg(loss)));
        out.push(Validation {
            scenario: Scenario { receivers: n, loss, size_mib, link_mbit },
            calibration,
            measured_secs: med(runs.iter().map(|r| r.secs).collect()),
            predicted_secs: p.secs,
            measured_wire_ip: med(runs.iter().map(|r| r.wire_ip).collect()),
            predicted_wire_ip: p.wire_ip,
        });
    }
    Ok((cal, out))
}
