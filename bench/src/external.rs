//! The peers that live outside this binary: Python scripts in
//! `bench/python` and C programs in `bench/c`.
//!
//! Both follow one convention: the program is run with two arguments,
//! `VARIANT ITERS`, does `ITERS` iterations of the scenario's operation and
//! prints a single number on stdout, the run's value in the scenario's unit.
//! Anything on stderr is shown only if the program fails.
//!
//! C programs are compiled on first use with the machine's `cc` into a
//! temporary directory that is removed when [`External`] is dropped.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Longest a single run of an external program may take.
const RUN_TIMEOUT: Duration = Duration::from_secs(300);

/// Why an external run produced no value.
#[derive(Clone, Debug)]
pub enum ExternalError {
    /// The tool (`python3`, `cc`) is not installed: the peer is skipped.
    Missing(String),
    /// It is there but the run failed.
    Failed(String),
}

/// Finds the tools, builds the C programs and runs the external peers.
#[derive(Debug)]
pub struct External {
    manifest_dir: PathBuf,
    build_dir: PathBuf,
    python: Option<Result<(), String>>,
    cc: Option<Result<(), String>>,
    built: HashMap<&'static str, Result<PathBuf, String>>,
}

impl External {
    /// Nothing is probed or built until first needed.
    pub fn new() -> External {
        External {
            manifest_dir: PathBuf::from(env!("CARGO_MANIFEST_DIR")),
            build_dir: std::env::temp_dir().join(format!("multiproc-bench-{}", std::process::id())),
            python: None,
            cc: None,
            built: HashMap::new(),
        }
    }

    /// Runs `bench/python/SCRIPT VARIANT ITERS` with `python3`.
    pub fn run_python(
        &mut self,
        script: &str,
        variant: &str,
        iters: usize,
    ) -> Result<f64, ExternalError> {
        let python = self
            .python
            .get_or_insert_with(|| probe("python3", &["-c", "import multiprocessing"]));
        python.clone().map_err(ExternalError::Missing)?;
        let mut cmd = Command::new("python3");
        cmd.arg(self.manifest_dir.join("python").join(script));
        run(cmd, variant, iters).map_err(ExternalError::Failed)
    }

    /// Builds `bench/c/SOURCE` (once) and runs it with `VARIANT ITERS`.
    pub fn run_c(
        &mut self,
        source: &'static str,
        variant: &str,
        iters: usize,
    ) -> Result<f64, ExternalError> {
        let cc = self.cc.get_or_insert_with(|| probe("cc", &["--version"]));
        cc.clone().map_err(ExternalError::Missing)?;
        let program = match self.built.get(source) {
            Some(built) => built.clone(),
            None => {
                let built = self.compile(source);
                self.built.insert(source, built.clone());
                built
            }
        }
        .map_err(ExternalError::Failed)?;
        run(Command::new(program), variant, iters).map_err(ExternalError::Failed)
    }

    /// `cc -O2 -Wall -o BUILD_DIR/STEM bench/c/SOURCE`.
    fn compile(&self, source: &str) -> Result<PathBuf, String> {
        std::fs::create_dir_all(&self.build_dir)
            .map_err(|e| format!("creating {}: {e}", self.build_dir.display()))?;
        let src = self.manifest_dir.join("c").join(source);
        let stem = Path::new(source).file_stem().unwrap_or_default();
        let out = self.build_dir.join(stem);
        let result = Command::new("cc")
            .args(["-O2", "-Wall", "-o"])
            .arg(&out)
            .arg(&src)
            .output()
            .map_err(|e| format!("running cc: {e}"))?;
        if !result.status.success() {
            return Err(format!(
                "cc {} failed: {}",
                src.display(),
                String::from_utf8_lossy(&result.stderr).trim()
            ));
        }
        Ok(out)
    }
}

impl Drop for External {
    fn drop(&mut self) {
        if self.build_dir.exists() {
            let _ = std::fs::remove_dir_all(&self.build_dir);
        }
    }
}

/// Is `tool` there and working? `Err` says why not.
fn probe(tool: &str, args: &[&str]) -> Result<(), String> {
    match Command::new(tool)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
    {
        Ok(status) if status.success() => Ok(()),
        Ok(status) => Err(format!("`{tool} {}` failed ({status})", args.join(" "))),
        Err(e) => Err(format!("{tool} not found ({e})")),
    }
}

/// Runs `cmd VARIANT ITERS` and parses its single number.
fn run(mut cmd: Command, variant: &str, iters: usize) -> Result<f64, String> {
    let what = format!("{cmd:?} {variant} {iters}");
    let child = cmd
        .arg(variant)
        .arg(iters.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("{what}: {e}"))?;
    let output = wait_with_timeout(child, RUN_TIMEOUT).map_err(|e| format!("{what}: {e}"))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        return Err(format!(
            "{what} failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        ));
    }
    stdout
        .trim()
        .parse()
        .map_err(|_| format!("{what} printed {stdout:?}, not a single number"))
}

/// Waits for `child`, killing it after `timeout`. Its output must fit in the
/// pipes (a single number does); no helper thread, so that the fork start
/// method keeps working in this process.
fn wait_with_timeout(mut child: Child, timeout: Duration) -> Result<std::process::Output, String> {
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(_)) => return child.wait_with_output().map_err(|e| e.to_string()),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(5)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("timed out after {timeout:?}"));
            }
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(e.to_string());
            }
        }
    }
}
