//! Output of the comparison: a markdown table, JSON, and plots (SVG and PNG)
//! of time vs N and time vs loss for every contender.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use anyhow::Context;
use plotters::coord::Shift;
use plotters::prelude::*;

use crate::suite::{Report, Row};

/// The font every plot's text is laid out with (and PNG glyphs drawn from):
/// DejaVu Sans cut down to Latin-1, compiled in (perf/fonts/README.md). SVG
/// text needs a font's metrics too (caption, legend box, label widths), so a
/// font from the machine would make the same SVG differ between machines.
const FONT_TTF: &[u8] = include_bytes!("../fonts/DejaVuSans-subset.ttf");

/// A plot that could not be drawn.
#[derive(Debug, thiserror::Error)]
#[error("plotting: {0}")]
pub struct DrawError(String);

fn link_label(mbit: u64) -> String {
    if mbit == 0 { "none".into() } else { format!("{mbit} Mbit/s") }
}

/// The markdown table (one row per contender and scenario) with a header saying how it was run.
pub fn markdown(r: &Report) -> String {
    let mut s = format!(
        "Machine: {}. Fabric MTU {}; veth TSO/GSO/GRO {}; metalcast rate cap {}.\n\
         Time: start of the sending side to the last receiver done (median of runs; spread = (max-min)/median).\n\
         Wire: bytes all hosts put on their links / image, at the IP level and at the transport-payload level.\n\
         CPU: user+system seconds per GB (sender per image GB; receivers per GB received).\n\n",
        r.machine,
        r.mtu,
        if r.offloads { "on (64 KB TCP segments hide per-packet cost)" } else { "off (MTU-sized packets)" },
        if r.metalcast_rate_mbit == 0 {
            "none (adaptive)".into()
        } else {
            format!("{} Mbit/s (adaptive below it)", r.metalcast_rate_mbit)
        },
    );
    for (name, why) in &r.unavailable {
        s += &format!("- {name}: not run ({why})\n");
    }
    if !r.unavailable.is_empty() {
        s += "\n";
    }
    let t = targets(r);
    if !t.is_empty() {
        s += "Targets of issue 9 (from this run's medians):\n\n";
        s += &t;
        s += "\n";
    }
    s += "| N | loss | image | link | contender | median s | spread | aggregate MB/s | vs blaster | wire/image IP | wire/image payload | CPU s/GB send | CPU s/GB recv | delivered | failed |\n";
    s += "|---:|---|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n";
    for row in &r.rows {
        let sc = &row.scenario;
        let (med, spread) = match &row.secs {
            Some(x) => (format!("{:.2}", x.median), format!("{:.0}%", x.spread() * 100.0)),
            None => ("-".into(), "-".into()),
        };
        let f = |v: f64, d: usize| if v.is_finite() { format!("{v:.d$}") } else { "-".into() };
        s += &format!(
            "| {} | {} | {} MiB | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
            sc.receivers,
            row.loss_label,
            sc.size_mib,
            link_label(sc.link_mbit),
            row.contender,
            med,
            spread,
            f(row.aggregate_mb_s, 0),
            row.vs_limit.map_or("-".into(), |v| format!("{v:.2}")),
            f(row.wire_ip, 3),
            f(row.wire_payload, 3),
            f(row.sender_cpu_per_gb, 2),
            f(row.receiver_cpu_per_gb, 2),
            if row.delivered_fraction.is_finite() {
                format!("{:.1}%", row.delivered_fraction * 100.0)
            } else {
                "-".into()
            },
            row.failures,
        );
    }
    s
}

