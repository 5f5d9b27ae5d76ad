//! Benchmarks for multiproc, side by side with Python's `multiprocessing`,
//! `procspawn` and the OS limit (small C programs).
//!
//! ```text
//! multiproc-bench [--quick] [--runs N] [--json FILE] [SCENARIO...]
//! ```
//!
//! Each scenario variant is run `N` times (default 5; `--quick`: once, with
//! small iteration counts) for every implementation that has it,
//! alternating implementations between runs; the table shows the medians.
//! Progress and errors go to stderr, the table to stdout. The exit code is 1
//! if any run failed (a missing `python3` or `cc` only skips that peer).
//!
//! This process starts no threads of its own: the fork start method is
//! refused in a multi-threaded process.

mod external;
mod report;
mod scenarios;

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::process::ExitCode;

use external::{External, ExternalError};
use report::{Cell, Row};
use scenarios::{Entry, Impl, Runner, SCENARIOS, Scenario};

const USAGE: &str = "usage: multiproc-bench [--quick] [--runs N] [--json FILE] [SCENARIO...]

  --quick       each scenario once with small sizes (a smoke test)
  --runs N      runs per scenario variant (default 5, --quick 1)
  --json FILE   also write one JSON object per measured cell to FILE
  SCENARIO      run only these (default: all)";

/// The command line.
#[derive(Debug, Default)]
struct Options {
    quick: bool,
    runs: Option<usize>,
    json: Option<String>,
    scenarios: Vec<&'static Scenario>,
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
            "-h" | "--help" => return Err(String::new()),
            name if name.starts_with('-') => return Err(format!("unknown option {name}")),
            name => {
                let scenario = scenarios::find(name).ok_or_else(|| {
                    let known: Vec<_> = SCENARIOS.iter().map(|s| s.name).collect();
                    format!("unknown scenario {name:?}; known: {}", known.join(", "))
                })?;
                if !opts.scenarios.iter().any(|s| s.name == scenario.name) {
                    opts.scenarios.push(scenario);
                }
            }
        }
    }
    if opts.scenarios.is_empty() {
        opts.scenarios = SCENARIOS.iter().collect();
    }
    Ok(opts)
}

fn main() -> ExitCode {
    // Both return only in this process; in their own children they take over.
    multiproc::init();
    procspawn::init();

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
    let mut external = External::new();
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
    drop(external);

    let mut stdout = io::stdout().lock();
    writeln!(stdout)?;
    if rows.is_empty() {
        writeln!(stdout, "(nothing measured)")?;
    } else {
        report::write_table(&mut stdout, &rows)?;
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
        file.flush()?;
    }
    Ok(ok)
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
        .map(|e| (e.imp, Cell::Runs(Vec::new())))
        .collect();
    let iters = (scenario.iters)(variant, quick);
    for run in 0..runs {
        let mut progress = Vec::new();
        for i in 0..entries.len() {
            let entry = entries[(i + run) % entries.len()];
            let Some(Cell::Runs(values)) = cells.get_mut(&entry.imp) else {
                continue; // skipped or failed earlier
            };
            let result = match entry.runner {
                Runner::Native(f) => f(variant, iters).map_err(ExternalError::Failed),
                Runner::Python(script) => external.run_python(script, variant, iters),
                Runner::C(source) => external.run_c(source, variant, iters),
            };
            let name = entry.imp.name();
            match result {
                Ok(value) => {
                    values.push(value);
                    progress.push(format!("{name} {value:.1}"));
                }
                Err(ExternalError::Missing(why)) => {
                    let note = format!("{name}: skipped: {why}");
                    if !notes.contains(&note) {
                        eprintln!("{note}");
                        notes.push(note);
                    }
                    cells.insert(entry.imp, Cell::Skipped);
                }
                Err(ExternalError::Failed(why)) => {
                    eprintln!("error: {} {variant} {name}: {why}", scenario.name);
                    cells.insert(entry.imp, Cell::Failed);
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
