//! Futexes on 32-bit words in shared memory: sleep until a word changes,
//! and wake sleepers.
//!
//! These are *shared* futexes (no `FUTEX_PRIVATE_FLAG`): the kernel keys
//! them by the physical page, so processes that map the same segment at
//! different addresses wait on and wake the same futex.
//!
//! Reference: [futex(2)](https://man7.org/linux/man-pages/man2/futex.2.html).

use std::sync::atomic::AtomicU32;
use std::time::{Duration, Instant};

use rustix::io::Errno;
use rustix::thread::futex;

/// Why [`wait`] returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Woken {
    /// Woken, interrupted by a signal, or the word already differed from
    /// `expected`: look at the word again.
    Maybe,
    /// The timeout passed.
    TimedOut,
}

/// Sleeps while `*word == expected`, for at most `timeout` (forever if
/// `None`). Spurious returns are allowed: callers re-check their condition
/// in a loop.
pub(crate) fn wait(word: &AtomicU32, expected: u32, timeout: Option<Duration>) -> Woken {
    let ts = timeout.map(|d| futex::Timespec {
        tv_sec: d.as_secs().min(i64::MAX as u64) as i64,
        tv_nsec: d.subsec_nanos().into(),
    });
    match futex::wait(word, futex::Flags::empty(), expected, ts.as_ref()) {
        Err(Errno::TIMEDOUT) => Woken::TimedOut,
        // Woken (Ok), the value changed first (AGAIN), a signal (INTR).
        _ => Woken::Maybe,
    }
}

/// Like [`wait`] but against an absolute deadline (`None`: forever).
pub(crate) fn wait_until(word: &AtomicU32, expected: u32, deadline: Option<Instant>) -> Woken {
    match deadline {
        None => wait(word, expected, None),
        Some(d) => match d.checked_duration_since(Instant::now()) {
            None => Woken::TimedOut,
            Some(left) if left.is_zero() => Woken::TimedOut,
            Some(left) => wait(word, expected, Some(left)),
        },
    }
}

/// Wakes at most `n` processes or threads sleeping on `word`; returns how
/// many were woken.
pub(crate) fn wake(word: &AtomicU32, n: u32) -> usize {
    futex::wake(word, futex::Flags::empty(), n).unwrap_or(0)
}

/// Wakes everyone sleeping on `word`.
pub(crate) fn wake_all(word: &AtomicU32) -> usize {
    wake(word, i32::MAX as u32)
}

/// The most words one [`wait_any`] sleeps on (the kernel's
/// `FUTEX_WAITV_MAX`).
pub(crate) const WAIT_ANY_MAX: usize = 128;

/// Sleeps while every `word == expected` of `words`, until one is woken or
/// changes, or `deadline` passes (`None`: forever) — `futex_waitv(2)`,
/// Linux 5.16 and later. Spurious returns are allowed. Only the first
/// [`WAIT_ANY_MAX`] words are slept on; with more, or on a kernel without
/// `futex_waitv`, it sleeps on the first word for at most 10 ms so that
/// the caller looks at the others again.
pub(crate) fn wait_any(words: &[(&AtomicU32, u32)], deadline: Option<Instant>) -> Woken {
    let Some(&(first, first_expected)) = words.first() else {
        return match deadline {
            Some(d) => {
                if let Some(left) = d.checked_duration_since(Instant::now()) {
                    std::thread::sleep(left);
                }
                Woken::TimedOut
            }
            None => Woken::Maybe,
        };
    };
    let slice = || {
        let cap = Instant::now() + Duration::from_millis(10);
        match wait_until(
            first,
            first_expected,
            Some(deadline.map_or(cap, |d| d.min(cap))),
        ) {
            Woken::TimedOut if expired(deadline) => Woken::TimedOut,
            _ => Woken::Maybe,
        }
    };
    if words.len() > WAIT_ANY_MAX {
        return slice();
    }
    let waiters: Vec<futex::Wait> = words
        .iter()
        .map(|&(word, expected)| {
            let mut w = futex::Wait::new();
            w.val = expected.into();
            w.uaddr = futex::WaitPtr::new(word.as_ptr().cast());
            w.flags = futex::WaitFlags::SIZE_U32;
            w
        })
        .collect();
    // An absolute CLOCK_MONOTONIC time, which `Instant` also reads.
    let ts = deadline.map(|d| {
        let now = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
        let left = d.saturating_duration_since(Instant::now());
        let nanos = now.tv_nsec as u64 + u64::from(left.subsec_nanos());
        futex::Timespec {
            tv_sec: now
                .tv_sec
                .saturating_add(left.as_secs().min(i64::MAX as u64 / 2) as i64)
                .saturating_add((nanos / 1_000_000_000) as i64),
            tv_nsec: (nanos % 1_000_000_000) as _,
        }
    });
    match futex::waitv(
        &waiters,
        futex::WaitvFlags::empty(),
        ts.as_ref(),
        futex::ClockId::Monotonic,
    ) {
        Err(Errno::TIMEDOUT) => Woken::TimedOut,
        Err(Errno::NOSYS) => slice(),
        _ => Woken::Maybe,
    }
}

fn expired(deadline: Option<Instant>) -> bool {
    deadline.is_some_and(|d| Instant::now() >= d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::Ordering;

    #[test]
    fn a_changed_word_returns_at_once_and_a_timeout_is_reported() {
        let w = AtomicU32::new(1);
        assert_eq!(wait(&w, 0, None), Woken::Maybe, "value differs: no sleep");
        assert_eq!(wait(&w, 1, Some(Duration::from_millis(1))), Woken::TimedOut);
        assert_eq!(wait_until(&w, 1, Some(Instant::now())), Woken::TimedOut);
    }

    #[test]
    fn wake_releases_a_sleeper() {
        let w = Arc::new(AtomicU32::new(0));
        let w2 = w.clone();
        let t = std::thread::spawn(move || {
            while w2.load(Ordering::Acquire) == 0 {
                wait(&w2, 0, None);
            }
        });
        w.store(1, Ordering::Release);
        wake_all(&w);
        t.join().unwrap();
    }

    #[test]
    fn wait_any_returns_when_any_word_is_woken_and_reports_its_deadline() {
        let a = AtomicU32::new(0);
        let b = Arc::new(AtomicU32::new(0));
        let soon = Instant::now() + Duration::from_millis(1);
        assert_eq!(wait_any(&[(&a, 0), (&b, 0)], Some(soon)), Woken::TimedOut);
        assert_eq!(
            wait_any(&[(&a, 0), (&b, 1)], None),
            Woken::Maybe,
            "b differs"
        );
        let b2 = b.clone();
        let t = std::thread::spawn(move || {
            b2.store(1, Ordering::Release);
            wake_all(&b2);
        });
        while b.load(Ordering::Acquire) == 0 {
            wait_any(&[(&a, 0), (&b, 0)], None);
        }
        t.join().unwrap();
    }
}
