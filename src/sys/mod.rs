//! Everything that talks to the operating system.
//!
//! The rest of the crate is safe Rust built on the functions here. Each file
//! covers one area: [`process`] (fork, clone, pidfd, signals, exit), [`socket`]
//! (socket pairs, `SCM_RIGHTS`, poll), [`shm`] (memfd, named segments, mmap),
//! [`futex`] (sleeping on a shared word) and [`image`] (which executable runs, and
//! naming a function across `exec`). System calls go through rustix where it
//! has them and through libc where it does not (`fork`, `atexit`, `_exit`).
//!
//! Only Linux is supported today; another platform would add its own versions
//! of these files behind `cfg`.

#![allow(unsafe_code)]

#[cfg(not(target_os = "linux"))]
compile_error!("multiproc supports Linux only for now; the OS layer lives in src/sys/");

pub(crate) mod epoll;
pub(crate) mod futex;
pub(crate) mod image;
pub(crate) mod io;
pub(crate) mod page;
pub(crate) mod process;
pub(crate) mod setup;
pub(crate) mod shm;
pub(crate) mod signal;
pub(crate) mod socket;
pub(crate) mod thread;
pub(crate) mod title;
pub(crate) mod unwind;
