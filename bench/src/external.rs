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
//!
//! The Python add-on peers (mpire, loky, pebble, joblib) run in a virtual
//! environment the harness makes under `target/` with `pip` on first use
//! and keeps: [`VENV`], pinned to [`REQUIREMENTS`]. Under `--quick` it is
//! never made (no network): an existing one is used, else those peers are
//! skipped with a note; so are they when `pip` fails.

use std::collections::HashMap;
use std::fs::File;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Longest a single run of an external program may take.
const RUN_TIMEOUT: Duration = Duration::from_secs(300);

/// Where the add-ons' virtual environment lives, from the workspace root.
pub const VENV: &str = "target/multiproc-bench/venv";

/// What is installed in it (pinned, so that figures compare over time).
/// A venv made for another list is made again.
pub const REQUIREMENTS: &[&str] = &[
    "mpire==2.10.2",
    "loky==3.7.0",
    "pebble==5.2.3",
    "joblib==1.6.0",
    "numpy==2.2.6",
    // The cluster scenarios' peers (`cluster_peers.py`).
    "dask[distributed]==2026.11.0",
    "distributed==2026.11.0",
    "rq==3.0.0",
];

/// Longest `pip install` may take.
const PIP_TIMEOUT: Duration = Duration::from_secs(300);

/// The environment variable that tells a peer after how many seconds a
/// pool that has not reported a fault counts as hung: the script then
/// prints `hung` (read as an infinite value, shown as `hung`) and exits.
pub const HANG_ENV: &str = "MULTIPROC_BENCH_HANG_AFTER";

/// Seconds before a peer counts as hung (`--quick`: fewer).
const HANG_AFTER: &str = "5";
const HANG_AFTER_QUICK: &str = "2";

/// Set (to `1`) for the peers under `--quick`: `peers.warm` then warms a
/// pool with 50 tasks instead of 1 000, which is most of a quick run's time
/// for the slower add-ons.
pub const QUICK_ENV: &str = "MULTIPROC_BENCH_QUICK";

/// Set to anything to never run `pip` (the add-ons are then skipped
/// unless the venv is already there).
pub const NO_PIP_ENV: &str = "MULTIPROC_BENCH_NO_PIP";

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
    quick: bool,
    python: Option<Result<(), String>>,
    venv: Option<Result<PathBuf, String>>,
    modules: HashMap<&'static str, Result<(), String>>,
    cc: Option<Result<(), String>>,
    built: HashMap<&'static str, Result<PathBuf, String>>,
}

impl External {
    /// Nothing is probed, built or installed until first needed; `quick`
    /// never installs.
    pub fn new(quick: bool) -> External {
        External {
            manifest_dir: PathBuf::from(env!("CARGO_MANIFEST_DIR")),
            build_dir: std::env::temp_dir().join(format!("multiproc-bench-{}", std::process::id())),
            quick,
            python: None,
            venv: None,
            modules: HashMap::new(),
            cc: None,
            built: HashMap::new(),
        }
    }

    /// Starts `bench/python/SCRIPT VARIANT ITERS` with `python3`.
    pub fn start_python(
        &mut self,
        script: &str,
        variant: &str,
        iters: usize,
    ) -> Result<Started, ExternalError> {
        let python = self
            .python
            .get_or_insert_with(|| probe("python3", &["-c", "import multiprocessing"]));
        python.clone().map_err(ExternalError::Missing)?;
        let mut cmd = Command::new("python3");
        cmd.arg(self.manifest_dir.join("python").join(script));
        cmd.env(HANG_ENV, self.hang_after());
        if self.quick {
            cmd.env(QUICK_ENV, "1");
        }
        start(cmd, &[variant, &iters.to_string()]).map_err(ExternalError::Failed)
    }

    /// Starts `bench/python/SCRIPT VARIANT ITERS CONFIG`: with `python3` if
    /// `module` is `None`, else with the venv's Python once `module`
    /// imports there (else the peer is skipped).
    pub fn start_python_config(
        &mut self,
        script: &str,
        variant: &str,
        iters: usize,
        config: &str,
        module: Option<&'static str>,
    ) -> Result<Started, ExternalError> {
        let python = self
            .python
            .get_or_insert_with(|| probe("python3", &["-c", "import multiprocessing"]));
        python.clone().map_err(ExternalError::Missing)?;
        let interpreter = match module {
            None => PathBuf::from("python3"),
            Some(module) => self.addon(module).map_err(ExternalError::Missing)?,
        };
        let mut cmd = Command::new(interpreter);
        cmd.arg(self.manifest_dir.join("python").join(script));
        cmd.env(HANG_ENV, self.hang_after());
        if self.quick {
            cmd.env(QUICK_ENV, "1");
        }
        start(cmd, &[variant, &iters.to_string(), config]).map_err(ExternalError::Failed)
    }

