//! Results: the median, the Markdown table and the JSON lines.

use std::collections::BTreeMap;
use std::io::{self, Write};

use serde::Serialize;

use crate::scenarios::Impl;

/// The median of `values` (sorted in place); NaN if empty.
pub fn median(values: &mut [f64]) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    if values.len() % 2 == 1 {
        values[mid]
    } else {
        (values[mid - 1] + values[mid]) / 2.0
    }
}

/// What one implementation gave for one scenario variant.
#[derive(Clone, Debug)]
pub enum Cell {
    /// The value of each run, in run order.
    Runs(Vec<f64>),
    /// The runs of each configuration of a peer (a start method, an
    /// option), in the entry's order; the cell's value is the best
    /// configuration's median.
    Configs(Vec<(&'static str, Vec<f64>)>),
    /// Not measured: the peer's tool is missing.
    Skipped,
    /// A run failed; the message was already printed.
    Failed,
}

impl Cell {
    /// The median of the runs (of the best configuration), if any.
    pub fn value(&self, unit: &str) -> Option<f64> {
        self.best(unit).map(|(v, _)| v)
    }

    /// The value and, for a cell of several configurations, the best
    /// one's name: the smallest median, or the largest for a rate.
    pub fn best(&self, unit: &str) -> Option<(f64, Option<&'static str>)> {
        match self {
            Cell::Runs(runs) if !runs.is_empty() => Some((median(&mut runs.clone()), None)),
            Cell::Configs(configs) => {
                let mut best: Option<(f64, &'static str)> = None;
                for (name, runs) in configs.iter().filter(|(_, r)| !r.is_empty()) {
                    let m = median(&mut runs.clone());
                    if best.is_none_or(|(b, _)| better(unit, m, b)) {
                        best = Some((m, name));
                    }
                }
                let named = configs.len() > 1;
                best.map(|(m, name)| (m, named.then_some(name)))
            }
            _ => None,
        }
    }
}

/// Is a larger value better in `unit` (a rate)?
pub fn higher_is_better(unit: &str) -> bool {
    matches!(
        unit,
        "msgs_per_s" | "ops_per_s" | "items_per_s" | "GB_per_s"
    )
}

/// Is `a` better than `b` in `unit`?
fn better(unit: &str, a: f64, b: f64) -> bool {
    if higher_is_better(unit) { a > b } else { a < b }
}

/// How multiproc compares with a peer, read one way whatever the unit:
/// `12× faster` or `3.1× slower` (for memory, `smaller` or `larger`).
///
/// An infinite value is a run that hung (a peer that never reported a
/// fault): `peer hung`, or `multiproc hung`.
pub fn verdict(unit: &str, multiproc: f64, peer: f64) -> String {
    match (multiproc.is_finite(), peer.is_finite()) {
        (true, false) => return "peer hung".to_string(),
        (false, true) => return "multiproc hung".to_string(),
        (false, false) => return "both hung".to_string(),
        (true, true) => {}
    }
    // A figure of 0 (an overhead below what the clock sees) has no ratio.
    match (multiproc > 0.0, peer > 0.0) {
        (false, false) => return "even (both 0)".to_string(),
        (true, false) | (false, true) => {
            let multiproc_ahead = (multiproc > 0.0) == higher_is_better(unit);
            let who = if multiproc > 0.0 { "peer" } else { "multiproc" };
            let word = if multiproc_ahead { "faster" } else { "slower" };
            return format!("{word} ({who} 0)");
        }
        (true, true) => {}
    }
    let (ahead, factor) = if higher_is_better(unit) {
        (multiproc >= peer, multiproc / peer)
    } else {
        (multiproc <= peer, peer / multiproc)
    };
    let factor = if ahead { factor } else { 1.0 / factor };
    let word = match (unit, ahead) {
        ("MiB", true) => "smaller",
        ("MiB", false) => "larger",
        (_, true) => "faster",
        (_, false) => "slower",
    };
    format!("{}× {word}", ratio(factor))
}

/// A factor: `1.23`, `12.3`, `123`.
fn ratio(v: f64) -> String {
    match v {
        v if v >= 100.0 => format!("{v:.0}"),
        v if v >= 10.0 => format!("{v:.1}"),
        v => format!("{v:.2}"),
    }
}

/// One line of the table: a scenario variant, with a cell per implementation.
#[derive(Clone, Debug)]
pub struct Row {
    /// Scenario name.
    pub scenario: &'static str,
    /// Variant name, `-` if none.
    pub variant: &'static str,
    /// Unit of the values.
    pub unit: &'static str,
    /// The implementations that have this scenario variant.
    pub cells: BTreeMap<Impl, Cell>,
}

/// How a unit reads in the table.
pub fn display_unit(unit: &str) -> &str {
    match unit {
        "us" => "µs",
        "us_per_task" => "µs/task",
        "msgs_per_s" => "msg/s",
        "ops_per_s" => "op/s",
        "items_per_s" => "item/s",
        "GB_per_s" => "GB/s",
        "MiB" => "MiB",
        other => other,
    }
}

/// About three significant digits; millions as `13.5 M`.
fn number(v: f64) -> String {
    match v.abs() {
        a if a >= 1e6 && a.is_finite() => format!("{} M", number(v / 1e6)),
        a if a >= 100.0 => format!("{v:.0}"),
        a if a >= 10.0 => format!("{v:.1}"),
        a if a >= 1.0 || a == 0.0 || !a.is_finite() => format!("{v:.2}"),
        a => {
            // Small rates (8-byte messages in GB/s): keep three digits.
            let digits = (2.0 - a.log10().floor()) as usize;
            format!("{v:.digits$}")
        }
    }
}

/// The implementations that appear in `rows`, in column order.
fn columns(rows: &[Row]) -> Vec<Impl> {
    Impl::ALL
        .into_iter()
        .filter(|imp| rows.iter().any(|r| r.cells.contains_key(imp)))
        .collect()
}

/// A cell as it reads: `9.63 µs/task`, with the best configuration's
/// name if it has several (`9.63 µs/task (fork)`).
fn show(cell: Option<&Cell>, unit: &str) -> String {
    let shown = display_unit(unit);
    match cell {
        None => String::new(),
        Some(Cell::Skipped) => "skipped".to_string(),
        Some(Cell::Failed) => "error".to_string(),
        Some(cell) => match cell.best(unit) {
            None => String::new(),
            Some((v, _)) if v.is_infinite() => "hung".to_string(),
            Some((v, None)) => format!("{} {shown}", number(v)),
            Some((v, Some(config))) => format!("{} {shown} ({})", number(v), short_config(config)),
        },
    }
}

/// `multiprocessing/fork` as `fork`; other configurations as they are.
fn short_config(config: &str) -> &str {
    config.strip_prefix("multiprocessing/").unwrap_or(config)
}

/// A row's cells under `impls`, then how multiproc compares with each.
fn cells(row: &Row, impls: &[Impl]) -> Vec<String> {
    let mut line: Vec<String> = impls
        .iter()
        .map(|imp| show(row.cells.get(imp), row.unit))
        .collect();
    let base = row
        .cells
        .get(&Impl::Multiproc)
        .and_then(|c| c.value(row.unit));
    let verdicts: Vec<String> = row
        .cells
        .iter()
        .filter(|(imp, _)| **imp != Impl::Multiproc)
        .filter_map(|(imp, cell)| Some((imp, base?, cell.value(row.unit)?)))
        .map(|(imp, m, p)| format!("{}: {}", imp.name(), verdict(row.unit, m, p)))
        .collect();
    line.push(verdicts.join(", "));
    line
}

/// The ratio column's header.
const VERDICTS: &str = "multiproc vs each";

/// Writes the Markdown table: one column per implementation that appears
/// in `rows`, then how multiproc compares with each.
pub fn write_table(out: &mut impl Write, rows: &[Row]) -> io::Result<()> {
    let impls = columns(rows);
    let mut header = vec!["scenario".to_string(), "variant".to_string()];
    header.extend(impls.iter().map(|imp| imp.name().to_string()));
    header.push(VERDICTS.to_string());
    writeln!(out, "| {} |", header.join(" | "))?;
    writeln!(out, "|{}", "---|".repeat(header.len()))?;
    for row in rows {
        let mut line = vec![row.scenario.to_string(), row.variant.to_string()];
        line.extend(cells(row, &impls));
        writeln!(out, "| {} |", line.join(" | "))?;
    }
    Ok(())
}

/// Is `variant` a start method (rows of one scenario that differ only in
/// it are one line of the headline)?
fn is_start_method(variant: &str) -> bool {
    matches!(variant, "fork" | "spawn" | "forkserver")
}

/// The best value of `imp` over `rows`, with what it was measured with:
/// the variant if the rows are several, the configuration if any.
fn best_over(rows: &[&Row], imp: Impl) -> Option<(f64, String)> {
    let mut best: Option<(f64, String)> = None;
    for row in rows {
        let Some((v, config)) = row.cells.get(&imp).and_then(|c| c.best(row.unit)) else {
            continue;
        };
        if best.as_ref().is_none_or(|(b, _)| better(row.unit, v, *b)) {
            let how = match config {
                Some(c) => short_config(c).to_string(),
                None if rows.len() > 1 => row.variant.to_string(),
                None => String::new(),
            };
            best = Some((v, how));
        }
    }
    best
}

/// Writes the headline: a line per scenario (its start-method variants
/// taken together, each side at its best; other variants on lines of
/// their own) with multiproc, the best peer a user would pick instead
/// (`rayon` and `limit` are bounds, not peers) and how they compare.
pub fn write_headline(out: &mut impl Write, rows: &[Row]) -> io::Result<()> {
    let mut groups: Vec<(String, Vec<&Row>)> = Vec::new();
    for row in rows {
        let key = if is_start_method(row.variant) || row.variant == "-" {
            row.scenario.to_string()
        } else {
            format!("{} {}", row.scenario, row.variant)
        };
        match groups.iter_mut().find(|(k, _)| *k == key) {
            Some((_, group)) => group.push(row),
            None => groups.push((key, vec![row])),
        }
    }
    writeln!(
        out,
        "| scenario | multiproc | best peer | multiproc vs best peer |"
    )?;
    writeln!(out, "|---|---|---|---|")?;
    for (name, group) in &groups {
        let unit = display_unit(group[0].unit);
        let Some((m, m_how)) = best_over(group, Impl::Multiproc) else {
            continue;
        };
        let peer = Impl::ALL
            .into_iter()
            .filter(|imp| imp.is_peer())
            .filter_map(|imp| best_over(group, imp).map(|(v, how)| (imp, v, how)))
            .reduce(|a, b| {
                if better(group[0].unit, b.1, a.1) {
                    b
                } else {
                    a
                }
            });
        let Some((imp, p, p_how)) = peer else {
            continue;
        };
        let with = |how: &str| {
            if how.is_empty() {
                String::new()
            } else {
                format!(" ({how})")
            }
        };
        let figure = |v: f64| {
            if v.is_infinite() {
                "hung".to_string()
            } else {
                format!("{} {unit}", number(v))
            }
        };
        writeln!(
            out,
            "| {name} | {}{} | {}{}: {} | **{}** |",
            figure(m),
            with(&m_how),
            imp.name(),
            with(&p_how),
            figure(p),
            verdict(group[0].unit, m, p)
        )?;
    }
    Ok(())
}

/// A sweep's value as it reads in a table: sizes in bytes as `4 KiB`.
pub fn display_value(param: &str, value: &str) -> String {
    match (param, value.parse::<u64>()) {
        ("bytes", Ok(n)) if n >= 1 << 20 && n % (1 << 20) == 0 => format!("{} MiB", n >> 20),
        ("bytes", Ok(n)) if n >= 1 << 10 && n % (1 << 10) == 0 => format!("{} KiB", n >> 10),
        ("bytes", Ok(n)) => format!("{n} B"),
        _ => value.to_string(),
    }
}

/// Writes a sweep as a Markdown table under a heading: a row per value of
/// the parameter, a column per implementation, then the ratios.
pub fn write_sweep_table(
    out: &mut impl Write,
    title: &str,
    param: &str,
    rows: &[Row],
) -> io::Result<()> {
    let impls = columns(rows);
    writeln!(out, "### {title}")?;
    writeln!(out)?;
    let mut header = vec![param.to_string()];
    header.extend(impls.iter().map(|imp| imp.name().to_string()));
    header.push(VERDICTS.to_string());
    writeln!(out, "| {} |", header.join(" | "))?;
    writeln!(out, "|{}", "---|".repeat(header.len()))?;
    for row in rows {
        let mut line = vec![display_value(param, row.variant)];
        line.extend(cells(row, &impls));
        writeln!(out, "| {} |", line.join(" | "))?;
    }
    Ok(())
}

/// What every JSON line holds about a cell: `median`, `unit`, `runs`,
/// and for a cell of several configurations the best one's name
/// (`config`, whose runs `runs` are) and every configuration's median and
/// runs (`configs`).
#[derive(Serialize)]
struct Measured<'a> {
    median: f64,
    unit: &'a str,
    runs: Vec<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    config: Option<&'a str>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    configs: Vec<ConfigRecord<'a>>,
    /// The median run hung (it is then `null`, as are hung runs).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    hung: bool,
}

/// One configuration of a cell, in `configs`.
#[derive(Serialize)]
struct ConfigRecord<'a> {
    config: &'a str,
    median: f64,
    runs: &'a [f64],
}

impl<'a> Measured<'a> {
    /// `None` for a cell without a value (skipped, failed, empty).
    fn of(cell: &'a Cell, unit: &'a str) -> Option<Measured<'a>> {
        let (median, best) = cell.best(unit)?;
        let (runs, config, configs) = match cell {
            Cell::Runs(runs) => (runs.clone(), None, Vec::new()),
            Cell::Configs(list) => {
                let best = best.or_else(|| list.first().map(|(n, _)| *n));
                let runs = list
                    .iter()
                    .find(|(n, _)| Some(*n) == best)
                    .map_or_else(Vec::new, |(_, r)| r.clone());
                let configs = list
                    .iter()
                    .filter(|(_, r)| !r.is_empty())
                    .map(|(n, r)| ConfigRecord {
                        config: n,
                        median: median_of(r),
                        runs: r,
                    })
                    .collect();
                (runs, best, configs)
            }
            _ => return None,
        };
        Some(Measured {
            median,
            unit,
            runs,
            config,
            configs,
            hung: median.is_infinite(),
        })
    }
}

