//! Benchmarks for multiproc, side by side with Python's `multiprocessing`,
//! its add-ons, Dask distributed and RQ (the cluster scenarios),
//! `procspawn` and the OS limit (small C programs).
//!
//! ```text
//! multiproc-bench [--quick] [--runs N] [--json FILE] [--chart FILE] [NAME...]
//! ```
//!
//! Each scenario variant is run `N` times (default 5; `--quick`: once, with
//! small iteration counts) for every implementation that has it,
//! alternating implementations between runs; the table shows the medians.
//! Then each sweep (one parameter over several values) is run the same way
//! and printed as its own table; the numeric ones are drawn in a PNG chart.
//! Progress and errors go to stderr, the table to stdout. The exit code is 1
//! if any run failed (a missing `python3` or `cc` only skips that peer).
//!
//! This process starts no threads of its own: the fork start method is
//! refused in a multi-threaded process.

mod chart;
mod external;
mod report;
mod scenarios;

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use external::{External, ExternalError};
use report::{Cell, Row};
use scenarios::{Entry, Impl, Runner, SCENARIOS, SWEEPS, Scenario, Sweep};

const USAGE: &str =
    "usage: multiproc-bench [--quick] [--runs N] [--json FILE] [--chart FILE] [NAME...]

  --quick        each scenario once with small sizes (a smoke test)
  --runs N       runs per scenario variant (default 5, --quick 1)
  --json FILE    also write one JSON object per measured cell to FILE
  --chart FILE   where the PNG chart of the sweeps goes (default: next to
                 the JSON file, else target/multiproc-bench/sweeps.png)
  NAME           run only these scenarios and sweeps (default: all)";

/// The scenarios of the chart's first panel: every peer on the pool's
/// per-task cost (one unit, µs per task).
const PEERS_PANEL: &[&str] = &[
    "pool_map_chunk1",
    "pool_map_auto",
    "pool_apply_async",
    "pool_imap_unordered",
];

/// The command line.
#[derive(Debug, Default)]
struct Options {
    quick: bool,
    runs: Option<usize>,
    json: Option<String>,
    chart: Option<String>,
    scenarios: Vec<&'static Scenario>,
    sweeps: Vec<&'static Sweep>,
}

fn parse_args(args: impl Iterator<Item = String>) -> Result<Options, String> {
    let mut opts = Options::default();
    let mut args = args.peekable();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--quick" => opts.quick = true,
            "--runs" => {
                let n = args.next().ok_or("--runs needs a number")?;
                match n.parse() {
                    Ok(n) if n > 0 => opts.runs = Some(n),
                    _ => return Err(format!("--runs: {n:?} is not a positive number")),
                }
            }
            "--json" => opts.json = Some(args.next().ok_or("--json needs a file name")?),
            "--chart" => opts.chart = Some(args.next().ok_or("--chart needs a file name")?),
            "-h" | "--help" => return Err(String::new()),
            name if name.starts_with('-') => return Err(format!("unknown option {name}")),
            name => {
                if let Some(sweep) = scenarios::find_sweep(name) {
                    if !opts.sweeps.iter().any(|s| s.scenario.name == name) {
                        opts.sweeps.push(sweep);
                    }
                    continue;
                }
                let scenario = scenarios::find(name).ok_or_else(|| {
                    let known: Vec<_> = SCENARIOS
                        .iter()
                        .chain(SWEEPS.iter().map(|s| &s.scenario))
                        .map(|s| s.name)
                        .collect();
                    format!("unknown scenario {name:?}; known: {}", known.join(", "))
                })?;
                if !opts.scenarios.iter().any(|s| s.name == scenario.name) {
                    opts.scenarios.push(scenario);
                }
            }
        }
    }
    if opts.scenarios.is_empty() && opts.sweeps.is_empty() {
        opts.scenarios = SCENARIOS.iter().collect();
        opts.sweeps = SWEEPS.iter().collect();
    }
    Ok(opts)
}

