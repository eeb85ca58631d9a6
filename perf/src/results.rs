//! Plots of the runs `perf/RESULTS.md` quotes, drawn from that file's own
//! tables (`metalcast-bench plot-results`).
//!
//! The report.json files of those runs were not kept, so the numbers come
//! from the markdown: [`PLOTS`] names, per plot, the section (by the start of
//! its heading), which table in it, which rows and which columns; the
//! charts are drawn by [`report`](crate::report)'s code, as the suite's own
//! plots are. The committed SVGs (`perf/plots/`) are checked against a fresh
//! run by `perf/tests/plots.rs`, so an edit of a quoted table without
//! regenerating them fails the tests.
//!
//! The table parser reads GitHub pipe tables as RESULTS.md writes them: a
//! header row, a delimiter row (`|---|---:|`), then rows with as many cells
//! as the header; `\|` is a pipe inside a cell. Anything else in a table it
//! is asked for is an error that names the line, as is a missing section,
//! table, column, row or series: RESULTS.md is edited by hand.

use std::path::{Path, PathBuf};

use plotters::chart::SeriesLabelPosition;

use crate::report::{self, Chart, DrawError};

/// What `plot-results` could not find or read in RESULTS.md, or could not write.
#[derive(Debug, thiserror::Error)]
pub enum ResultsError {
    #[error("no heading starting with {heading:?} (outside code blocks)")]
    SectionNotFound { heading: String },
    #[error("{} headings start with {heading:?} (lines {lines:?}): the plot's heading must name one", lines.len())]
    SectionAmbiguous { heading: String, lines: Vec<usize> },
    #[error("section {heading:?} (line {line}) has no line containing {marker:?}")]
    MarkerNotFound { heading: String, line: usize, marker: String },
    #[error(
        "section {heading:?} (line {line}) has {found} table(s) {place}, the plot needs table {wanted} (counting from 1)"
    )]
    TableNotFound { heading: String, line: usize, place: String, found: usize, wanted: usize },
    #[error("line {line}: {reason}")]
    Malformed { line: usize, reason: String },
    #[error("table at line {line} has no column {column:?} (its columns: {columns:?})")]
    MissingColumn { line: usize, column: String, columns: Vec<String> },
    #[error("line {line}, column {column:?}: {value:?} is not a number")]
    NotANumber { line: usize, column: String, value: String },
    #[error("table at line {line} has no row where {filter}")]
    NoRows { line: usize, filter: String },
    #[error("table at line {line} has no row for {series:?} where {filter}")]
    MissingSeries { line: usize, series: String, filter: String },
    #[error("lines {first} and {second}: two rows for {series:?} at {x:?} (the plot's filter must pick one)")]
    Duplicate { first: usize, second: usize, series: String, x: String },
    #[error(transparent)]
    Draw(#[from] DrawError),
    #[error("{file} (from the section {heading:?})")]
    InPlot {
        file: String,
        heading: String,
        #[source]
        source: Box<ResultsError>,
    },
    #[error("writing {}: {source}", path.display())]
    Write { path: PathBuf, source: std::io::Error },
}

/// A pipe table: its header cells and rows, with 1-based line numbers in the file.
#[derive(Debug, Clone, PartialEq)]
pub struct Table {
    /// Line of the header row.
    pub line: usize,
    pub header: Vec<String>,
    pub rows: Vec<TableRow>,
}

/// One body row of a [`Table`].
#[derive(Debug, Clone, PartialEq)]
pub struct TableRow {
    pub line: usize,
    pub cells: Vec<String>,
}

impl Table {
    /// Index of the column headed exactly `name`.
    pub fn column(&self, name: &str) -> Result<usize, ResultsError> {
        self.header.iter().position(|h| h == name).ok_or_else(|| ResultsError::MissingColumn {
            line: self.line,
            column: name.into(),
            columns: self.header.clone(),
        })
    }
}