    /// The value of [`HANG_ENV`] for the peers.
    fn hang_after(&self) -> &'static str {
        if self.quick {
            HANG_AFTER_QUICK
        } else {
            HANG_AFTER
        }
    }

    /// The venv's Python, once `module` imports in it.
    fn addon(&mut self, module: &'static str) -> Result<PathBuf, String> {
        let quick = self.quick;
        let root = self.manifest_dir.join("..");
        let venv = self
            .venv
            .get_or_insert_with(|| venv(&root.join(VENV), quick))
            .clone()?;
        let python = venv.join("bin/python");
        self.modules
            .entry(module)
            .or_insert_with(|| {
                let py = python.to_string_lossy();
                probe(&py, &["-c", &format!("import {module}")])
                    .map_err(|e| format!("{module} does not import in {VENV}: {e}"))
            })
            .clone()?;
        Ok(python)
    }

    /// Builds `bench/c/SOURCE` (once) and starts it with `VARIANT ITERS`.
    pub fn start_c(
        &mut self,
        source: &'static str,
        variant: &str,
        iters: usize,
    ) -> Result<Started, ExternalError> {
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
        start(Command::new(program), &[variant, &iters.to_string()]).map_err(ExternalError::Failed)
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

/// The add-ons' venv at `dir`, made with `python3 -m venv` and `pip
/// install` of [`REQUIREMENTS`] unless it is there for them already (a
/// file in it lists what was installed); never made if `quick` or if
/// [`NO_PIP_ENV`] is set. `Err` says why the add-ons are skipped.
fn venv(dir: &Path, quick: bool) -> Result<PathBuf, String> {
    let stamp = dir.join("multiproc-bench-requirements.txt");
    let wanted = REQUIREMENTS.join("\n") + "\n";
    if dir.join("bin/python").exists()
        && std::fs::read_to_string(&stamp).ok() == Some(wanted.clone())
    {
        return Ok(dir.to_path_buf());
    }
    if quick {
        return Err(format!(
            "no virtual environment with the add-ons at {VENV}, and --quick installs nothing (no network): \
             a run without --quick makes it with pip"
        ));
    }
    if std::env::var_os(NO_PIP_ENV).is_some() {
        return Err(format!(
            "no virtual environment with the add-ons at {VENV}, and {NO_PIP_ENV} forbids pip"
        ));
    }
    eprintln!(
        "installing the Python add-on peers into {VENV} with pip: {}",
        REQUIREMENTS.join(" ")
    );
    let _ = std::fs::remove_file(&stamp);
    let log_path = dir.with_extension("pip.log");
    if let Some(parent) = dir.parent() {
        std::fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
    }
    let log = File::create(&log_path).map_err(|e| format!("{}: {e}", log_path.display()))?;
    let step = |cmd: &mut Command, what: &str| -> Result<(), String> {
        let out = log.try_clone().map_err(|e| e.to_string())?;
        let err = log.try_clone().map_err(|e| e.to_string())?;
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(|e| format!("{what}: {e}"))?;
        let output = wait_with_timeout(child, PIP_TIMEOUT).map_err(|e| format!("{what}: {e}"))?;
        if output.status.success() {
            Ok(())
        } else {
            Err(format!(
                "{what} failed ({}; no network?), see {}",
                output.status,
                log_path.display()
            ))
        }
    };
    if !dir.join("bin/python").exists() {
        step(
            Command::new("python3").args(["-m", "venv"]).arg(dir),
            "python3 -m venv",
        )?;
    }
    step(
        Command::new(dir.join("bin/python"))
            .args([
                "-m",
                "pip",
                "install",
                "--disable-pip-version-check",
                "--no-input",
                "--timeout",
                "20",
                "--retries",
                "1",
            ])
            .args(REQUIREMENTS),
        "pip install",
    )?;
    std::fs::write(&stamp, wanted).map_err(|e| format!("{}: {e}", stamp.display()))?;
    Ok(dir.to_path_buf())
}

/// An external peer's run, started: [`Started::wait`] gives its value.
/// Several can run at once (`--quick` does), each in its own process
/// group.
#[derive(Debug)]
pub struct Started {
    child: Child,
    what: String,
}

/// Starts `cmd ARGS...` in a process group of its own.
pub(crate) fn start(mut cmd: Command, args: &[&str]) -> Result<Started, String> {
    let what = format!("{cmd:?} {}", args.join(" "));
    let child = cmd
        .args(args)
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("{what}: {e}"))?;
    Ok(Started { child, what })
}

