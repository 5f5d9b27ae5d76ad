//! [`Insights`]: where each worker's time went (mpire's insights), read
//! from the page each worker shares with the pool (`worker.rs` writes its
//! counters there; nothing travels as a message). With
//! [`PoolBuilder::insights`](crate::PoolBuilder::insights) off, only
//! start-up, initializer and task counts are known: timing every task and
//! every read costs a few clock reads each, which is why it is a choice.

use std::fmt;
use std::time::Duration;

/// One worker's time, from [`Pool::insights`](crate::Pool::insights).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct WorkerInsights {
    /// The worker's name (`PoolWorker-N`); for the retired workers'
    /// sum, `retired (N)`.
    pub name: String,
    /// Its pid (0 for the retired workers' sum).
    pub pid: u32,
    /// From the pool's asking for it to the worker being ready for tasks,
    /// the initializer (and worker state) included.
    pub start_up: Duration,
    /// The initializer and the worker state's builder.
    pub init: Duration,
    /// Waiting for work (insights on).
    pub waiting: Duration,
    /// In task functions (insights on).
    pub working: Duration,
    /// Decoding arguments and encoding results (insights on).
    pub encoding: Duration,
    /// Tasks finished.
    pub tasks: u64,
}

impl WorkerInsights {
    pub(crate) fn add(&mut self, other: &WorkerInsights) {
        self.start_up += other.start_up;
        self.init += other.init;
        self.waiting += other.waiting;
        self.working += other.working;
        self.encoding += other.encoding;
        self.tasks += other.tasks;
    }
}

/// Where the pool's workers spent their time: per live worker, and the
/// sum of those that left or died.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Insights {
    /// Whether waits and tasks were timed
    /// ([`PoolBuilder::insights`](crate::PoolBuilder::insights)); without,
    /// `waiting`, `working` and `encoding` are zero.
    pub timed: bool,
    /// The workers now in the pool.
    pub workers: Vec<WorkerInsights>,
    /// The sum over workers that left (`maxtasksperchild`, memory cap) or
    /// died, with their count; `None` if none did.
    pub retired: Option<(u64, WorkerInsights)>,
}

impl Insights {
    /// Every worker's time added up, the retired ones' included.
    pub fn total(&self) -> WorkerInsights {
        let mut t = WorkerInsights {
            name: "total".into(),
            ..Default::default()
        };
        for w in &self.workers {
            t.add(w);
        }
        if let Some((_, r)) = &self.retired {
            t.add(r);
        }
        t
    }

    /// One line: workers, tasks, and the share of working, waiting and
    /// encoding time; the progress bar's last line.
    pub fn summary(&self) -> String {
        let t = self.total();
        let n = self.workers.len() as u64 + self.retired.as_ref().map_or(0, |r| r.0);
        let start = t.start_up.checked_div(n.max(1) as u32).unwrap_or_default();
        let mut line = format!("{n} workers, {} tasks, start-up {start:.1?} each", t.tasks);
        if self.timed {
            let all = (t.working + t.waiting + t.encoding).as_secs_f64().max(1e-9);
            let pct = |d: Duration| 100.0 * d.as_secs_f64() / all;
            line.push_str(&format!(
                ", working {:.0}%, waiting {:.0}%, encoding {:.0}%",
                pct(t.working),
                pct(t.waiting),
                pct(t.encoding)
            ));
        }
        line
    }
}

impl fmt::Display for Insights {
    /// A table: a line per worker, the retired ones' sum, the total.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{:<16} {:>8} {:>10} {:>10} {:>10} {:>10} {:>10} {:>8}",
            "worker", "pid", "start-up", "init", "waiting", "working", "encoding", "tasks"
        )?;
        let row = |f: &mut fmt::Formatter<'_>, w: &WorkerInsights| {
            writeln!(
                f,
                "{:<16} {:>8} {:>10.1?} {:>10.1?} {:>10.1?} {:>10.1?} {:>10.1?} {:>8}",
                w.name, w.pid, w.start_up, w.init, w.waiting, w.working, w.encoding, w.tasks
            )
        };
        for w in &self.workers {
            row(f, w)?;
        }
        if let Some((_, r)) = &self.retired {
            row(f, r)?;
        }
        row(f, &self.total())?;
        write!(f, "{}", self.summary())
    }
}
