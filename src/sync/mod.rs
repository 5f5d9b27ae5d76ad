//! Synchronisation between processes: [`Lock`], [`RLock`], [`Semaphore`],
//! [`BoundedSemaphore`], [`Condition`], [`Event`] and [`Barrier`] —
//! Python's `multiprocessing` primitives.
//!
//! Each lives in a small anonymous shared-memory segment (memfd) as a few
//! 32-bit words (layouts documented beside each type and pinned by tests),
//! and works with atomics and futexes: an uncontended acquire + release is
//! two atomic instructions and no system call. Every handle is `Clone`,
//! travels to children inside their arguments under every start method (as
//! a descriptor; the child maps the same memory), and is inherited under
//! fork. The segment goes away with the last process that holds it — a
//! crash leaves nothing in `/dev/shm`.
//!
//! # A lock holder that dies
//!
//! Python's locks deadlock forever when a process dies holding one. Here
//! the next process to acquire a [`Lock`], [`RLock`] or [`Condition`]
//! whose holder died gets it within about 50 ms, as an [`OwnerDied`] that
//! carries the guard, so it can repair the data. The indication is sticky
//! until someone calls [`OwnerDied::into_guard`]; `?` turns it into an
//! [`Error`](crate::Error) of kind
//! [`OwnerDied`](crate::ErrorKind::OwnerDied). Semaphore permits have no
//! owner, so a dead holder's permit cannot be recovered (nor in Python).
//!
//! # Blocking calls
//!
//! As the crate's "Outcome rules" say: every acquisition has a blocking
//! form, a `try_` form (never waits; [`AcquireError::WouldBlock`]), a
//! `_timeout` and a `_deadline` form ([`AcquireError::Timeout`]), with the
//! same guard as their `Ok`; the blocking acquisition of a lock returns a
//! [`LockResult`], the other forms an [`AcquireResult`]. Waits for a state
//! ([`Event::wait`], [`Barrier::wait`], [`ConditionGuard::wait`]) have the
//! blocking, `_timeout` and `_deadline` forms, and running out of time is
//! an error of kind [`Timeout`](crate::ErrorKind::Timeout). Any
//! `Duration` is accepted: `Duration::MAX` waits as long as it takes.
//!
//! ```
//! use multiproc::Process;
//! use multiproc::sync::{Event, Lock};
//!
//! fn child(lock: Lock, ready: Event) {
//!     ready.wait();
//!     let _held = lock.acquire().unwrap();
//! }
//!
//! # fn main() -> multiproc::Result<()> {
//! # multiproc::init();
//! let (lock, ready) = (Lock::new()?, Event::new()?);
//! let p = Process::new(child, (lock.clone(), ready.clone())).start()?;
//! ready.set();
//! p.join()?;
//! # Ok(()) }
//! ```
//!
//! Design notes: `src/sync/README.md`.

mod barrier;
mod condition;
mod event;
mod lock;
mod outcome;
mod rlock;
mod semaphore;

pub use barrier::Barrier;
pub use condition::{Condition, ConditionGuard};
pub use event::Event;
pub use lock::{Lock, LockGuard};
pub use outcome::{AcquireError, AcquireResult, LockResult, OwnerDied};
pub use rlock::{RLock, RLockGuard};
pub use semaphore::{BoundedSemaphore, Semaphore, SemaphoreGuard};

pub(crate) use lock::LockLayout;
#[allow(unused_imports)] // for the manager's locks
pub(crate) use outcome::Acknowledge;

#[cfg(test)]
mod tests {
    use super::*;
    use std::mem::{align_of, offset_of, size_of};

    /// Other processes (and other versions of this crate) read these
    /// layouts: any change must be deliberate.
    #[test]
    fn shared_layouts_are_pinned() {
        assert_eq!(size_of::<LockLayout>(), 8);
        assert_eq!(offset_of!(LockLayout, word), 0);
        assert_eq!(offset_of!(LockLayout, owner_died), 4);

        use rlock::RLockLayout;
        assert_eq!(size_of::<RLockLayout>(), 16);
        assert_eq!(offset_of!(RLockLayout, owner), 8);
        assert_eq!(offset_of!(RLockLayout, count), 12);

        use semaphore::SemaphoreLayout;
        assert_eq!(size_of::<SemaphoreLayout>(), 12);
        assert_eq!(offset_of!(SemaphoreLayout, value), 0);
        assert_eq!(offset_of!(SemaphoreLayout, sleepers), 4);
        assert_eq!(offset_of!(SemaphoreLayout, bound), 8);

        use event::EventLayout;
        assert_eq!(size_of::<EventLayout>(), 4);

        use condition::ConditionLayout;
        assert_eq!(size_of::<ConditionLayout>(), 16);
        assert_eq!(offset_of!(ConditionLayout, seq), 8);
        assert_eq!(offset_of!(ConditionLayout, waiters), 12);

        use barrier::BarrierLayout;
        assert_eq!(size_of::<BarrierLayout>(), 24);
        assert_eq!(align_of::<BarrierLayout>(), 8);
        assert_eq!(offset_of!(BarrierLayout, lock), 0);
        assert_eq!(offset_of!(BarrierLayout, parties), 4);
        assert_eq!(offset_of!(BarrierLayout, count), 8);
        assert_eq!(offset_of!(BarrierLayout, generation), 12);
        assert_eq!(offset_of!(BarrierLayout, history), 16);
    }