fn median_of(runs: &[f64]) -> f64 {
    median(&mut runs.to_vec())
}

/// One line of the JSON output.
#[derive(Serialize)]
struct Record<'a> {
    scenario: &'a str,
    variant: &'a str,
    #[serde(rename = "impl")]
    imp: &'a str,
    #[serde(flatten)]
    measured: Measured<'a>,
}

/// One line of the JSON output for a sweep.
#[derive(Serialize)]
struct SweepRecord<'a> {
    sweep: &'a str,
    param: &'a str,
    value: &'a str,
    #[serde(rename = "impl")]
    imp: &'a str,
    #[serde(flatten)]
    measured: Measured<'a>,
}

/// Writes one JSON object per line for every measured cell of a sweep:
/// `{"sweep", "param", "value", "impl", "median", "unit", "runs"}` (and
/// `config`, `configs`: see [`Measured`]).
pub fn write_sweep_json(out: &mut impl Write, param: &str, rows: &[Row]) -> io::Result<()> {
    for row in rows {
        for (imp, cell) in &row.cells {
            if let Some(measured) = Measured::of(cell, row.unit) {
                let record = SweepRecord {
                    sweep: row.scenario,
                    param,
                    value: row.variant,
                    imp: imp.name(),
                    measured,
                };
                serde_json::to_writer(&mut *out, &record)?;
                writeln!(out)?;
            }
        }
    }
    Ok(())
}

