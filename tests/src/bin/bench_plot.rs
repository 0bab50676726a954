//! `bench-plot`: draw a bench's CSV (`target/bench/<name>.csv`) as an SVG under
//! `docs/bench/` (the README embeds them). One chart per known bench:
//!
//! - `clone_vs_basebackup`: seconds to a caught-up replica vs database size, per path
//!   (pg_basebackup; snapshot + clone; clone of a snapshot taken ahead of time), on the
//!   XFS reflink pool; median of the runs with a min–max bar.
//! - `alarm_to_serving`: seconds from the alarm to scale-up's answer and to all new
//!   replicas serving vs replicas per alarm (the demo, `infra/bench/alarm_to_serving.sh`).
//! - `catchup_vs_age`: catch-up and clone → caught up vs snapshot age
//!   (`infra/bench/catchup_vs_age.sh`).
//! - `prewarm_latency`: the new replica's p95 query latency per 10 s after registration,
//!   slowstart alone vs slowstart + pre-warm (`infra/bench/prewarm_latency.sh`).
//!
//! Usage: `bench-plot [clone_vs_basebackup] [alarm_to_serving] [catchup_vs_age]
//! [prewarm_latency]` (default: every CSV present).

use pgsurge_tests::workspace_root;
use plotters::prelude::*;
use std::collections::BTreeMap;

/// x (in the CSV's unit) → the y of every run.
type Series = BTreeMap<u64, Vec<f64>>;

/// A CSV with a header line, read by column name.
struct Csv<'a> {
    header: Vec<&'a str>,
    lines: Vec<(usize, Vec<&'a str>)>,
}