    #[test]
    fn lock_try_and_timeout_forms() {
        let lock = Lock::new().unwrap();
        let g = lock.acquire().unwrap();
        assert!(lock.is_locked());
        assert!(matches!(lock.try_acquire(), Err(AcquireError::WouldBlock)));
        assert_eq!(
            lock.try_acquire().unwrap_err().kind(),
            crate::ErrorKind::WouldBlock
        );
        assert!(matches!(
            lock.acquire_timeout(std::time::Duration::from_millis(5)),
            Err(AcquireError::Timeout)
        ));
        let past = std::time::Instant::now();
        let err = crate::Error::from(lock.acquire_deadline(past).unwrap_err());
        assert_eq!(err.kind(), crate::ErrorKind::Timeout);
        drop(g);
        assert!(!lock.is_locked());
        assert_eq!(
            lock.release().unwrap_err().kind(),
            crate::ErrorKind::NotAcquired
        );
        lock.acquire().unwrap().leak();
        assert!(lock.is_locked());
        lock.release().unwrap();
        assert!(lock.try_acquire().is_ok());
        assert!(lock.acquire_timeout(std::time::Duration::MAX).is_ok());
    }

    /// The owner-died flag is sticky: every form reports it (an RLock's
    /// re-entry too) until `into_guard`; `?` releases and leaves it set.
    #[test]
    fn owner_died_is_reported_by_every_form_until_into_guard() {
        use std::time::{Duration, Instant};
        let lock = Lock::new().unwrap();
        let flag = || lock.region().u32_at(4);
        flag().store(1, std::sync::atomic::Ordering::Release);
        let as_error = crate::Error::from(lock.acquire().unwrap_err());
        assert_eq!(as_error.kind(), crate::ErrorKind::OwnerDied);
        assert!(!lock.is_locked(), "the conversion released the lock");
        // One at a time: each error holds the lock until dropped.
        type Form<'a> = &'a dyn Fn() -> AcquireResult<LockGuard<'a>>;
        let forms: [Form<'_>; 3] = [
            &|| lock.try_acquire(),
            &|| lock.acquire_timeout(Duration::MAX),
            &|| lock.acquire_deadline(Instant::now()),
        ];
        for form in forms {
            let e = form().unwrap_err();
            assert_eq!(e.kind(), crate::ErrorKind::OwnerDied);
            assert!(matches!(e, AcquireError::OwnerDied(_)));
        }
        drop(lock.acquire().unwrap_err().into_guard());
        assert!(lock.acquire().is_ok());
        assert!(lock.try_acquire().is_ok());

        let r = RLock::new().unwrap();
        let first = r.acquire().unwrap();
        r.region()
            .u32_at(4)
            .store(1, std::sync::atomic::Ordering::Release);
        let again = r.acquire().unwrap_err();
        assert_eq!(r.count(), 2);
        assert!(matches!(r.try_acquire(), Err(AcquireError::OwnerDied(_))));
        let clean = again.into_guard();
        assert!(r.try_acquire().is_ok());
        drop((clean, first));
        assert_eq!(r.count(), 0);
    }

    #[test]
    fn rlock_reenters_and_counts() {
        let r = RLock::new().unwrap();
        let a = r.acquire().unwrap();
        let b = r.try_acquire().unwrap();
        assert_eq!(r.count(), 2);
        assert!(r.is_mine());
        // Another thread cannot take it.
        std::thread::scope(|s| {
            s.spawn(|| {
                assert!(matches!(r.try_acquire(), Err(AcquireError::WouldBlock)));
                assert_eq!(
                    r.release().unwrap_err().kind(),
                    crate::ErrorKind::NotAcquired
                );
            });
        });
        drop(b);
        assert_eq!(r.count(), 1);
        drop(a);
        assert!(!r.is_mine());
        std::thread::scope(|s| {
            s.spawn(|| assert!(r.try_acquire().is_ok()));
        });
    }

    #[test]
    fn bounded_semaphore_refuses_over_release() {
        let s = BoundedSemaphore::new(1).unwrap();
        assert_eq!(
            s.release().unwrap_err().kind(),
            crate::ErrorKind::NotAcquired
        );
        s.acquire().leak();
        assert_eq!(
            s.try_acquire().unwrap_err().kind(),
            crate::ErrorKind::WouldBlock
        );
        assert_eq!(
            s.acquire_timeout(std::time::Duration::from_millis(2))
                .unwrap_err()
                .kind(),
            crate::ErrorKind::Timeout
        );
        assert_eq!(
            s.acquire_deadline(std::time::Instant::now())
                .unwrap_err()
                .kind(),
            crate::ErrorKind::Timeout
        );
        s.release().unwrap();
        assert_eq!(s.get_value(), 1);
        // Every form's guard gives its permit back when dropped.
        {
            let g = s.acquire_timeout(std::time::Duration::MAX).unwrap();
            assert_eq!(s.get_value(), 0);
            drop(g);
            let _g = s.try_acquire().unwrap();
            assert_eq!(s.get_value(), 0);
        }
        assert_eq!(s.get_value(), 1);
        drop(s.acquire());
        assert_eq!(s.get_value(), 1, "acquire's guard gave it back");
        let u = Semaphore::new(0).unwrap();
        u.release().unwrap();
        u.release().unwrap();
        assert_eq!(u.get_value(), 2);
    }

