//! Bundle build throughput versus the obvious pipeline, `zstd -T1 | b3sum`,
//! on the same input files, alternating, several repetitions.
//!
//! Inputs: a dense 1 GiB file (1/2 random, 1/2 compressible text-like data)
//! and a sparse 1 GiB disk (128 MiB random, 128 MiB compressible, the rest
//! holes). `zstd -T1 | b3sum` compresses and hashes the whole stream on one
//! core; `metalcast-image build` is run with `--threads 1` (same work, one
//! core) and with its default of one thread per core.

use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

use crate::stats::{Summary, time};

/// One contender's result on one input.
#[derive(Debug, serde::Serialize)]
pub struct Row {
    /// Input name.
    pub input: String,
    /// Contender name.
    pub contender: String,
    /// Wall seconds.
    pub secs: Summary,
    /// Input MB/s at the median.
    pub mb_per_s: f64,
    /// Output bytes (bundle, or zstd stream).
    pub output_bytes: u64,
    /// CPU seconds (user + system, all processes of the contender), median.
    pub cpu_secs: f64,
}

fn fill_random(buf: &mut [u8], seed: &mut u64) {
    for w in buf.chunks_mut(8) {
        *seed ^= *seed << 13;
        *seed ^= *seed >> 7;
        *seed ^= *seed << 17;
        let b = seed.to_le_bytes();
        w.copy_from_slice(&b[..w.len()]);
    }
}

fn fill_text(buf: &mut [u8], seed: &mut u64) {
    const WORDS: &[&str] = &["kernel", "module", "the", "lib", "usr", "share", "config", "=", "0x", "ELF", "\n", "  "];
    let mut i = 0;
    while i < buf.len() {
        *seed ^= *seed << 13;
        *seed ^= *seed >> 7;
        *seed ^= *seed << 17;
        let w = WORDS[(*seed % WORDS.len() as u64) as usize].as_bytes();
        let n = w.len().min(buf.len() - i);
        buf[i..i + n].copy_from_slice(&w[..n]);
        i += n;
    }
}

/// Writes the two inputs into `dir` and returns their paths.
pub fn make_inputs(dir: &Path) -> anyhow::Result<Vec<(String, PathBuf)>> {
    const MIB: u64 = 1 << 20;
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut buf = vec![0u8; 8 << 20];
    let dense = dir.join("dense.raw");
    let f = std::fs::File::create(&dense)?;
    for i in 0..128u64 {
        if i % 2 == 0 {
            fill_random(&mut buf, &mut seed)
        } else {
            fill_text(&mut buf, &mut seed)
        }
        f.write_all_at(&buf, i * 8 * MIB)?;
    }
    let sparse = dir.join("sparse.raw");
    let f = std::fs::File::create(&sparse)?;
    f.set_len(1024 * MIB)?;
    for i in 0..32u64 {
        if i % 2 == 0 {
            fill_random(&mut buf, &mut seed)
        } else {
            fill_text(&mut buf, &mut seed)
        }
        f.write_all_at(&buf, i * 32 * MIB)?;
    }
    Ok(vec![("dense 1 GiB".into(), dense), ("sparse 1 GiB, 256 MiB data".into(), sparse)])
}

/// User + system CPU seconds of all waited-for children so far.
fn children_cpu_secs() -> f64 {
    use nix::sys::resource::{UsageWho, getrusage};
    let u = getrusage(UsageWho::RUSAGE_CHILDREN).expect("getrusage(RUSAGE_CHILDREN) cannot fail");
    let tv = |t: nix::sys::time::TimeVal| t.tv_sec() as f64 + t.tv_usec() as f64 / 1e6;
    tv(u.user_time()) + tv(u.system_time())
}

fn sh(cmd: &str) -> anyhow::Result<()> {
    let st = Command::new("sh").arg("-c").arg(cmd).status().with_context(|| format!("running {cmd}"))?;
    if !st.success() {
        bail!("{cmd} failed: {st}");
    }
    Ok(())
}

/// Runs the comparison with `reps` repetitions per contender and input.
pub fn run(image_bin: &Path, dir: &Path, reps: usize) -> anyhow::Result<Vec<Row>> {
    for tool in ["zstd", "b3sum"] {
        if Command::new(tool).arg("--version").output().is_err() {
            bail!("{tool} is not installed (apt-get install zstd b3sum)");
        }
    }
    let inputs = make_inputs(dir)?;
    let out = dir.join("out.mcb");
    let zout = dir.join("out.zst");
    let mut rows = Vec::new();
    for (name, path) in &inputs {
        let size = std::fs::metadata(path)?.len();
        let p = path.display();
        let img = image_bin.display();
        let o = out.display();
        let contenders = [
            (
                "zstd -T1 -3 | b3sum".to_string(),
                format!("zstd -q -T1 -3 -c {p} | tee {} | b3sum >/dev/null", zout.display()),
            ),
            (
                "metalcast-image build --threads 1".to_string(),
                format!("{img} -q build --threads 1 --disk {p} -o {o} >/dev/null"),
            ),
            (
                "metalcast-image build (1 thread/core)".to_string(),
                format!("{img} -q build --disk {p} -o {o} >/dev/null"),
            ),
        ];
        // Warm the page cache so every contender reads from memory.
        sh(&format!("cat {p} >/dev/null"))?;
        let mut samples = vec![Vec::new(); contenders.len()];
        let mut cpu = vec![Vec::new(); contenders.len()];
        for _ in 0..reps {
            for (i, (_, cmd)) in contenders.iter().enumerate() {
                let before = children_cpu_secs();
                let (r, d) = time(|| sh(cmd));
                r?;
                samples[i].push(d.as_secs_f64());
                cpu[i].push(children_cpu_secs() - before);
            }
        }
        for (i, (cname, _)) in contenders.iter().enumerate() {
            let secs = Summary::of(&samples[i]);
            let output_bytes = std::fs::metadata(if i == 0 { &zout } else { &out })?.len();
            rows.push(Row {
                input: name.clone(),
                contender: cname.clone(),
                mb_per_s: size as f64 / secs.median / 1e6,
                secs,
                output_bytes,
                cpu_secs: Summary::of(&cpu[i]).median,
            });
        }
    }
    Ok(rows)
}

/// Renders rows as a markdown table with the ratio to the first contender of each input.
pub fn markdown(rows: &[Row]) -> String {
    let mut s = String::from(
        "| input | contender | median s | spread | MB/s | wall speed vs first | CPU s | CPU efficiency vs first | output MiB |\n|---|---|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for r in rows {
        let base = rows.iter().find(|b| b.input == r.input).expect("the row's own input has a first row");
        s += &format!(
            "| {} | {} | {:.2} | {:.0}% | {:.0} | {:.2}x | {:.2} | {:.2}x | {:.1} |\n",
            r.input,
            r.contender.replace('|', "\\|"),
            r.secs.median,
            r.secs.spread() * 100.0,
            r.mb_per_s,
            base.secs.median / r.secs.median,
            r.cpu_secs,
            base.cpu_secs / r.cpu_secs,
            r.output_bytes as f64 / (1 << 20) as f64
        );
    }
    s
}