impl<'a> Csv<'a> {
    fn parse(text: &'a str) -> Csv<'a> {
        let mut lines = text.lines().enumerate();
        let header = lines
            .next()
            .map(|(_, l)| l.split(',').collect())
            .unwrap_or_default();
        Csv {
            header,
            lines: lines
                .map(|(i, l)| (i + 1, l.split(',').collect()))
                .collect(),
        }
    }

    fn get(&self, line: &(usize, Vec<&'a str>), name: &str) -> Result<&'a str, String> {
        let at = self
            .header
            .iter()
            .position(|h| *h == name)
            .ok_or(format!("no column {name}"))?;
        line.1
            .get(at)
            .copied()
            .ok_or(format!("line {}: short", line.0))
    }

    fn num(&self, line: &(usize, Vec<&'a str>), name: &str) -> Result<f64, String> {
        self.get(line, name)?
            .parse()
            .map_err(|e| format!("line {}: {name}: {e}", line.0))
    }
}

/// Draws one bench's CSV text into an SVG file.
type Draw = fn(&str, &std::path::Path) -> Result<(), String>;

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn clone_vs_basebackup(csv: &str, out: &std::path::Path) -> Result<(), String> {
    let csv = Csv::parse(csv);
    let mut series: BTreeMap<&'static str, Series> = BTreeMap::new();
    for line in &csv.lines {
        if !csv.get(line, "pool")?.starts_with("XFS") {
            continue;
        }
        let mb = csv.num(line, "db_mb")? as u64;
        let total = csv.num(line, "total_s")?;
        let mut add = |name: &'static str, y: f64| {
            series
                .entry(name)
                .or_default()
                .entry(mb)
                .or_default()
                .push(y)
        };
        if csv.get(line, "path")? == "clone" {
            add("snapshot + clone", total);
            add(
                "clone, snapshot taken ahead",
                total - csv.num(line, "phase1_s")?,
            );
        } else {
            add("pg_basebackup", total);
        }
    }
    if series.is_empty() {
        return Err("no XFS rows in the CSV".into());
    }
    chart(
        out,
        "a caught-up replica vs database size (XFS reflink pool)",
        "database size (GiB)",
        1024.0,
        SECONDS,
        &series,
    )
}

fn alarm_to_serving(csv: &str, out: &std::path::Path) -> Result<(), String> {
    let csv = Csv::parse(csv);
    let mut series: BTreeMap<&'static str, Series> = BTreeMap::new();
    for line in &csv.lines {
        let n = csv.num(line, "n")? as u64;
        for (name, col) in [
            ("all serving on both HAProxy nodes", "serving_s"),
            ("scale-up answered (snapshot, clones, boots)", "answered_s"),
        ] {
            let y = csv.num(line, col)?;
            series
                .entry(name)
                .or_default()
                .entry(n)
                .or_default()
                .push(y);
        }
    }
    if series.is_empty() {
        return Err("no rows in the CSV".into());
    }
    chart(
        out,
        "alarm → new replicas serving, through the functions (local provider)",
        "new replicas per alarm",
        1.0,
        SECONDS,
        &series,
    )
}

fn catchup_vs_age(csv: &str, out: &std::path::Path) -> Result<(), String> {
    let csv = Csv::parse(csv);
    let mut series: BTreeMap<&'static str, Series> = BTreeMap::new();
    for line in &csv.lines {
        let age = csv.num(line, "age_s")? as u64;
        for (name, col) in [
            ("catch-up", "catch_up_s"),
            ("clone + boot + catch-up", "total_s"),
        ] {
            let y = csv.num(line, col)?;
            series
                .entry(name)
                .or_default()
                .entry(age)
                .or_default()
                .push(y);
        }
    }
    if series.is_empty() {
        return Err("no rows in the CSV".into());
    }
    chart(
        out,
        "a clone's catch-up vs its snapshot's age, under write load (XFS pool)",
        "snapshot age at clone (s)",
        1.0,
        SECONDS,
        &series,
    )
}

fn prewarm_latency(csv: &str, out: &std::path::Path) -> Result<(), String> {
    let csv = Csv::parse(csv);
    let mut series: BTreeMap<&'static str, Series> = BTreeMap::new();
    for line in &csv.lines {
        let Ok(bucket) = csv.get(line, "bucket_s")?.parse::<u64>() else {
            continue; // the whole-window row ("all")
        };
        let name = match csv.get(line, "variant")? {
            "slowstart" => "slowstart alone, p95",
            _ => "slowstart + pre-warm, p95",
        };
        let y = csv.num(line, "p95_ms")?;
        if y.is_nan() {
            continue; // no query reached the new replica in that bucket
        }
        series
            .entry(name)
            .or_default()
            .entry(bucket + 5)
            .or_default()
            .push(y);
    }
    if series.is_empty() {
        return Err("no rows in the CSV".into());
    }
    chart(
        out,
        "new replica's read latency after registration (through HAProxy)",
        "seconds since registered (10 s buckets)",
        1.0,
        "query latency, ms (p95; median, min–max of runs)",
        &series,
    )
}

const SECONDS: &str = "seconds (median, min–max)";

/// One line per series (median) with min–max bars; x = key / `xdiv`.
fn chart(
    out: &std::path::Path,
    caption: &str,
    x_desc: &str,
    xdiv: f64,
    y_desc: &str,
    series: &BTreeMap<&'static str, Series>,
) -> Result<(), String> {
    let xmax = series
        .values()
        .flat_map(|s| s.keys())
        .max()
        .copied()
        .unwrap_or(1) as f64
        / xdiv
        * 1.1;
    let ymax = series
        .values()
        .flat_map(|s| s.values().flatten())
        .fold(1.0f64, |a, b| a.max(*b))
        * 1.15;
    let root = SVGBackend::new(out, (760, 440)).into_drawing_area();
    let err = |e: DrawingAreaErrorKind<_>| format!("drawing: {e:?}");
    root.fill(&WHITE).map_err(err)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(caption, ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(50)
        .build_cartesian_2d(0f64..xmax, 0f64..ymax)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc(x_desc)
        .y_desc(y_desc)
        .draw()
        .map_err(err)?;
    for (i, (name, s)) in series.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        let pts: Vec<(f64, f64, f64, f64)> = s
            .iter()
            .map(|(mb, v)| {
                let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
                let hi = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                (*mb as f64 / xdiv, lo, median(v), hi)
            })
            .collect();
        chart
            .draw_series(LineSeries::new(
                pts.iter().map(|p| (p.0, p.2)),
                color.stroke_width(2),
            ))
            .map_err(err)?
            .label(*name)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
        chart
            .draw_series(
                pts.iter()
                    .map(|p| ErrorBar::new_vertical(p.0, p.1, p.2, p.3, color.filled(), 8)),
            )
            .map_err(err)?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .draw()
        .map_err(err)?;
    root.present().map_err(err)?;
    Ok(())
}

fn main() {
    let root = workspace_root();
    let wanted: Vec<String> = std::env::args().skip(1).collect();
    let benches: [(&str, Draw); 4] = [
        ("clone_vs_basebackup", clone_vs_basebackup),
        ("alarm_to_serving", alarm_to_serving),
        ("catchup_vs_age", catchup_vs_age),
        ("prewarm_latency", prewarm_latency),
    ];
    let mut drew = 0;
    for (name, draw) in benches {
        if !wanted.is_empty() && !wanted.iter().any(|w| w == name) {
            continue;
        }
        let csv = root.join(format!("target/bench/{name}.csv"));
        let Ok(text) = std::fs::read_to_string(&csv) else {
            if wanted.is_empty() {
                continue;
            }
            eprintln!(
                "bench-plot: {} not found: run the bench first",
                csv.display()
            );
            std::process::exit(1);
        };
        let out = root.join(format!("docs/bench/{name}.svg"));
        std::fs::create_dir_all(out.parent().unwrap()).unwrap();
        if let Err(e) = draw(&text, &out) {
            eprintln!("bench-plot: {name}: {e}");
            std::process::exit(1);
        }
        eprintln!("wrote {}", out.display());
        drew += 1;
    }
    if drew == 0 {
        eprintln!("bench-plot: no bench CSV under target/bench/");
        std::process::exit(1);
    }
}
