//! Small server-side SVG charts for the console: inline `<svg>` with
//! presentation attributes only (no script, no style attribute, so the
//! Content-Security-Policy stays strict) and a text equivalent in `<title>`.
//! Every chart on a page comes with the table of its numbers next to it.
//!
//! Hand-written rather than plotters (which `perf/` uses for its plot
//! files): a line chart is a polyline and a few labels, and plotters' SVG
//! text layout needs font metrics compiled in.

use maud::{Markup, html};

const W: f64 = 720.0;
const H: f64 = 220.0;
const LEFT: f64 = 64.0;
const RIGHT: f64 = 12.0;
const TOP: f64 = 12.0;
const BOTTOM: f64 = 28.0;
/// Colours of the series, in order (the palette of `console.css`).
const COLOURS: [&str; 6] = ["#0969da", "#1a7f37", "#9a6700", "#cf222e", "#8250df", "#1b7c83"];

/// One named series of `(unix seconds, value)` points, oldest first.
#[derive(Debug, Clone)]
pub struct Series {
    /// Legend.
    pub name: String,
    /// Points.
    pub points: Vec<(i64, f64)>,
}

/// A time chart: one line per series (dots where a series has one point),
/// the y axis from 0 to the largest value (or `y_max`), its labels written
/// by `y_label`, the x axis in UTC hours.
pub fn time_chart(
    id: &str,
    title: &str,
    series: &[Series],
    y_max: Option<f64>,
    y_label: impl Fn(f64) -> String,
) -> Markup {
    let xs = series.iter().flat_map(|s| s.points.iter().map(|p| p.0));
    let (Some(x0), Some(x1)) = (xs.clone().min(), xs.max()) else {
        return html! { p.muted id=(id) { (title) ": no data yet." } };
    };
    let top = y_max.unwrap_or_else(|| {
        series.iter().flat_map(|s| s.points.iter().map(|p| p.1)).fold(0.0, f64::max).max(f64::MIN_POSITIVE)
    });
    let span = (x1 - x0).max(1) as f64;
    let x = |t: i64| LEFT + (t - x0) as f64 / span * (W - LEFT - RIGHT);
    let y = |v: f64| TOP + (1.0 - (v / top).clamp(0.0, 1.0)) * (H - TOP - BOTTOM);
    let hhmm = |t: i64| metalcast_operator_api::display::rfc3339(t).get(5..16).unwrap_or_default().replace('T', " ");
    html! {
        figure.chart {
            svg id=(id) role="img" viewBox=(format!("0 0 {W} {H}")) width=(W) height=(H) xmlns="http://www.w3.org/2000/svg" {
                title { (title) }
                // Axes and the y grid at 0, half and the top.
                @for frac in [0.0, 0.5, 1.0] {
                    line x1=(LEFT) x2=(W - RIGHT) y1=(y(top * frac)) y2=(y(top * frac)) stroke="#d8dee4" stroke-width="1" {}
                    text x=(LEFT - 6.0) y=(y(top * frac) + 4.0) text-anchor="end" font-size="11" fill="#6a737d" { (y_label(top * frac)) }
                }
                text x=(LEFT) y=(H - 8.0) font-size="11" fill="#6a737d" { (hhmm(x0)) }
                @if x1 != x0 {
                    text x=(W - RIGHT) y=(H - 8.0) text-anchor="end" font-size="11" fill="#6a737d" { (hhmm(x1)) " UTC" }
                }
                @for (i, s) in series.iter().enumerate() {
                    @let colour = COLOURS[i % COLOURS.len()];
                    @if s.points.len() > 1 {
                        polyline fill="none" stroke=(colour) stroke-width="2"
                            points=(s.points.iter().map(|(t, v)| format!("{:.1},{:.1}", x(*t), y(*v))).collect::<Vec<_>>().join(" ")) {}
                    }
                    @for (t, v) in &s.points {
                        circle cx=(format!("{:.1}", x(*t))) cy=(format!("{:.1}", y(*v))) r="3" fill=(colour) {
                            title { (s.name) ", " (hhmm(*t)) ": " (y_label(*v)) }
                        }
                    }
                }
            }
            figcaption {
                (title)
                @for (i, s) in series.iter().enumerate() {
                    " " span.swatch data-colour=(i % COLOURS.len()) { "■" } " " (s.name)
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn points_are_placed_on_the_axes_and_names_escaped() {
        let s = vec![Series { name: "<b>16c</b>".into(), points: vec![(0, 0.0), (3600, 2.0)] }];
        let svg = time_chart("c", "Prices", &s, None, |v| format!("{v:.0}")).into_string();
        // First point at the left bottom, the second at the right top.
        assert!(svg.contains(&format!("points=\"{LEFT:.1},{:.1} {:.1},{TOP:.1}\"", H - BOTTOM, W - RIGHT)), "{svg}");
        assert!(svg.contains("&lt;b&gt;16c&lt;/b&gt;") && !svg.contains("<b>"), "{svg}");
        assert!(!svg.contains("style="), "no style attributes under the CSP: {svg}");
        let empty = time_chart("c", "Prices", &[], None, |v| format!("{v}")).into_string();
        assert!(empty.contains("no data yet"), "{empty}");
    }
}
