//! [`Funcs`]: the pool's table of task functions, by the id their chunks
//! carry, and which worker was told which.
//!
//! A plain function (a function item, a closure capturing nothing) gets one
//! id for the pool's life: there are as many as the program has task
//! functions. A function given with values ([`crate::partial`]) gets an id
//! of its own job's: its FUNC frame carries the values, so each worker
//! receives them once per job, not once per chunk. When the job ends, every
//! worker that was told is sent FORGET (it drops the values) and the id is
//! free for the next such job, so the table stays as small as the number of
//! jobs at once. Frames to a worker are written in order, so chunks sent
//! before the FORGET still find their function; a chunk of an ended job is
//! never sent again (requeues check that the job is there).

use std::collections::HashMap;

use super::{Core, Job};
use crate::pool::frame;
use crate::pool::worker::{self, TaskFn, TaskRef};

struct Slot {
    task: TaskRef,
    /// The postcard values of a [`crate::Partial`], sent after the
    /// function in its FUNC frame; `None` for a plain function.
    captured: Option<Vec<u8>>,
}

#[derive(Default)]
pub(crate) struct Funcs {
    slots: Vec<Option<Slot>>,
    /// Plain functions' ids, by address.
    plain: HashMap<usize, u32>,
    /// Ids of forgotten functions, to give again.
    free: Vec<u32>,
}

impl Funcs {
    /// The id of plain task function `f`, registering it on first use.
    pub(crate) fn plain(&mut self, f: TaskFn) -> u32 {
        let key = f as usize;
        if let Some(id) = self.plain.get(&key) {
            return *id;
        }
        let id = self.insert(Slot {
            task: TaskRef::new(f),
            captured: None,
        });
        self.plain.insert(key, id);
        id
    }

    /// A new id for `f` with its captured values (one job's).
    pub(crate) fn captured(&mut self, f: TaskFn, values: Vec<u8>) -> u32 {
        self.insert(Slot {
            task: TaskRef::new(f),
            captured: Some(values),
        })
    }

    fn insert(&mut self, slot: Slot) -> u32 {
        match self.free.pop() {
            Some(id) => {
                self.slots[id as usize] = Some(slot);
                id
            }
            None => {
                self.slots.push(Some(slot));
                (self.slots.len() - 1) as u32
            }
        }
    }

    /// Function `id` as it travels to another machine (`remote.rs`).
    pub(crate) fn parts(&self, id: u32) -> Option<super::remote::FuncParts<'_>> {
        let slot = self.slots.get(id as usize)?.as_ref()?;
        Some(super::remote::FuncParts {
            task: slot.task,
            captured: slot.captured.as_deref(),
            what: "",
        })
    }

    /// Writes function `id`'s FUNC frame to a worker's `out` unless `knows`
    /// says it has it.
    #[inline]
    pub(crate) fn tell(&self, id: u32, knows: &mut Vec<bool>, out: &mut Vec<u8>) {
        let f = id as usize;
        if knows.len() <= f {
            knows.resize(f + 1, false);
        }
        if knows[f] {
            return;
        }
        let Some(slot) = self.slots.get(f).and_then(Option::as_ref) else {
            return;
        };
        knows[f] = true;
        let at = frame::begin_frame(out, frame::FUNC);
        out.extend_from_slice(&id.to_le_bytes());
        let r = postcard::to_allocvec(&slot.task).unwrap_or_default();
        out.extend_from_slice(&r);
        if let Some(values) = &slot.captured {
            out.extend_from_slice(values);
        }
        frame::end_frame(out, at);
    }

    /// Forgets captured function `id` (its job ended): each worker told of
    /// it gets FORGET, and the id is free. Plain functions stay.
    pub(crate) fn forget<'a>(
        &mut self,
        id: u32,
        workers: impl Iterator<Item = (&'a mut Vec<bool>, &'a mut Vec<u8>)>,
    ) {
        let f = id as usize;
        if self
            .slots
            .get(f)
            .and_then(Option::as_ref)
            .is_none_or(|s| s.captured.is_none())
        {
            return;
        }
        for (knows, out) in workers {
            if knows.get(f).copied().unwrap_or(false) {
                knows[f] = false;
                let at = frame::begin_frame(out, frame::FORGET);
                out.extend_from_slice(&id.to_le_bytes());
                frame::end_frame(out, at);
            }
        }
        self.slots[f] = None;
        self.free.push(id);
    }
}

impl Core {
    /// The id of job `job`'s task function `f`; with `captured` values
    /// (`partial`), one of the job's own, forgotten when it ends.
    pub(crate) fn job_func(
        &mut self,
        job: u64,
        f: worker::TaskFn,
        captured: Option<Vec<u8>>,
    ) -> u32 {
        let Some(values) = captured else {
            return self.funcs.plain(f);
        };
        let id = self.funcs.captured(f, values);
        if let Some(j) = self.jobs.get_mut(&job) {
            j.captured_func = Some(id);
        }
        id
    }

    /// Removes job `id`, forgetting its captured function.
    pub(super) fn remove_job(&mut self, id: u64) -> Option<Job> {
        let job = self.jobs.remove(&id)?;
        // Forgotten at the next dispatch, when every worker is in its slot
        // (a job ends while one is out, its results being read).
        self.forgotten.extend(job.captured_func);
        Some(job)
    }

    /// Forgets the captured functions of ended jobs (called by dispatch,
    /// when every worker is in its slot).
    pub(super) fn forget_ended(&mut self) {
        for f in std::mem::take(&mut self.forgotten) {
            let workers = self
                .workers
                .iter_mut()
                .flatten()
                .map(|w| (&mut w.knows, &mut w.out));
            self.funcs.forget(f, workers);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // A TaskFn, so registered as one (`sys::image::Section`'s contract).
    #[allow(unsafe_code)]
    #[unsafe(link_section = "multiproc_task")]
    fn task_a(
        _: &mut crate::pool::worker::Captured,
        _: &[u8],
        _: u32,
        _: &mut crate::pool::worker::Ctx,
    ) {
    }

    #[test]
    fn plain_ids_last_and_captured_ids_come_back() {
        let mut funcs = Funcs::default();
        let a = funcs.plain(task_a);
        assert_eq!(funcs.plain(task_a), a);
        let c = funcs.captured(task_a, vec![7]);
        assert_ne!(c, a);
        let (mut knows, mut out) = (Vec::new(), Vec::new());
        funcs.tell(c, &mut knows, &mut out);
        let told = out.len();
        assert!(told > 0);
        funcs.tell(c, &mut knows, &mut out);
        assert_eq!(out.len(), told, "told once");
        funcs.forget(c, std::iter::once((&mut knows, &mut out)));
        let mut frames = crate::frame::RecvBuf::<crate::frame::pool::Pool>::new(1 << 20);
        frames.feed(&out[told..]);
        let (kind, body) = frames.next_frame().unwrap().expect("a FORGET frame");
        assert_eq!(kind, frame::FORGET);
        assert_eq!(frame::forget_body(frames.slice(body)), Some(c));
        // Forgetting a plain function does nothing; the freed id returns.
        funcs.forget(a, std::iter::empty());
        assert_eq!(funcs.plain(task_a), a);
        assert_eq!(funcs.captured(task_a, vec![8]), c);
    }
}