/// The cells of a table row: between unescaped pipes, trimmed, `\|` read as `|`.
fn cells(line: usize, text: &str) -> Result<Vec<String>, ResultsError> {
    let t = text.trim();
    let Some(mut rest) = t.strip_prefix('|') else {
        return Err(ResultsError::Malformed { line, reason: "a table row starts with '|'".into() });
    };
    if rest.ends_with('|') && !rest.ends_with("\\|") {
        rest = &rest[..rest.len() - 1];
    }
    let mut out = Vec::new();
    let mut cell = String::new();
    let mut chars = rest.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if chars.peek() == Some(&'|') => {
                cell.push('|');
                chars.next();
            }
            '|' => out.push(std::mem::take(&mut cell).trim().to_owned()),
            c => cell.push(c),
        }
    }
    out.push(cell.trim().to_owned());
    Ok(out)
}

/// Parses one table from its lines (`(line number, text)`, every one starting with `|`).
pub fn parse_table(lines: &[(usize, &str)]) -> Result<Table, ResultsError> {
    let [(hline, head), (dline, delim), body @ ..] = lines else {
        let line = lines.first().map_or(0, |l| l.0);
        return Err(ResultsError::Malformed { line, reason: "a table needs a header row and a delimiter row".into() });
    };
    let header = cells(*hline, head)?;
    let d = cells(*dline, delim)?;
    let is_delim = |c: &String| {
        let c = c.strip_prefix(':').unwrap_or(c);
        let c = c.strip_suffix(':').unwrap_or(c);
        !c.is_empty() && c.chars().all(|x| x == '-')
    };
    if !d.iter().all(is_delim) {
        return Err(ResultsError::Malformed {
            line: *dline,
            reason: format!("the row under a table's header must be its delimiter row (|---|---:|), not {delim:?}"),
        });
    }
    if d.len() != header.len() {
        return Err(ResultsError::Malformed {
            line: *dline,
            reason: format!("the delimiter row has {} cells, the header {}", d.len(), header.len()),
        });
    }
    let mut rows = Vec::new();
    for &(line, text) in body {
        let c = cells(line, text)?;
        if c.len() != header.len() {
            return Err(ResultsError::Malformed {
                line,
                reason: format!("row has {} cells, the header (line {hline}) {}", c.len(), header.len()),
            });
        }
        rows.push(TableRow { line, cells: c });
    }
    Ok(Table { line: *hline, header, rows })
}

/// A section of a markdown file: its heading and the lines up to the next
/// heading of the same or a higher level.
#[derive(Debug)]
pub struct Section<'a> {
    pub heading: String,
    pub line: usize,
    /// The section's lines after the heading, with 1-based line numbers and
    /// whether each is inside a fenced code block.
    lines: Vec<(usize, &'a str, bool)>,
}

/// Every line of `md` with its number, heading level (outside code fences) and whether it is in a fence.
fn scan(md: &str) -> Vec<(usize, &str, Option<usize>, bool)> {
    let mut fence = false;
    let mut out = Vec::new();
    for (i, text) in md.lines().enumerate() {
        let t = text.trim_start();
        if t.starts_with("```") || t.starts_with("~~~") {
            fence = !fence;
            out.push((i + 1, text, None, true));
            continue;
        }
        let hashes = text.chars().take_while(|&c| c == '#').count();
        let level = (!fence && (1..=6).contains(&hashes) && text[hashes..].starts_with(' ')).then_some(hashes);
        out.push((i + 1, text, level, fence));
    }
    out
}