/// Issue 9's targets, checked against whatever rows the run has (a line per check it can make).
pub fn targets(r: &Report) -> String {
    let mut s = String::new();
    let secs = |x: &Row| x.secs.as_ref().map(|s| s.median);
    let find = |c: &str, n: usize, loss: &str, size: usize, link: u64| {
        r.rows.iter().find(|x| {
            x.contender == c
                && x.scenario.receivers == n
                && x.loss_label == loss
                && x.scenario.size_mib == size
                && x.scenario.link_mbit == link
        })
    };
    let mark = |ok: bool| if ok { "met" } else { "NOT met" };
    let mut keys: Vec<(usize, u64)> = r.rows.iter().map(|x| (x.scenario.size_mib, x.scenario.link_mbit)).collect();
    keys.sort();
    keys.dedup();
    let mut ns: Vec<usize> = r.rows.iter().map(|x| x.scenario.receivers).collect();
    ns.sort();
    ns.dedup();
    for (size, link) in keys {
        if link > 0 {
            let ideal = size as f64 * (1 << 20) as f64 * 8.0 / (link as f64 * 1e6);
            for &n in &ns {
                if let Some(t) = find("metalcast", n, "1%", size, link).and_then(secs) {
                    s += &format!(
                        "- {size} MiB, link {link} Mbit/s, N={n}, 1% loss: metalcast {:.3}x image/link rate (target <= 1.10: {})\n",
                        t / ideal,
                        mark(t / ideal <= 1.10)
                    );
                }
            }
            let t = |n| find("metalcast", n, "1%", size, link).and_then(secs);
            if let (Some(a), Some(b)) = (t(2), t(16)) {
                s += &format!(
                    "- {size} MiB, link {link} Mbit/s, 1% loss: metalcast T(16)/T(2) = {:.3} (target <= 1.10: {})\n",
                    b / a,
                    mark(b / a <= 1.10)
                );
            }
            if let Some(&n) = ns.last()
                && let Some(x) = find(crate::contenders::BLASTER, n, "0%", size, link)
                && let Some(t) = secs(x)
            {
                // IP-level bytes on the sender's link per second (at most 1500/1514 of the link rate).
                let ip_rate = x.wire_ip * size as f64 * (1 << 20) as f64 * 8.0 / t / 1e6;
                s += &format!(
                    "- {size} MiB, link {link} Mbit/s, N={n}, 0% loss: blaster puts {:.1}% of the link rate on the wire (IP level; want >= 98%, else the box is the bottleneck)\n",
                    100.0 * ip_rate / link as f64
                );
            }
        } else {
            let mut losses: Vec<&str> = Vec::new();
            for x in &r.rows {
                if !losses.contains(&x.loss_label.as_str()) {
                    losses.push(&x.loss_label);
                }
            }
            for &n in &ns {
                for loss in &losses {
                    let agg =
                        |c: &str| find(c, n, loss, size, 0).filter(|x| x.secs.is_some()).map(|x| x.aggregate_mb_s);
                    let Some(m) = agg("metalcast") else { continue };
                    for (other, want) in [("udpcast", 4.0), ("http", 2.0)] {
                        if let Some(o) = agg(other) {
                            s += &format!(
                                "- {size} MiB, unthrottled, N={n}, loss {loss}: metalcast {:.2}x {other}'s aggregate (target >= {want}x: {})\n",
                                m / o,
                                mark(m / o >= want)
                            );
                        }
                    }
                }
            }
        }
    }
    s
}

/// Registers [`FONT_TTF`] as "sans-serif" once, the only font plotters knows in this process.
fn font() -> Result<(), DrawError> {
    static LOADED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    let ok = *LOADED.get_or_init(|| plotters::style::register_font("sans-serif", FontStyle::Normal, FONT_TTF).is_ok());
    if ok { Ok(()) } else { Err(DrawError("the compiled-in font does not parse".into())) }
}

/// Line colours (ColorBrewer Set1, then black), readable on white.
const COLORS: [RGBColor; 7] = [
    RGBColor(228, 26, 28),
    RGBColor(55, 126, 184),
    RGBColor(77, 175, 74),
    RGBColor(152, 78, 163),
    RGBColor(255, 127, 0),
    RGBColor(0, 0, 0),
    RGBColor(166, 86, 40),
];

/// A contender's line colour: the same in every plot (its place in
/// [`contenders::ALL`](crate::contenders::ALL)); other series take the
/// colours after those.
fn color(name: &str, i: usize) -> RGBColor {
    let all = crate::contenders::ALL;
    COLORS[all.iter().position(|c| *c == name).unwrap_or(all.len() + i) % COLORS.len()]
}

/// Size of every plot, pixels.
pub(crate) const SIZE: (u32, u32) = (900, 560);

/// One chart: a line per contender over x points (with labels for categorical x).
#[derive(Debug)]
pub(crate) struct Chart {
    pub(crate) title: String,
    pub(crate) x_desc: String,
    pub(crate) x_labels: Option<Vec<String>>,
    pub(crate) series: Vec<(String, Vec<(f64, f64)>)>,
    /// Where the legend goes (upper left unless lines run there).
    pub(crate) legend: SeriesLabelPosition,
}

/// The chart as an SVG document.
pub(crate) fn svg(c: &Chart) -> Result<String, DrawError> {
    let mut out = String::new();
    draw(SVGBackend::with_string(&mut out, SIZE).into_drawing_area(), c)?;
    Ok(out)
}

