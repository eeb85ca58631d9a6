//! The committed plots (`perf/plots/*.svg`) are what `metalcast-bench
//! plot-results` draws from the committed `perf/RESULTS.md`, byte for byte,
//! and RESULTS.md's links to its own sections resolve. Unprivileged, about a
//! second.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const REGENERATE: &str = "regenerate them from the workspace root with \
     `cargo run -p metalcast-bench -- plot-results` and commit perf/plots/";

fn perf_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn plot_results(results: &Path, out: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_metalcast-bench"))
        .arg("plot-results")
        .arg("--results")
        .arg(results)
        .arg("--out")
        .arg(out)
        .output()
        .expect("running metalcast-bench plot-results")
}

fn svgs(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("listing {}: {e}", dir.display()))
        .map(|e| e.expect("dir entry").file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".svg"))
        .collect()
}

#[test]
fn committed_plots_are_current() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let out = plot_results(&perf_dir().join("RESULTS.md"), tmp.path());
    assert!(out.status.success(), "plot-results failed: {}", String::from_utf8_lossy(&out.stderr));
    let committed_dir = perf_dir().join("plots");
    let (fresh, committed) = (svgs(tmp.path()), svgs(&committed_dir));
    assert!(!fresh.is_empty(), "plot-results wrote no SVG");
    assert_eq!(committed, fresh, "perf/plots/ does not hold exactly the plots plot-results draws: {REGENERATE}");
    let mut stale: Vec<PathBuf> = Vec::new();
    for name in &fresh {
        let a = std::fs::read(tmp.path().join(name)).expect("fresh plot");
        let b = std::fs::read(committed_dir.join(name)).expect("committed plot");
        if a != b {
            stale.push(committed_dir.join(name));
        }
    }
    assert!(stale.is_empty(), "{stale:?} differ from what RESULTS.md's tables draw now: {REGENERATE}");
}

#[test]
fn a_renamed_section_is_named_in_the_error() {
    let md = std::fs::read_to_string(perf_dir().join("RESULTS.md")).expect("RESULTS.md");
    let heading = "### The rest of the subset:";
    assert!(md.contains(heading), "the test's premise: RESULTS.md has a section {heading:?}");
    let tmp = tempfile::tempdir().expect("temp dir");
    let edited = tmp.path().join("RESULTS.md");
    std::fs::write(&edited, md.replace(heading, "### The remainder of the subset:")).expect("writing");
    let out = plot_results(&edited, &tmp.path().join("plots"));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "plot-results succeeded without the section: {err}");
    assert!(err.contains("no heading starting with \"The rest of the subset:"), "{err}");
    assert!(err.contains("issue9-session9-n16-200mbit.svg (from the section"), "names the plot: {err}");
    assert!(!err.contains("panicked"), "{err}");
    assert!(!tmp.path().join("plots").exists(), "nothing is written when a plot cannot be drawn");
}

#[test]
fn section_links_resolve() {
    let md = std::fs::read_to_string(perf_dir().join("RESULTS.md")).expect("RESULTS.md");
    let anchors = metalcast_bench::results::anchors(&md);
    let mut links = Vec::new();
    for (i, part) in md.split("](#").enumerate().skip(1) {
        let target = part.split(')').next().unwrap_or_default();
        links.push(target.to_owned());
        assert!(anchors.iter().any(|a| a == target), "link {i} of RESULTS.md, #{target}, matches no heading");
    }
    assert!(!links.is_empty(), "RESULTS.md's summary links to its sections");
    for image in md.split("](plots/").skip(1) {
        let file = image.split(')').next().unwrap_or_default();
        assert!(perf_dir().join("plots").join(file).is_file(), "RESULTS.md shows plots/{file}, which does not exist");
    }
    let readme = std::fs::read_to_string(perf_dir().join("../README.md")).expect("README.md");
    for image in readme.split("](perf/plots/").skip(1) {
        let file = image.split(')').next().unwrap_or_default();
        assert!(
            perf_dir().join("plots").join(file).is_file(),
            "README.md shows perf/plots/{file}, which does not exist"
        );
    }
}