/// The section whose heading text starts with `heading` (exactly one must).
pub fn section<'a>(md: &'a str, heading: &str) -> Result<Section<'a>, ResultsError> {
    let lines = scan(md);
    let found: Vec<usize> = lines
        .iter()
        .enumerate()
        .filter(|(_, (_, text, level, _))| level.is_some_and(|l| text[l..].trim().starts_with(heading)))
        .map(|(i, _)| i)
        .collect();
    let i = match found[..] {
        [i] => i,
        [] => return Err(ResultsError::SectionNotFound { heading: heading.into() }),
        _ => {
            return Err(ResultsError::SectionAmbiguous {
                heading: heading.into(),
                lines: found.iter().map(|&i| lines[i].0).collect(),
            });
        }
    };
    let (line, text, level, _) = lines[i];
    let level = level.expect("a heading");
    let body = lines[i + 1..]
        .iter()
        .take_while(|(_, _, l, _)| l.is_none_or(|l| l > level))
        .map(|&(n, t, _, fence)| (n, t, fence))
        .collect();
    Ok(Section { heading: text[level..].trim().to_owned(), line, lines: body })
}

impl Section<'_> {
    /// The `nth` table (from 0) of the section, counting from its first
    /// line that contains `after` when given.
    pub fn table(&self, after: Option<&str>, nth: usize) -> Result<Table, ResultsError> {
        let start = match after {
            None => 0,
            Some(m) => self.lines.iter().position(|(_, t, _)| t.contains(m)).ok_or_else(|| {
                ResultsError::MarkerNotFound { heading: self.heading.clone(), line: self.line, marker: m.into() }
            })?,
        };
        let mut blocks: Vec<Vec<(usize, &str)>> = Vec::new();
        let mut in_block = false;
        for &(n, t, fence) in &self.lines[start..] {
            if !fence && t.trim_start().starts_with('|') {
                if !in_block {
                    blocks.push(Vec::new());
                }
                blocks.last_mut().expect("pushed").push((n, t));
                in_block = true;
            } else {
                in_block = false;
            }
        }
        match blocks.get(nth) {
            Some(b) => parse_table(b),
            None => Err(ResultsError::TableNotFound {
                heading: self.heading.clone(),
                line: self.line,
                place: after.map_or("in all".into(), |m| format!("after the line containing {m:?}")),
                found: blocks.len(),
                wanted: nth + 1,
            }),
        }
    }
}