fn draw<DB: DrawingBackend>(area: DrawingArea<DB, Shift>, c: &Chart) -> Result<(), DrawError>
where
    DB::ErrorType: 'static,
{
    font()?;
    let err = |e: DrawingAreaErrorKind<DB::ErrorType>| DrawError(e.to_string());
    area.fill(&WHITE).map_err(err)?;
    let pts = c.series.iter().flat_map(|(_, p)| p.iter());
    let (mut x0, mut x1, mut y1) = (f64::MAX, f64::MIN, 0f64);
    for &(x, y) in pts {
        (x0, x1, y1) = (x0.min(x), x1.max(x), y1.max(y));
    }
    if x0 > x1 {
        (x0, x1) = (0.0, 1.0);
    }
    let pad = ((x1 - x0) * 0.05).max(0.5);
    let mut chart = ChartBuilder::on(&area)
        .caption(&c.title, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d((x0 - pad)..(x1 + pad), 0f64..(y1 * 1.1).max(0.1))
        .map_err(err)?;
    let labels = c.x_labels.clone();
    let fmt = move |x: &f64| match &labels {
        Some(l) if (x - x.round()).abs() < 1e-6 && x.round() >= 0.0 => {
            l.get(x.round() as usize).cloned().unwrap_or_default()
        }
        Some(_) => String::new(),
        None if (x - x.round()).abs() < 1e-6 => format!("{}", x.round()),
        None => String::new(),
    };
    chart
        .configure_mesh()
        .x_desc(&c.x_desc)
        .y_desc("seconds until all done")
        .x_label_formatter(&fmt)
        .x_labels(c.x_labels.as_ref().map_or(10, |l| l.len() * 2 + 1).max(2))
        .draw()
        .map_err(err)?;
    for (i, (name, points)) in c.series.iter().enumerate() {
        let color = color(name, i).to_rgba();
        chart
            .draw_series(LineSeries::new(points.iter().copied(), color.stroke_width(2)))
            .map_err(err)?
            .label(name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
        chart.draw_series(points.iter().map(|&p| Circle::new(p, 3, color.filled()))).map_err(err)?;
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .position(c.legend.clone())
        .draw()
        .map_err(err)?;
    area.present().map_err(err)?;
    Ok(())
}

fn contenders(rows: &[&Row]) -> Vec<String> {
    let mut seen = Vec::new();
    for r in rows {
        if !seen.contains(&r.contender) {
            seen.push(r.contender.clone());
        }
    }
    seen
}

fn charts(r: &Report) -> Vec<(String, Chart)> {
    let mut out = Vec::new();
    let sizes: BTreeSet<usize> = r.rows.iter().map(|x| x.scenario.size_mib).collect();
    let links: BTreeSet<u64> = r.rows.iter().map(|x| x.scenario.link_mbit).collect();
    let ns: BTreeSet<usize> = r.rows.iter().map(|x| x.scenario.receivers).collect();
    let mut losses: Vec<String> = Vec::new();
    for x in &r.rows {
        if !losses.contains(&x.loss_label) {
            losses.push(x.loss_label.clone());
        }
    }
    let secs = |x: &Row| x.secs.as_ref().map(|s| s.median);
    for &size in &sizes {
        for &link in &links {
            let here: Vec<&Row> =
                r.rows.iter().filter(|x| x.scenario.size_mib == size && x.scenario.link_mbit == link).collect();
            for loss in &losses {
                let rows: Vec<&Row> = here.iter().copied().filter(|x| &x.loss_label == loss).collect();
                let series = contenders(&rows)
                    .into_iter()
                    .map(|c| {
                        let mut p: Vec<(f64, f64)> = rows
                            .iter()
                            .filter(|x| x.contender == c)
                            .filter_map(|x| secs(x).map(|s| (x.scenario.receivers as f64, s)))
                            .collect();
                        p.sort_by(|a, b| a.0.total_cmp(&b.0));
                        (c, p)
                    })
                    .collect();
                let slug = format!("time-vs-n_{size}mib_link-{link}_loss-{}", slug(loss));
                let title = format!("{size} MiB, link {}, loss {loss}", link_label(link));
                out.push((
                    slug,
                    Chart {
                        title,
                        x_desc: "receivers (N)".into(),
                        x_labels: None,
                        series,
                        legend: SeriesLabelPosition::UpperLeft,
                    },
                ));
            }
            for &n in &ns {
                let rows: Vec<&Row> = here.iter().copied().filter(|x| x.scenario.receivers == n).collect();
                let series = contenders(&rows)
                    .into_iter()
                    .map(|c| {
                        let p = rows
                            .iter()
                            .filter(|x| x.contender == c)
                            .filter_map(|x| {
                                let i = losses.iter().position(|l| l == &x.loss_label).expect("collected above");
                                secs(x).map(|s| (i as f64, s))
                            })
                            .collect();
                        (c, p)
                    })
                    .collect();
                let slug = format!("time-vs-loss_{size}mib_link-{link}_n-{n}");
                let title = format!("{size} MiB, link {}, N = {n}", link_label(link));
                out.push((
                    slug,
                    Chart {
                        title,
                        x_desc: "loss".into(),
                        x_labels: Some(losses.clone()),
                        series,
                        legend: SeriesLabelPosition::UpperLeft,
                    },
                ));
            }
        }
    }
    out
}

/// File-name form of a label: `bursty 1% (burst 5)` -> `bursty-1pct-burst-5`.
fn slug(s: &str) -> String {
    let s = s.replace('%', "pct");
    let words: Vec<&str> =
        s.split(|c: char| !(c.is_ascii_alphanumeric() || c == '.')).filter(|w| !w.is_empty()).collect();
    words.join("-")
}

/// Writes `report.md`, `report.json` and the plots into `dir`; returns the files written.
pub fn write(r: &Report, dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut files = vec![dir.join("report.md"), dir.join("report.json")];
    std::fs::write(&files[0], markdown(r))?;
    std::fs::write(&files[1], serde_json::to_string_pretty(r)?)?;
    for (name, chart) in charts(r) {
        let p = dir.join(format!("{name}.svg"));
        std::fs::write(&p, svg(&chart)?).with_context(|| format!("writing {}", p.display()))?;
        files.push(p);
        let p = dir.join(format!("{name}.png"));
        draw(BitMapBackend::new(&p, SIZE).into_drawing_area(), &chart)?;
        files.push(p);
    }
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::Summary;
    use crate::suite::{Loss, Scenario};

    fn row(c: &str, n: usize, loss: Loss, secs: f64) -> Row {
        Row {
            contender: c.into(),
            scenario: Scenario { receivers: n, loss, size_mib: 8, link_mbit: 0 },
            loss_label: loss.label(),
            secs: Some(Summary::of(&[secs])),
            aggregate_mb_s: 1.0 / secs,
            vs_limit: Some(0.5),
            wire_ip: 1.06,
            wire_payload: 1.01,
            sender_cpu_per_gb: 1.0,
            receiver_cpu_per_gb: 2.0,
            delivered_fraction: 1.0,
            failures: 0,
            error: None,
            samples: vec![],
        }
    }

    #[test]
    fn writes_table_json_and_plots() {
        let r = Report {
            command: "test".into(),
            machine: "m".into(),
            mtu: 1500,
            offloads: false,
            metalcast_rate_mbit: 0,
            unavailable: vec![("metalcast-xdp".into(), "not wired".into())],
            rows: vec![
                row("metalcast", 1, Loss::Random(0.0), 1.0),
                row("metalcast", 2, Loss::Random(0.0), 1.1),
                row("udpcast", 1, Loss::Random(0.0), 2.0),
                row("udpcast", 2, Loss::Random(0.0), 2.5),
                row("metalcast", 2, Loss::BURSTY, 1.3),
                row("udpcast", 2, Loss::BURSTY, 3.0),
            ],
        };
        let md = markdown(&r);
        assert!(md.contains("| 2 | bursty 1% (burst 5) | 8 MiB | none | udpcast | 3.00 |"), "{md}");
        assert!(md.contains("metalcast-xdp: not run (not wired)"));
        assert!(md.contains("N=2, loss 0%: metalcast 2.27x udpcast's aggregate (target >= 4x: NOT met)"), "{md}");
        assert_eq!(md.matches("N=2, loss 0%: metalcast").count(), 1, "one line per check: {md}");
        assert_eq!(slug("bursty 1% (burst 5)*"), "bursty-1pct-burst-5");
        let dir = tempfile::tempdir().unwrap();
        let files = write(&r, dir.path()).unwrap();
        let svgs: Vec<_> = files.iter().filter(|f| f.extension().is_some_and(|e| e == "svg")).collect();
        // Time vs N for two losses, time vs loss for two N.
        assert_eq!(svgs.len(), 4, "{files:?}");
        let svg = std::fs::read_to_string(dir.path().join("time-vs-n_8mib_link-0_loss-0pct.svg")).unwrap();
        assert!(svg.contains("udpcast") && svg.contains("<polyline"), "{svg}");
        let png = std::fs::read(dir.path().join("time-vs-loss_8mib_link-0_n-2.png")).unwrap();
        assert_eq!(&png[1..4], b"PNG");
        let mut failed = row("http", 2, Loss::BURSTY, 1.0);
        (failed.secs, failed.wire_ip) = (None, f64::NAN);
        let mut with_failure = r.clone();
        with_failure.rows.push(failed);
        let back: Report = serde_json::from_str(&serde_json::to_string(&with_failure).unwrap()).unwrap();
        assert_eq!(back.rows.len(), 7);
        assert!(back.rows[6].wire_ip.is_nan() && back.rows[6].secs.is_none());
        let json: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.path().join("report.json")).unwrap()).unwrap();
        assert_eq!(json["rows"].as_array().unwrap().len(), 6);
    }
}
