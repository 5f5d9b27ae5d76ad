//! Deadlines: how every `_timeout` form becomes its `_deadline` form.
//!
//! A timeout is turned into a deadline once, at the start of the call, and
//! the whole call (retries, spurious wake-ups, several system calls) runs
//! against that deadline. `Instant + Duration` panics on overflow; here a
//! timeout too long to represent (`Duration::MAX`, or years) is no
//! deadline at all: the call waits as long as it takes.

use std::time::{Duration, Instant};

/// The deadline `timeout` from now, or `None` (wait for ever) if that
/// instant cannot be represented.
pub(crate) fn deadline_after(timeout: Duration) -> Option<Instant> {
    Instant::now().checked_add(timeout)
}

/// How long until `deadline` (zero once it has passed); `None` for no
/// deadline.
#[allow(dead_code)] // for the `_deadline` forms being added
pub(crate) fn remaining(deadline: Option<Instant>) -> Option<Duration> {
    deadline.map(|d| d.saturating_duration_since(Instant::now()))
}

/// Whether `deadline` has passed (never, for no deadline).
pub(crate) fn expired(deadline: Option<Instant>) -> bool {
    deadline.is_some_and(|d| Instant::now() >= d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_timeout_is_a_deadline_or_none() {
        assert!(deadline_after(Duration::MAX).is_none());
        assert!(deadline_after(Duration::from_secs(u64::MAX)).is_none());
        let d = deadline_after(Duration::from_secs(1)).unwrap();
        assert!(!expired(Some(d)));
        assert!(remaining(Some(d)).unwrap() <= Duration::from_secs(1));
        assert!(!expired(None));
        assert_eq!(remaining(None), None);
        let past = deadline_after(Duration::ZERO).unwrap();
        assert_eq!(
            remaining(Some(past - Duration::from_millis(1))),
            Some(Duration::ZERO)
        );
    }
}
