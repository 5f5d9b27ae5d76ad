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
    /// Not measured: the peer's tool is missing.
    Skipped,
    /// A run failed; the message was already printed.
    Failed,
}

impl Cell {
    /// The median of the runs, if there are any.
    pub fn median(&self) -> Option<f64> {
        match self {
            Cell::Runs(runs) if !runs.is_empty() => Some(median(&mut runs.clone())),
            _ => None,
        }
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
        "GB_per_s" => "GB/s",
        "MiB" => "MiB",
        other => other,
    }
}

/// About three significant digits.
fn number(v: f64) -> String {
    match v.abs() {
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

/// A row's cells under `impls`, then the ratio of each peer to multiproc.
fn cells(row: &Row, impls: &[Impl]) -> Vec<String> {
    let unit = display_unit(row.unit);
    let mut line = Vec::new();
    for imp in impls {
        line.push(match row.cells.get(imp) {
            None => String::new(),
            Some(Cell::Skipped) => "skipped".to_string(),
            Some(Cell::Failed) => "error".to_string(),
            Some(cell) => cell
                .median()
                .map_or_else(String::new, |m| format!("{} {unit}", number(m))),
        });
    }
    let base = row.cells.get(&Impl::Multiproc).and_then(Cell::median);
    let ratios: Vec<String> = row
        .cells
        .iter()
        .filter(|(imp, _)| **imp != Impl::Multiproc)
        .filter_map(|(imp, cell)| Some((imp, cell.median()? / base?)))
        .map(|(imp, ratio)| format!("{}/multiproc = {}×", imp.name(), number(ratio)))
        .collect();
    line.push(ratios.join(", "));
    line
}

/// Writes the Markdown table: one column per implementation that appears
/// in `rows`, then the ratio of each peer to multiproc.
pub fn write_table(out: &mut impl Write, rows: &[Row]) -> io::Result<()> {
    let impls = columns(rows);
    let mut header = vec!["scenario".to_string(), "variant".to_string()];
    header.extend(impls.iter().map(|imp| imp.name().to_string()));
    header.push("peer / multiproc".to_string());
    writeln!(out, "| {} |", header.join(" | "))?;
    writeln!(out, "|{}", "---|".repeat(header.len()))?;
    for row in rows {
        let mut line = vec![row.scenario.to_string(), row.variant.to_string()];
        line.extend(cells(row, &impls));
        writeln!(out, "| {} |", line.join(" | "))?;
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
    header.push("peer / multiproc".to_string());
    writeln!(out, "| {} |", header.join(" | "))?;
    writeln!(out, "|{}", "---|".repeat(header.len()))?;
    for row in rows {
        let mut line = vec![display_value(param, row.variant)];
        line.extend(cells(row, &impls));
        writeln!(out, "| {} |", line.join(" | "))?;
    }
    Ok(())
}

/// One line of the JSON output.
#[derive(Serialize)]
struct Record<'a> {
    scenario: &'a str,
    variant: &'a str,
    #[serde(rename = "impl")]
    imp: &'a str,
    median: f64,
    unit: &'a str,
    runs: &'a [f64],
}

/// One line of the JSON output for a sweep.
#[derive(Serialize)]
struct SweepRecord<'a> {
    sweep: &'a str,
    param: &'a str,
    value: &'a str,
    #[serde(rename = "impl")]
    imp: &'a str,
    median: f64,
    unit: &'a str,
    runs: &'a [f64],
}

/// Writes one JSON object per line for every measured cell of a sweep:
/// `{"sweep", "param", "value", "impl", "median", "unit", "runs"}`.
pub fn write_sweep_json(out: &mut impl Write, param: &str, rows: &[Row]) -> io::Result<()> {
    for row in rows {
        for (imp, cell) in &row.cells {
            if let (Cell::Runs(runs), Some(median)) = (cell, cell.median()) {
                let record = SweepRecord {
                    sweep: row.scenario,
                    param,
                    value: row.variant,
                    imp: imp.name(),
                    median,
                    unit: row.unit,
                    runs,
                };
                serde_json::to_writer(&mut *out, &record)?;
                writeln!(out)?;
            }
        }
    }
    Ok(())
}

/// Writes one JSON object per line for every measured cell.
pub fn write_json(out: &mut impl Write, rows: &[Row]) -> io::Result<()> {
    for row in rows {
        for (imp, cell) in &row.cells {
            if let (Cell::Runs(runs), Some(median)) = (cell, cell.median()) {
                let record = Record {
                    scenario: row.scenario,
                    variant: row.variant,
                    imp: imp.name(),
                    median,
                    unit: row.unit,
                    runs,
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
            text.contains("| 8 B | 0.00400 GB/s | 0.00200 GB/s | python/multiproc = 0.500× |"),
            "{text}"
        );
        assert_eq!(display_value("bytes", "16777216"), "16 MiB");
        assert_eq!(display_value("bytes", "32768"), "32 KiB");
        assert_eq!(display_value("start method", "fork"), "fork");
    }
}