impl Started {
    /// Waits for the run and parses its single number (`hung`, printed by
    /// a peer whose pool never reported a fault, is read as infinity;
    /// `skipped: WHY`, printed by a peer that cannot run here, for
    /// instance without redis-server, skips it with a note).
    /// Whatever the program leaves in its group (a hung pool's workers) is
    /// killed when it exits.
    pub fn wait(self) -> Result<f64, ExternalError> {
        let Started { child, what } = self;
        let output = wait_with_timeout(child, RUN_TIMEOUT)
            .map_err(|e| ExternalError::Failed(format!("{what}: {e}")))?;
        let stdout = String::from_utf8_lossy(&output.stdout);
        if !output.status.success() {
            return Err(ExternalError::Failed(format!(
                "{what} failed ({}): {}",
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            )));
        }
        match stdout.trim() {
            "hung" => Ok(f64::INFINITY),
            out if out.starts_with("skipped: ") => {
                Err(ExternalError::Missing(out["skipped: ".len()..].to_string()))
            }
            out => out.parse().map_err(|_| {
                ExternalError::Failed(format!("{what} printed {stdout:?}, not a single number"))
            }),
        }
    }
}

/// How long the processes a finished peer left in its group get to end on
/// SIGTERM before they are killed.
const GROUP_GRACE: Duration = Duration::from_secs(2);

/// Whether a process other than `leader` is in process group `leader`
/// (`/proc/PID/stat`'s fifth field).
fn others_in_group(leader: i32) -> bool {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return false;
    };
    dir.flatten().any(|entry| {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            return false;
        };
        if pid == leader {
            return false;
        }
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            return false;
        };
        // After the command name in parentheses: state, ppid, pgrp.
        let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
        rest.split_whitespace().nth(2) == Some(&leader.to_string())
    })
}

/// Waits for `child`, killing it after `timeout`. Its output must fit in the
/// pipes (a single number does); no helper thread, so that the fork start
/// method keeps working in this process.
///
/// A child started as the leader of its own process group
/// (`process_group(0)`) has its whole group killed when it exits or times
/// out: the group is killed while the child is still a zombie (`waitid`
/// with `WNOWAIT`), so its id cannot have been reused.
fn wait_with_timeout(mut child: Child, timeout: Duration) -> Result<std::process::Output, String> {
    use rustix::process::{Pid, Signal, WaitId, WaitIdOptions, kill_process_group, waitid};
    let pid = Pid::from_child(&child);
    let kill_group = || {
        // SIGTERM first: the pool workers a hung peer left die, and
        // Python's resource tracker (which ignores SIGTERM) then sees the
        // last of them go and unlinks the semaphores they left in
        // /dev/shm; SIGKILL after a grace period for whatever remains.
        // ESRCH (no such group: the child led none, or it is empty) is fine.
        let _ = kill_process_group(pid, Signal::TERM);
        let grace = Instant::now() + GROUP_GRACE;
        while Instant::now() < grace && others_in_group(pid.as_raw_nonzero().get()) {
            std::thread::sleep(Duration::from_millis(5));
        }
        let _ = kill_process_group(pid, Signal::KILL);
    };
    let deadline = Instant::now() + timeout;
    let opts = WaitIdOptions::EXITED | WaitIdOptions::NOHANG | WaitIdOptions::NOWAIT;
    loop {
        match waitid(WaitId::Pid(pid), opts) {
            Ok(Some(_)) => {
                kill_group();
                return child.wait_with_output().map_err(|e| e.to_string());
            }
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(5)),
            Ok(None) => {
                kill_group();
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("timed out after {timeout:?}"));
            }
            Err(e) => {
                kill_group();
                let _ = child.kill();
                let _ = child.wait();
                return Err(e.to_string());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quick_never_makes_the_venv_and_says_why_the_addons_are_skipped() {
        let dir = std::env::temp_dir().join(format!("multiproc-bench-venv-{}", std::process::id()));
        let why = venv(&dir, true).unwrap_err();
        assert!(why.contains("--quick installs nothing"), "{why}");
        assert!(!dir.exists(), "nothing made under --quick");
        assert!(
            !dir.with_extension("pip.log").exists(),
            "pip was not even started"
        );
    }

    #[test]
    fn a_peer_that_prints_skipped_is_skipped_not_failed() {
        let run = |script: &str| {
            let mut cmd = Command::new("sh");
            cmd.arg("-c");
            start(cmd, &[script]).unwrap().wait()
        };
        match run("echo 'skipped: no redis-server'") {
            Err(ExternalError::Missing(why)) => assert_eq!(why, "no redis-server"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(run("echo 1.5"), Ok(v) if v == 1.5));
        assert!(matches!(
            run("echo nonsense"),
            Err(ExternalError::Failed(_))
        ));
    }

    #[test]
    fn a_venv_made_for_other_requirements_is_not_used() {
        let dir =
            std::env::temp_dir().join(format!("multiproc-bench-stale-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("bin")).unwrap();
        std::fs::write(dir.join("bin/python"), "").unwrap();
        let stamp = dir.join("multiproc-bench-requirements.txt");
        std::fs::write(&stamp, "mpire==0.1\n").unwrap();
        let stale = venv(&dir, true);
        std::fs::write(&stamp, REQUIREMENTS.join("\n") + "\n").unwrap();
        let fresh = venv(&dir, true);
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(stale.is_err(), "{stale:?}");
        assert_eq!(fresh, Ok(dir));
    }
}