/// What a plot puts on its x axis.
#[derive(Debug, Clone, Copy)]
pub enum XAxis {
    /// One point per distinct value of this column, in the table's order (e.g. `loss`).
    Category(&'static str),
    /// This column's value as a number (e.g. `N`).
    Number(&'static str),
}

/// One plot of [`PLOTS`]: where its numbers are in RESULTS.md and how it is drawn.
#[derive(Debug, Clone)]
pub struct Plot {
    /// File name under the output directory.
    pub file: &'static str,
    /// Chart title: names the run and its date.
    pub title: &'static str,
    /// The start of the section's heading.
    pub heading: &'static str,
    /// Count tables from the section's first line containing this.
    pub after: Option<&'static str>,
    /// Which table (from 0) of the section, or after `after`.
    pub table: usize,
    /// Only rows whose cell in each column is exactly this.
    pub filter: &'static [(&'static str, &'static str)],
    pub x: XAxis,
    /// Label of the x axis.
    pub x_desc: &'static str,
    /// The column holding the seconds (its cell's first number; `-` is no point).
    pub time: &'static str,
    /// The column naming the line a row belongs to.
    pub series: &'static str,
    /// The lines, in legend order; each must have at least one row.
    pub contenders: &'static [&'static str],
    /// Where the legend goes: a corner or side no line runs through.
    pub legend: SeriesLabelPosition,
}

/// Without metalcast-xdp (in every table; slower than metalcast's socket path on veth at every point).
const FIVE: &[&str] = &["metalcast", "udpcast", "http", "bittorrent", "blaster"];
const SESSION_8: &str = "Every contender, N = 2 and 16, four loss models";
const SESSION_9: &str = "The rest of the subset: N = 16, 5% and bursty unthrottled, and behind 200 Mbit/s";

/// The plots `plot-results` draws: metalcast beside udpcast, HTTP,
/// BitTorrent and the blaster, each from one table of one run (sessions 8
/// and 9 ran on different VMs, so they are never mixed in one plot).
pub const PLOTS: &[Plot] = &[
    Plot {
        file: "issue9-session8-n2-200mbit.svg",
        title: "Issue 9 session 8, 2026-11-22: 256 MiB to N = 2, 200 Mbit/s links",
        heading: SESSION_8,
        after: None,
        table: 0,
        filter: &[("N", "2"), ("image", "256 MiB"), ("link", "200 Mbit/s")],
        x: XAxis::Category("loss"),
        x_desc: "loss on every receiver link",
        time: "median s",
        series: "contender",
        contenders: FIVE,
        legend: SeriesLabelPosition::UpperLeft,
    },
    Plot {
        file: "issue9-session9-n16-200mbit.svg",
        title: "Issue 9 session 9, 2026-11-22: 256 MiB to N = 16, 200 Mbit/s links",
        heading: SESSION_9,
        after: None,
        table: 1,
        filter: &[("N", "16"), ("image", "256 MiB"), ("link", "200 Mbit/s")],
        x: XAxis::Category("loss"),
        x_desc: "loss on every receiver link (HTTP not run: 16 copies through one link)",
        time: "median s",
        series: "contender",
        contenders: &["metalcast", "udpcast", "bittorrent", "blaster"],
        legend: SeriesLabelPosition::UpperLeft,
    },
    Plot {
        file: "issue9-session8-n2-unthrottled.svg",
        title: "Issue 9 session 8, 2026-11-22: 256 MiB to N = 2, no link limit",
        heading: SESSION_8,
        after: None,
        table: 0,
        filter: &[("N", "2"), ("image", "256 MiB"), ("link", "none")],
        x: XAxis::Category("loss"),
        x_desc: "loss on every receiver link",
        time: "median s",
        series: "contender",
        contenders: FIVE,
        legend: SeriesLabelPosition::MiddleRight,
    },
    Plot {
        file: "issue9-session8-unthrottled-vs-n.svg",
        title: "Issue 9 session 8, 2026-11-22: 256 MiB, 0% loss, no link limit",
        heading: SESSION_8,
        after: None,
        table: 0,
        filter: &[("loss", "0%"), ("image", "256 MiB"), ("link", "none")],
        x: XAxis::Number("N"),
        x_desc: "receivers (N)",
        time: "median s",
        series: "contender",
        contenders: FIVE,
        legend: SeriesLabelPosition::UpperLeft,
    },
    Plot {
        file: "issue3-run7-udpcast.svg",
        title: "Issue 3 run 7, 2026-11-22: 1 GiB to 8 receivers, MTU 9000",
        heading: "One image to 8 receivers: metalcast vs udpcast",
        after: Some("**Run 7,"),
        table: 0,
        filter: &[],
        x: XAxis::Category("loss"),
        x_desc: "loss on every receiver link (no link limit)",
        time: "median s (spread)",
        series: "contender",
        contenders: &["metalcast", "udpcast"],
        legend: SeriesLabelPosition::UpperLeft,
    },
];

/// The first number of a cell (`31.18 (5%)` -> 31.18); `None` for `-` or an empty cell (no median).
fn seconds(row: &TableRow, col: usize, column: &str) -> Result<Option<f64>, ResultsError> {
    let cell = row.cells[col].trim();
    if cell.is_empty() || cell == "-" {
        return Ok(None);
    }
    let first = cell.split(|c: char| c.is_whitespace() || c == '(').next().unwrap_or_default();
    match first.parse::<f64>() {
        Ok(v) if v.is_finite() => Ok(Some(v)),
        _ => Err(ResultsError::NotANumber { line: row.line, column: column.into(), value: cell.into() }),
    }
}

/// The chart of one plot, from the markdown `md`.
pub(crate) fn chart(md: &str, p: &Plot) -> Result<Chart, ResultsError> {
    let t = section(md, p.heading)?.table(p.after, p.table)?;
    let filter: Vec<(usize, &str)> =
        p.filter.iter().map(|&(c, v)| Ok((t.column(c)?, v))).collect::<Result<_, ResultsError>>()?;
    let describe = || {
        if p.filter.is_empty() {
            "(any row)".to_owned()
        } else {
            p.filter.iter().map(|(c, v)| format!("{c} = {v:?}")).collect::<Vec<_>>().join(", ")
        }
    };
    let (x_col, x_name) = match p.x {
        XAxis::Category(c) | XAxis::Number(c) => (t.column(c)?, c),
    };
    let (time, series) = (t.column(p.time)?, t.column(p.series)?);
    let rows: Vec<&TableRow> = t.rows.iter().filter(|r| filter.iter().all(|&(c, v)| r.cells[c] == v)).collect();
    if rows.is_empty() {
        return Err(ResultsError::NoRows { line: t.line, filter: describe() });
    }
    let mut labels: Vec<String> = Vec::new();
    for r in &rows {
        if !labels.contains(&r.cells[x_col]) {
            labels.push(r.cells[x_col].clone());
        }
    }
    let mut out = Vec::new();
    for &name in p.contenders {
        let mine: Vec<&&TableRow> = rows.iter().filter(|r| r.cells[series] == name).collect();
        if mine.is_empty() {
            return Err(ResultsError::MissingSeries { line: t.line, series: name.into(), filter: describe() });
        }
        let mut seen: Vec<(&str, usize)> = Vec::new();
        let mut points = Vec::new();
        for r in mine {
            let xv = r.cells[x_col].as_str();
            if let Some(&(_, first)) = seen.iter().find(|(v, _)| *v == xv) {
                return Err(ResultsError::Duplicate { first, second: r.line, series: name.into(), x: xv.into() });
            }
            seen.push((xv, r.line));
            let x = match p.x {
                XAxis::Category(_) => labels.iter().position(|l| l == xv).expect("collected above") as f64,
                XAxis::Number(_) => xv.parse::<f64>().ok().filter(|v| v.is_finite()).ok_or_else(|| {
                    ResultsError::NotANumber { line: r.line, column: x_name.into(), value: xv.into() }
                })?,
            };
            if let Some(s) = seconds(r, time, p.time)? {
                points.push((x, s));
            }
        }
        points.sort_by(|a, b| a.0.total_cmp(&b.0));
        out.push((name.to_owned(), points));
    }
    Ok(Chart {
        title: p.title.into(),
        x_desc: p.x_desc.into(),
        x_labels: matches!(p.x, XAxis::Category(_)).then_some(labels),
        series: out,
        legend: p.legend.clone(),
    })
}

/// Every plot of [`PLOTS`] as `(file name, SVG document)`.
pub fn render(md: &str) -> Result<Vec<(&'static str, String)>, ResultsError> {
    PLOTS
        .iter()
        .map(|p| {
            let svg = chart(md, p).and_then(|c| Ok(report::svg(&c)?));
            svg.map(|s| (p.file, s)).map_err(|e| ResultsError::InPlot {
                file: p.file.into(),
                heading: p.heading.into(),
                source: Box::new(e),
            })
        })
        .collect()
}

/// Draws every plot from `md` into `dir` (created if missing); returns the files written.
/// Nothing is written unless every plot could be drawn.
pub fn write(md: &str, dir: &Path) -> Result<Vec<PathBuf>, ResultsError> {
    let svgs = render(md)?;
    std::fs::create_dir_all(dir).map_err(|source| ResultsError::Write { path: dir.into(), source })?;
    let mut files = Vec::new();
    for (name, svg) in svgs {
        let path = dir.join(name);
        std::fs::write(&path, svg).map_err(|source| ResultsError::Write { path: path.clone(), source })?;
        files.push(path);
    }
    Ok(files)
}

/// GitHub's anchor for a heading: lower case, only letters, digits, `_`,
/// `-` and spaces kept, spaces made `-` (`## A (b), c` -> `a-b-c`).
/// Repeated headings' `-1`, `-2` suffixes are not handled.
pub fn anchor(heading: &str) -> String {
    heading
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || matches!(c, '_' | '-' | ' '))
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

/// The anchors of every heading of `md` (outside code fences).
pub fn anchors(md: &str) -> Vec<String> {
    scan(md).into_iter().filter_map(|(_, text, level, _)| level.map(|l| anchor(text[l..].trim()))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const MD: &str = "# Results

Intro.

## Imaging (issue 9)

```sh
# not a heading
| not | a table |
```

| N | loss | contender | median s | note |
|---:|---|---|---:|---|
| 2 | 0% | metalcast | 1.50 | a \\| b |
| 2 | 0% | udpcast | 4.00 (3%) | |
| 2 | 1% | metalcast | 2.00 | |
| 2 | 1% | udpcast | - | all failed |
| 16 | 0% | metalcast | 5.00 | |
| 16 | 0% | udpcast | 9.50 | |

**Run 2, later:**

| N | loss | contender | median s | note |
|---|---|---|---|---|
| 2 | 0% | metalcast | 1.40 | |

### A subsection

text

## Next (issue 10)

| a | b |
|---|---|
| 1 | 2 | 3 |
";

    fn plot(filter: &'static [(&'static str, &'static str)], x: XAxis) -> Plot {
        Plot {
            file: "t.svg",
            title: "t",
            heading: "Imaging",
            after: None,
            table: 0,
            filter,
            x,
            x_desc: "x",
            time: "median s",
            series: "contender",
            contenders: &["metalcast", "udpcast"],
            legend: SeriesLabelPosition::UpperLeft,
        }
    }

    #[test]
    fn reads_tables_of_a_section() {
        let s = section(MD, "Imaging").unwrap();
        assert_eq!((s.heading.as_str(), s.line), ("Imaging (issue 9)", 5));
        let t = s.table(None, 0).unwrap();
        assert_eq!(t.line, 12, "the table in the code block is not counted");
        assert_eq!(t.header, ["N", "loss", "contender", "median s", "note"]);
        assert_eq!(t.rows.len(), 6);
        assert_eq!(t.rows[0].cells, ["2", "0%", "metalcast", "1.50", "a | b"]);
        assert_eq!((t.rows[1].line, t.rows[1].cells[4].as_str()), (15, ""));
        let later = s.table(Some("**Run 2,"), 0).unwrap();
        assert_eq!((later.line, later.rows[0].cells[3].as_str()), (23, "1.40"));
        assert_eq!(s.table(None, 1).unwrap(), later);
        // The subsection belongs to the section; the next ## ends it.
        assert!(s.lines.iter().any(|l| l.1 == "### A subsection"));
        assert!(!s.lines.iter().any(|l| l.1.starts_with("## Next")));
    }

    #[test]
    fn malformed_tables_name_their_line() {
        let s = section(MD, "Next").unwrap();
        match s.table(None, 0) {
            Err(ResultsError::Malformed { line, reason }) => {
                assert_eq!(line, 35);
                assert!(reason.contains("3 cells") && reason.contains("2"), "{reason}");
            }
            other => panic!("{other:?}"),
        }
        let no_delim = [(7, "| a | b |"), (8, "| 1 | 2 |")];
        assert!(matches!(parse_table(&no_delim), Err(ResultsError::Malformed { line: 8, .. })));
        let short_delim = [(7, "| a | b |"), (8, "|---|")];
        assert!(matches!(parse_table(&short_delim), Err(ResultsError::Malformed { line: 8, .. })));
        assert!(matches!(parse_table(&[(3, "| a |")]), Err(ResultsError::Malformed { line: 3, .. })));
        // Without the outer pipes' trailing one, and with alignment colons: still a table.
        let t = parse_table(&[(1, "| a | b"), (2, "|:--|--:|"), (3, "| 1 | 2")]).unwrap();
        assert_eq!(t.rows[0].cells, ["1", "2"]);
    }

    #[test]
    fn missing_things_are_named() {
        let e = section(MD, "Netboot").unwrap_err();
        assert!(matches!(&e, ResultsError::SectionNotFound { heading } if heading == "Netboot"), "{e:?}");
        assert!(e.to_string().contains("\"Netboot\""), "{e}");
        let two = format!("{MD}\n## Imaging again\n");
        assert!(
            matches!(section(&two, "Imaging"), Err(ResultsError::SectionAmbiguous { lines, .. }) if lines == [5, 37])
        );
        let s = section(MD, "Imaging").unwrap();
        assert!(matches!(s.table(None, 2), Err(ResultsError::TableNotFound { found: 2, wanted: 3, .. })));
        assert!(matches!(s.table(Some("**Run 9"), 0), Err(ResultsError::MarkerNotFound { .. })));
        let t = s.table(None, 0).unwrap();
        let e = t.column("link").unwrap_err();
        assert!(e.to_string().contains("no column \"link\"") && e.to_string().contains("\"median s\""), "{e}");
        let e = chart(MD, &plot(&[("N", "4")], XAxis::Category("loss"))).unwrap_err();
        assert!(matches!(e, ResultsError::NoRows { line: 12, .. }), "{e:?}");
        let mut p = plot(&[("N", "2")], XAxis::Category("loss"));
        p.contenders = &["metalcast", "http"];
        assert!(matches!(chart(MD, &p), Err(ResultsError::MissingSeries { series, .. }) if series == "http"));
        // Without an N filter, N = 2 and 16 both have a 0% row: ambiguous.
        let e = chart(MD, &plot(&[], XAxis::Category("loss"))).unwrap_err();
        assert!(matches!(e, ResultsError::Duplicate { first: 14, second: 18, .. }), "{e:?}");
        let bad = MD.replace("| 2 | 1% | metalcast | 2.00 |", "| 2 | 1% | metalcast | fast |");
        let e = chart(&bad, &plot(&[("N", "2")], XAxis::Category("loss"))).unwrap_err();
        assert!(matches!(&e, ResultsError::NotANumber { line: 16, value, .. } if value == "fast"), "{e:?}");
    }

    #[test]
    fn charts_take_the_rows_asked_for() {
        let c = chart(MD, &plot(&[("N", "2")], XAxis::Category("loss"))).unwrap();
        assert_eq!(c.x_labels.as_deref(), Some(&["0%".to_owned(), "1%".to_owned()][..]));
        assert_eq!(c.series[0], ("metalcast".to_owned(), vec![(0.0, 1.5), (1.0, 2.0)]));
        // "4.00 (3%)" is 4.00; "-" (no median) is no point.
        assert_eq!(c.series[1], ("udpcast".to_owned(), vec![(0.0, 4.0)]));
        let c = chart(MD, &plot(&[("loss", "0%")], XAxis::Number("N"))).unwrap();
        assert_eq!(c.x_labels, None);
        assert_eq!(c.series[1].1, [(2.0, 4.0), (16.0, 9.5)]);
        let svg = report::svg(&c).unwrap();
        assert!(svg.starts_with("<svg") && svg.contains("\nudpcast\n") && svg.contains("<polyline"), "{svg}");
    }

    #[test]
    fn anchors_as_github_makes_them() {
        assert_eq!(
            anchor("Every contender, N = 2 and 16, four loss models (issue 9, session 8, 2026-11-22 18:45-20:05 UTC)"),
            "every-contender-n--2-and-16-four-loss-models-issue-9-session-8-2026-11-22-1845-2005-utc"
        );
        assert_eq!(
            anchor("Bundle build throughput vs `zstd -T1 | b3sum` (issue 2)"),
            "bundle-build-throughput-vs-zstd--t1--b3sum-issue-2"
        );
        assert_eq!(anchors(MD), ["results", "imaging-issue-9", "a-subsection", "next-issue-10"]);
    }
}
