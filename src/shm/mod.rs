//! The shared-memory core: the robust structures every primitive of the
//! crate is built from, in anonymous memfd memory.
//!
//! - [`region`]: a mapping of an anonymous memfd that travels to other
//!   processes as its descriptor; all-zero means fresh.
//! - [`lockword`]: the one robust cross-process lock (holder pid in a
//!   32-bit word, futex sleeps, takeover from a dead holder).
//! - [`ring`]: the crash-safe byte ring under every queue and pipe.
//!
//! Nothing here knows about the public types built on top (queues, pipes,
//! locks, values): they live in `queue/`, `connection/`, `sync/` and
//! `shared/`. A process that dies at any instruction, or scribbles over
//! the memory, leaves the others an error, never undefined behaviour: see
//! the opening comment of each file.

pub(crate) mod lockword;
pub(crate) mod region;
pub(crate) mod ring;