fn main() -> ExitCode {
    // Both return only in this process; in their own children they take over.
    multiproc::init();
    procspawn::init();
    let args: Vec<String> = std::env::args().collect();
    let fresh = scenarios::FRESH_COPY
        .iter()
        .find(|(arg, _)| args.get(1).map(String::as_str) == Some(*arg));
    if let Some((_, run)) = fresh {
        return match run(&args[2..]) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        };
    }

    let opts = match parse_args(std::env::args().skip(1)) {
        Ok(opts) => opts,
        Err(msg) => {
            if !msg.is_empty() {
                eprintln!("error: {msg}");
            }
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    match bench(&opts) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Runs the chosen scenarios and prints the results; `Ok(false)` if a run
/// failed.
fn bench(opts: &Options) -> io::Result<bool> {
    let json = match &opts.json {
        Some(path) => {
            Some(File::create(path).map_err(|e| io::Error::new(e.kind(), format!("{path}: {e}")))?)
        }
        None => None,
    };
    let runs = opts.runs.unwrap_or(if opts.quick { 1 } else { 5 });
    let mut external = External::new(opts.quick);
    let mut rows = Vec::new();
    let mut notes = Vec::new();
    let mut ok = true;

    for scenario in &opts.scenarios {
        if let Some(feature) = scenario.pending {
            notes.push(format!(
                "{}: skipped: {feature} has not landed in multiproc yet",
                scenario.name
            ));
            continue;
        }
        for &variant in scenario.variants {
            let row = bench_variant(
                scenario,
                variant,
                runs,
                opts.quick,
                &mut external,
                &mut notes,
            );
            ok &= !row.cells.values().any(|c| matches!(c, Cell::Failed));
            rows.push(row);
        }
    }
    for (name, note) in scenarios::NOTES {
        if opts.scenarios.iter().any(|s| s.name == *name) {
            notes.push(format!("{name}: {note}"));
        }
    }
    let mut sweeps = Vec::new();
    for sweep in &opts.sweeps {
        let mut sweep_rows = Vec::new();
        for &value in sweep.values(opts.quick) {
            let row = bench_variant(
                &sweep.scenario,
                value,
                runs,
                opts.quick,
                &mut external,
                &mut notes,
            );
            ok &= !row.cells.values().any(|c| matches!(c, Cell::Failed));
            sweep_rows.push(row);
        }
        sweeps.push((*sweep, sweep_rows));
    }
    drop(external);

    let mut stdout = io::stdout().lock();
    writeln!(stdout)?;
    writeln!(stdout, "{}", machine_line(runs))?;
    writeln!(stdout)?;
    if rows.is_empty() && sweeps.is_empty() {
        writeln!(stdout, "(nothing measured)")?;
    } else if !rows.is_empty() {
        writeln!(stdout, "### Headline: multiproc and the best peer")?;
        writeln!(stdout)?;
        report::write_headline(&mut stdout, &rows)?;
        writeln!(stdout)?;
        writeln!(stdout, "### Every scenario")?;
        writeln!(stdout)?;
        report::write_table(&mut stdout, &rows)?;
    }
    for (sweep, sweep_rows) in &sweeps {
        writeln!(stdout)?;
        report::write_sweep_table(&mut stdout, sweep.title, sweep.param, sweep_rows)?;
    }
    // The pool scenarios with every peer, then the sweeps.
    let pool_rows: Vec<Row> = rows
        .iter()
        .filter(|r| PEERS_PANEL.contains(&r.scenario))
        .cloned()
        .collect();
    let mut panels: Vec<chart::Panel<'_>> = Vec::new();
    if pool_rows.len() > 1 {
        panels.push(chart::Panel {
            title: "Pool per-task cost by peer (lower is better; Python at its best start method)",
            param: "scenario",
            unit: report::display_unit("us_per_task"),
            rows: &pool_rows,
            categorical: true,
        });
    }
    panels.extend(
        sweeps
            .iter()
            .filter(|(sweep, _)| sweep.chart)
            .map(|(sweep, rows)| chart::Panel {
                title: sweep.title,
                param: sweep.param,
                unit: report::display_unit(sweep.scenario.unit),
                rows,
                categorical: false,
            }),
    );
    if !panels.is_empty() {
        let path = chart_path(opts);
        match chart::draw(&path, &panels) {
            Ok(()) => notes.push(format!("chart (peers and sweeps): {}", path.display())),
            Err(e) => notes.push(format!("chart skipped: {e}")),
        }
    }
    if !notes.is_empty() {
        writeln!(stdout)?;
        for note in &notes {
            writeln!(stdout, "{note}")?;
        }
    }
    if let Some(file) = json {
        let mut file = BufWriter::new(file);
        report::write_json(&mut file, &rows)?;
        for (sweep, sweep_rows) in &sweeps {
            report::write_sweep_json(&mut file, sweep.param, sweep_rows)?;
        }
        file.flush()?;
    }
    Ok(ok)
}

/// When and where the figures were taken: the date (UTC), the command
/// line, `nproc`, the CPU model from `/proc/cpuinfo`, the runs per cell.
fn machine_line(runs: usize) -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (y, m, d) = civil_from_days((secs / 86_400) as i64);
    let (hh, mm) = (secs % 86_400 / 3600, secs % 3600 / 60);
    let nproc = std::thread::available_parallelism().map_or(0, |n| n.get());
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|v| v.trim_start_matches([' ', '\t', ':']).to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let args: Vec<String> = std::env::args().skip(1).collect();
    format!(
        "{y:04}-{m:02}-{d:02} {hh:02}:{mm:02} UTC; `multiproc-bench {}`; nproc {nproc}, {cpu}; median of {runs} run(s) per cell",
        args.join(" ")
    )
}

/// The date of a day counted from 1970-01-01 (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// `--chart FILE`; else the JSON file's name with `.png`; else
/// `target/multiproc-bench/sweeps.png` in the workspace.
fn chart_path(opts: &Options) -> PathBuf {
    if let Some(path) = &opts.chart {
        return PathBuf::from(path);
    }
    if let Some(json) = &opts.json {
        return PathBuf::from(json).with_extension("png");
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/multiproc-bench/sweeps.png")
}

/// Notes that `name` was skipped because of `why`, once: peers skipped
/// for the same reason share one note (`mpire, loky: skipped: ...`).
fn skip_note(notes: &mut Vec<String>, name: &str, why: &str) {
    let tail = format!(": skipped: {why}");
    if let Some(note) = notes.iter_mut().find(|n| n.ends_with(&tail)) {
        let names = &note[..note.len() - tail.len()];
        if !names.split(", ").any(|n| n == name) {
            *note = format!("{names}, {name}{tail}");
        }
        return;
    }
    eprintln!("{name}{tail}");
    notes.push(format!("{name}{tail}"));
}

/// `runs` runs of every implementation of one scenario variant, rotating
/// the order of implementations from one run to the next.
fn bench_variant(
    scenario: &Scenario,
    variant: &'static str,
    runs: usize,
    quick: bool,
    external: &mut External,
    notes: &mut Vec<String>,
) -> Row {
    let entries: Vec<&Entry> = Impl::ALL
        .into_iter()
        .filter_map(|imp| scenario.entry(imp, variant))
        .collect();
    let mut cells: BTreeMap<Impl, Cell> = entries
        .iter()
        .map(|e| {
            let cell = match e.runner {
                Runner::PythonBest { configs, .. } => {
                    Cell::Configs(configs.iter().map(|&c| (c, Vec::new())).collect())
                }
                _ => Cell::Runs(Vec::new()),
            };
            (e.imp, cell)
        })
        .collect();
    let iters = (scenario.iters)(variant, quick);
    for run in 0..runs {
        let mut progress = Vec::new();
        let order: Vec<&Entry> = (0..entries.len())
            .map(|i| entries[(i + run) % entries.len()])
            .collect();
        let mut turns = if quick {
            all_at_once(&order, variant, iters, external)
        } else {
            Vec::new()
        };
        for (i, &entry) in order.iter().enumerate() {
            let name = entry.imp.name();
            let results = if quick {
                std::mem::take(&mut turns[i])
            } else {
                turn(entry, variant, iters, run, external)
            };
            for (config, result) in results {
                if !matches!(
                    cells.get(&entry.imp),
                    Some(Cell::Runs(_) | Cell::Configs(_))
                ) {
                    break; // skipped or failed earlier
                }
                let label = match config {
                    Some(c) if c != name => format!("{name} {c}"),
                    _ => name.to_string(),
                };
                match result {
                    Ok(value) => {
                        match (cells.get_mut(&entry.imp), config) {
                            (Some(Cell::Runs(values)), None) => values.push(value),
                            (Some(Cell::Configs(list)), Some(config)) => {
                                if let Some((_, values)) =
                                    list.iter_mut().find(|(c, _)| *c == config)
                                {
                                    values.push(value);
                                }
                            }
                            _ => {}
                        }
                        progress.push(format!("{label} {value:.1}"));
                    }
                    Err(ExternalError::Missing(why)) => {
                        skip_note(notes, name, &why);
                        cells.insert(entry.imp, Cell::Skipped);
                    }
                    Err(ExternalError::Failed(why)) => {
                        eprintln!("error: {} {variant} {label}: {why}", scenario.name);
                        cells.insert(entry.imp, Cell::Failed);
                    }
                }
            }
        }
        // One write: stderr is unbuffered.
        let line = format!(
            "{} {variant} run {}/{runs} ({iters} iterations, {}): {}\n",
            scenario.name,
            run + 1,
            scenario.unit,
            progress.join(", ")
        );
        eprint!("{line}");
    }
    Row {
        scenario: scenario.name,
        variant,
        unit: scenario.unit,
        cells,
    }
}

/// What one implementation's turn in a run gives: a value (or why none)
/// per configuration it ran.
type Turn = Vec<(Option<&'static str>, Result<f64, ExternalError>)>;

/// `entry`'s turn in run `run`, alone on the machine: a peer measured in
/// several configurations runs each of them, rotated so that none always
/// goes first, until one fails.
fn turn(
    entry: &Entry,
    variant: &'static str,
    iters: usize,
    run: usize,
    external: &mut External,
) -> Turn {
    match entry.runner {
        Runner::Native(f) => vec![(None, f(variant, iters).map_err(ExternalError::Failed))],
        Runner::MaySkip(f) => vec![(None, f(variant, iters))],
        Runner::Python(script) => vec![(
            None,
            external
                .start_python(script, variant, iters)
                .and_then(external::Started::wait),
        )],
        Runner::C(source) => vec![(
            None,
            external
                .start_c(source, variant, iters)
                .and_then(external::Started::wait),
        )],
        Runner::PythonBest {
            script,
            configs,
            module,
        } => {
            let mut results = Vec::new();
            for j in 0..configs.len() {
                let config = configs[(j + run) % configs.len()];
                let result = external
                    .start_python_config(script, variant, iters, config, module)
                    .and_then(external::Started::wait);
                let stop = result.is_err();
                results.push((Some(config), result));
                if stop {
                    break;
                }
            }
            results
        }
    }
}

/// Every entry's turn of a `--quick` run (a smoke test, which times
/// nothing), at once: the external peers (the first configuration of each)
/// all start, the native ones run while they do, then each peer is waited
/// for. Processes only, no thread: the fork start method stays usable in
/// this process.
fn all_at_once(
    order: &[&Entry],
    variant: &'static str,
    iters: usize,
    external: &mut External,
) -> Vec<Turn> {
    let started: Vec<_> = order
        .iter()
        .map(|entry| match entry.runner {
            Runner::Native(_) | Runner::MaySkip(_) => None,
            Runner::Python(script) => Some((None, external.start_python(script, variant, iters))),
            Runner::C(source) => Some((None, external.start_c(source, variant, iters))),
            Runner::PythonBest {
                script,
                configs,
                module,
            } => Some((
                Some(configs[0]),
                external.start_python_config(script, variant, iters, configs[0], module),
            )),
        })
        .collect();
    let mut turns: Vec<Turn> = order
        .iter()
        .map(|entry| match entry.runner {
            Runner::Native(f) => vec![(None, f(variant, iters).map_err(ExternalError::Failed))],
            Runner::MaySkip(f) => vec![(None, f(variant, iters))],
            _ => Vec::new(),
        })
        .collect();
    for (turn, started) in turns.iter_mut().zip(started) {
        if let Some((config, result)) = started {
            turn.push((config, result.and_then(external::Started::wait)));
        }
    }
    turns
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Result<Options, String> {
        parse_args(list.iter().map(|s| s.to_string()))
    }

    #[test]
    fn names_choose_scenarios_and_sweeps_and_nothing_means_all() {
        let all = args(&[]).unwrap();
        assert_eq!(all.scenarios.len(), SCENARIOS.len());
        assert_eq!(all.sweeps.len(), SWEEPS.len());

        let some = args(&["pipe_small", "pipe_size", "--chart", "x.png", "pipe_small"]).unwrap();
        let names: Vec<_> = some.scenarios.iter().map(|s| s.name).collect();
        assert_eq!(names, ["pipe_small"]);
        assert_eq!(some.sweeps.len(), 1);
        assert_eq!(some.sweeps[0].scenario.name, "pipe_size");
        assert_eq!(some.chart.as_deref(), Some("x.png"));

        let err = args(&["no_such"]).unwrap_err();
        assert!(
            err.contains("idle_rss"),
            "the error lists sweeps too: {err}"
        );
        assert!(args(&["--chart"]).is_err());
    }

    #[test]
    fn dates_are_civil() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(civil_from_days(20_415), (2025, 11, 23));
    }

    #[test]
    fn the_chart_goes_where_asked_else_next_to_the_json() {
        let opts = args(&["--json", "out/r.jsonl"]).unwrap();
        assert_eq!(chart_path(&opts), PathBuf::from("out/r.png"));
        let opts = args(&["--json", "r.jsonl", "--chart", "c.png"]).unwrap();
        assert_eq!(chart_path(&opts), PathBuf::from("c.png"));
    }

    #[test]
    fn every_sweep_value_under_quick_is_one_of_its_values() {
        for sweep in SWEEPS {
            for v in sweep.quick {
                assert!(
                    sweep.scenario.variants.contains(v),
                    "{}: {v}",
                    sweep.scenario.name
                );
            }
            assert!(
                scenarios::find(sweep.scenario.name).is_none(),
                "names are distinct"
            );
        }
    }

    #[test]
    fn peers_skipped_for_one_reason_share_one_note() {
        let mut notes = vec!["chart: x".to_string()];
        skip_note(&mut notes, "mpire", "no venv");
        skip_note(&mut notes, "loky", "no venv");
        skip_note(&mut notes, "mpire", "no venv");
        skip_note(&mut notes, "python", "python3 not found");
        assert_eq!(
            notes,
            [
                "chart: x",
                "mpire, loky: skipped: no venv",
                "python: skipped: python3 not found"
            ]
        );
    }
}