    #[test]
    fn barrier_rejects_zero_parties_and_resets() {
        assert_eq!(
            Barrier::new(0).unwrap_err().kind(),
            crate::ErrorKind::InvalidArgument
        );
        let b = Barrier::new(2).unwrap();
        b.abort();
        assert!(b.broken());
        assert_eq!(
            b.wait().unwrap_err().kind(),
            crate::ErrorKind::BrokenBarrier
        );
        b.reset();
        assert!(!b.broken());
        let b2 = b.clone();
        let t = std::thread::spawn(move || b2.wait().unwrap());
        let mine = b.wait().unwrap();
        let theirs = t.join().unwrap();
        assert_eq!(mine + theirs, 1);

        // Deadline and Duration::MAX forms.
        let one = Barrier::new(1)
            .unwrap()
            .with_timeout(std::time::Duration::MAX);
        assert_eq!(one.wait().unwrap(), 0);
        assert_eq!(one.wait_timeout(std::time::Duration::MAX).unwrap(), 0);
        assert_eq!(one.wait_deadline(std::time::Instant::now()).unwrap(), 0);
        let err = b.wait_deadline(std::time::Instant::now()).unwrap_err();
        assert_eq!(err.kind(), crate::ErrorKind::Timeout, "{err}");
        assert!(b.broken());
    }

    #[test]
    fn condition_notifies_a_thread() {
        let c = Condition::new().unwrap();
        let flag = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (c2, f2) = (c.clone(), flag.clone());
        let t = std::thread::spawn(move || {
            let mut g = c2.acquire().unwrap();
            g.wait_for(|| f2.load(std::sync::atomic::Ordering::Relaxed))
                .is_ok()
        });
        {
            let g = c.acquire().unwrap();
            flag.store(true, std::sync::atomic::Ordering::Relaxed);
            g.notify_all();
        }
        assert!(t.join().unwrap());
    }

    static ACTIONS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

    fn count_action() {
        ACTIONS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }

    fn panicking_action() {
        panic!("the action failed");
    }

    #[test]
    fn barrier_action_runs_once_per_round_and_a_panic_breaks_it() {
        let b = Barrier::new(2).unwrap().with_action(count_action);
        let b2 = b.clone();
        let t = std::thread::spawn(move || {
            for _ in 0..10 {
                b2.wait().unwrap();
            }
        });
        for _ in 0..10 {
            b.wait().unwrap();
        }
        t.join().unwrap();
        assert_eq!(ACTIONS.load(std::sync::atomic::Ordering::SeqCst), 10);

        let b = Barrier::new(1).unwrap().with_action(panicking_action);
        let err = b.wait().unwrap_err();
        assert_eq!(err.kind(), crate::ErrorKind::BrokenBarrier);
        assert!(b.broken());
    }

    #[test]
    fn a_handle_decoded_from_a_smaller_object_is_refused() {
        let ev = Event::new().unwrap();
        let e = crate::codec::encode(&ev).unwrap();
        let err = crate::codec::decode::<Condition>(&e.bytes, e.fds).unwrap_err();
        assert_eq!(err.kind(), crate::ErrorKind::Decode);
        let e = crate::codec::encode(&ev).unwrap();
        let err = crate::codec::decode::<Semaphore>(&e.bytes, e.fds).unwrap_err();
        assert_eq!(err.kind(), crate::ErrorKind::Decode);
        let e = crate::codec::encode(&ev).unwrap();
        let err = crate::codec::decode::<RLock>(&e.bytes, e.fds).unwrap_err();
        assert_eq!(err.kind(), crate::ErrorKind::Decode);
    }

    #[test]
    fn handles_survive_encoding_and_share_state() {
        let lock = Lock::new().unwrap();
        let e = crate::codec::encode(&lock).unwrap();
        let back: Lock = crate::codec::decode(&e.bytes, e.fds).unwrap();
        let g = back.acquire().unwrap();
        assert!(lock.is_locked());
        drop(g);
        let b = Barrier::new(3)
            .unwrap()
            .with_timeout(std::time::Duration::from_millis(1));
        let e = crate::codec::encode(&b).unwrap();
        let back: Barrier = crate::codec::decode(&e.bytes, e.fds).unwrap();
        assert_eq!(back.parties(), 3);
        assert_eq!(
            back.wait().unwrap_err().kind(),
            crate::ErrorKind::Timeout,
            "the timeout travelled"
        );
        assert!(b.broken());
        assert_eq!(
            b.wait().unwrap_err().kind(),
            crate::ErrorKind::BrokenBarrier,
            "the timed-out wait broke it"
        );
    }
}