/// Writes one JSON object per line for every measured cell (see
/// [`Measured`] for the fields beyond scenario, variant and impl).
pub fn write_json(out: &mut impl Write, rows: &[Row]) -> io::Result<()> {
    for row in rows {
        for (imp, cell) in &row.cells {
            if let Some(measured) = Measured::of(cell, row.unit) {
                let record = Record {
                    scenario: row.scenario,
                    variant: row.variant,
                    imp: imp.name(),
                    measured,
                };
                serde_json::to_writer(&mut *out, &record)?;
                writeln!(out)?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(variant: &'static str, cells: &[(Impl, Cell)]) -> Row {
        Row {
            scenario: "pipe_size",
            variant,
            unit: "GB_per_s",
            cells: cells.iter().cloned().collect(),
        }
    }

    #[test]
    fn sweep_json_lines_name_the_sweep_its_value_and_the_runs() {
        let rows = [row(
            "4096",
            &[
                (Impl::Multiproc, Cell::Runs(vec![3.0, 1.0, 2.0])),
                (Impl::Python, Cell::Skipped),
            ],
        )];
        let mut out = Vec::new();
        write_sweep_json(&mut out, "bytes", &rows).unwrap();
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 1, "a skipped cell writes nothing: {text}");
        let l = &lines[0];
        assert_eq!(l["sweep"], "pipe_size");
        assert_eq!(l["param"], "bytes");
        assert_eq!(l["value"], "4096");
        assert_eq!(l["impl"], "multiproc");
        assert_eq!(l["median"], 2.0);
        assert_eq!(l["unit"], "GB_per_s");
        assert_eq!(l["runs"], serde_json::json!([3.0, 1.0, 2.0]));
    }

    #[test]
    fn sweep_tables_show_sizes_small_rates_and_ratios() {
        let rows = [row(
            "8",
            &[
                (Impl::Multiproc, Cell::Runs(vec![0.004])),
                (Impl::Python, Cell::Runs(vec![0.002])),
            ],
        )];
        let mut out = Vec::new();
        write_sweep_table(&mut out, "Pipe", "bytes", &rows).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.contains("| 8 B | 0.00400 GB/s | 0.00200 GB/s | python: 2.00× faster |"),
            "{text}"
        );
        assert_eq!(display_value("bytes", "16777216"), "16 MiB");
        assert_eq!(display_value("bytes", "32768"), "32 KiB");
        assert_eq!(display_value("start method", "fork"), "fork");
    }

    #[test]
    fn a_hung_peer_reads_hung_in_every_table_and_in_the_json() {
        let rows = [Row {
            scenario: "pool_worker_killed",
            variant: "forkserver",
            unit: "ms",
            cells: [
                (Impl::Multiproc, Cell::Runs(vec![2.0])),
                (
                    Impl::Python,
                    python_best(vec![f64::INFINITY], vec![f64::INFINITY]),
                ),
                (
                    Impl::Pebble,
                    Cell::Configs(vec![("pebble", vec![40.0, f64::INFINITY, 30.0])]),
                ),
            ]
            .into_iter()
            .collect(),
        }];
        let mut out = Vec::new();
        write_table(&mut out, &rows).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.contains("| 2.00 ms | hung | 40.0 ms | python: peer hung, pebble: 20.0× faster |"),
            "{text}"
        );
        let mut out = Vec::new();
        write_headline(&mut out, &rows).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.contains("| pool_worker_killed | 2.00 ms | pebble: 40.0 ms | **20.0× faster** |"),
            "a hung peer is never the best one: {text}"
        );
        let mut out = Vec::new();
        write_json(&mut out, &rows).unwrap();
        let text = String::from_utf8(out).unwrap();
        let python: serde_json::Value = serde_json::from_str(text.lines().nth(1).unwrap()).unwrap();
        assert_eq!(python["hung"], true, "{text}");
        assert!(python["median"].is_null(), "{text}");
        let pebble: serde_json::Value = serde_json::from_str(text.lines().nth(2).unwrap()).unwrap();
        assert!(pebble.get("hung").is_none(), "{text}");
    }

    #[test]
    fn ratios_read_one_way_whatever_the_unit() {
        // A time: smaller is better.
        assert_eq!(verdict("us_per_task", 0.5, 20.0), "40.0× faster");
        assert_eq!(verdict("us", 30.0, 10.0), "3.00× slower");
        // A rate: larger is better; the words do not flip.
        assert_eq!(verdict("msgs_per_s", 13.5e6, 0.2e6), "67.5× faster");
        assert_eq!(verdict("GB_per_s", 4.0, 12.0), "3.00× slower");
        // Memory.
        assert_eq!(verdict("MiB", 2.0, 13.0), "6.50× smaller");
        assert_eq!(verdict("MiB", 4.0, 0.5), "8.00× larger");
        assert_eq!(verdict("ms", 1.0, 1.0), "1.00× faster");
        // A peer that hung (an infinite value) is named, not divided by.
        assert_eq!(verdict("ms", 3.0, f64::INFINITY), "peer hung");
        assert_eq!(verdict("ms", f64::INFINITY, 3.0), "multiproc hung");
        // So is one of 0.
        assert_eq!(verdict("us_per_task", 0.3, 0.0), "slower (peer 0)");
        assert_eq!(verdict("us_per_task", 0.0, 0.3), "faster (multiproc 0)");
    }

    fn python_best(fork: Vec<f64>, forkserver: Vec<f64>) -> Cell {
        Cell::Configs(vec![
            ("multiprocessing/fork", fork),
            ("multiprocessing/forkserver", forkserver),
        ])
    }

    #[test]
    fn a_peer_of_several_configurations_shows_its_best_and_the_json_keeps_all() {
        let cell = python_best(vec![80.0, 70.0, 90.0], vec![900.0, 800.0, 1000.0]);
        assert_eq!(
            cell.best("us_per_task"),
            Some((80.0, Some("multiprocessing/fork")))
        );
        // For a rate the largest wins.
        assert_eq!(
            cell.best("msgs_per_s"),
            Some((900.0, Some("multiprocessing/forkserver")))
        );
        // A configuration without runs (--quick runs the first only) is
        // not a candidate.
        let quick = python_best(vec![], vec![5.0]);
        assert_eq!(quick.value("us"), Some(5.0));

        let rows = [Row {
            scenario: "pool_map_chunk1",
            variant: "forkserver",
            unit: "us_per_task",
            cells: [
                (Impl::Multiproc, Cell::Runs(vec![0.3])),
                (Impl::Python, cell),
            ]
            .into_iter()
            .collect(),
        }];
        let mut out = Vec::new();
        write_table(&mut out, &rows).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.contains("| 0.300 µs/task | 80.0 µs/task (fork) | python: 267× faster |"),
            "{text}"
        );
        let mut out = Vec::new();
        write_json(&mut out, &rows).unwrap();
        let text = String::from_utf8(out).unwrap();
        let python: serde_json::Value = serde_json::from_str(text.lines().nth(1).unwrap()).unwrap();
        assert_eq!(python["impl"], "python");
        assert_eq!(python["median"], 80.0);
        assert_eq!(python["config"], "multiprocessing/fork");
        assert_eq!(python["runs"], serde_json::json!([80.0, 70.0, 90.0]));
        assert_eq!(python["configs"][1]["config"], "multiprocessing/forkserver");
        assert_eq!(python["configs"][1]["median"], 900.0);
        let multiproc: serde_json::Value =
            serde_json::from_str(text.lines().next().unwrap()).unwrap();
        assert!(multiproc.get("configs").is_none(), "{text}");
    }

    #[test]
    fn the_headline_takes_each_side_at_its_best_and_leaves_bounds_out() {
        let start = |variant, m: f64, py: f64| Row {
            scenario: "pool_start",
            variant,
            unit: "ms",
            cells: [
                (Impl::Multiproc, Cell::Runs(vec![m])),
                (Impl::Python, Cell::Runs(vec![py])),
                (Impl::Mpire, Cell::Configs(vec![("mpire", vec![py * 2.0])])),
            ]
            .into_iter()
            .collect(),
        };
        let rows = [
            start("fork", 0.5, 4.0),
            start("spawn", 1.3, 40.0),
            start("forkserver", 0.6, 14.0),
            Row {
                scenario: "pool_map_chunk1",
                variant: "forkserver",
                unit: "us_per_task",
                cells: [
                    (Impl::Multiproc, Cell::Runs(vec![0.3])),
                    (Impl::Python, python_best(vec![10.0], vec![20.0])),
                    (Impl::Loky, Cell::Skipped),
                    (Impl::Rayon, Cell::Runs(vec![0.02])),
                ]
                .into_iter()
                .collect(),
            },
            Row {
                scenario: "queue_small",
                variant: "fork",
                unit: "msgs_per_s",
                cells: [
                    (Impl::Multiproc, Cell::Runs(vec![4e6])),
                    (Impl::Python, Cell::Runs(vec![2e5])),
                ]
                .into_iter()
                .collect(),
            },
        ];
        let mut out = Vec::new();
        write_headline(&mut out, &rows).unwrap();
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 5, "one line per scenario: {text}");
        assert_eq!(
            lines[2],
            "| pool_start | 0.500 ms (fork) | python (fork): 4.00 ms | **8.00× faster** |"
        );
        assert_eq!(
            lines[3],
            "| pool_map_chunk1 | 0.300 µs/task | python (fork): 10.0 µs/task | **33.3× faster** |",
            "rayon is a bound, not a peer"
        );
        assert_eq!(
            lines[4],
            "| queue_small | 4.00 M msg/s | python: 200000 msg/s | **20.0× faster** |"
        );
    }
}
