//! The pool's side of [`Insights`]: each worker's counters, read from the
//! page it shares with the pool, and the sum of the workers that left.

use std::sync::atomic::Ordering;
use std::time::Duration;

use super::{Core, Worker};
use crate::pool::insights::{Insights, WorkerInsights};
use crate::pool::worker;

/// Worker `w`'s counters as they are now.
fn read(w: &Worker) -> WorkerInsights {
    let word = |i| w.page.word(i).load(Ordering::Acquire);
    let ready = word(worker::WORD_READY_NS);
    WorkerInsights {
        name: w.name.clone(),
        pid: w.process.pid(),
        start_up: Duration::from_nanos(ready.saturating_sub(w.spawned_ns)),
        init: Duration::from_nanos(word(worker::WORD_INIT_NS)),
        waiting: Duration::from_nanos(word(worker::WORD_WAIT_NS)),
        working: Duration::from_nanos(word(worker::WORD_WORK_NS)),
        encoding: Duration::from_nanos(word(worker::WORD_CODEC_NS)),
        tasks: word(worker::WORD_FINISHED),
    }
}

impl Core {
    /// Every worker's counters now (`Pool::insights`).
    pub(crate) fn insights(&self) -> Insights {
        Insights {
            timed: self.config.insights,
            workers: self.workers.iter().flatten().map(read).collect(),
            retired: self.retired.clone(),
        }
    }

    /// Adds the counters of `w`, which is leaving the pool, to the
    /// retired workers' sum.
    pub(super) fn retire(&mut self, w: &Worker) {
        let (n, sum) = self.retired.get_or_insert_with(Default::default);
        *n += 1;
        sum.add(&read(w));
        sum.pid = 0;
        sum.name = format!("retired ({n})");
    }
}
