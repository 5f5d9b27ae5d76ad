//! The cluster engine, behind the `cluster` feature: the same [`Pool`]
//! on many machines over Redis Streams (or Valkey).
//!
//! A caller builds its pool with
//! [`PoolBuilder::cluster`](crate::pool::PoolBuilder::cluster); machines
//! that run the same program as [`Worker`]s (agents) take its chunks
//! from the broker, run them on a local pool of their own and answer.
//! Every `Pool` method works as on one machine. See `README.md` beside
//! this file for the design, the guarantees (at-least-once execution,
//! each result delivered once) and what a broker operator can see and do.
//!
//! ```no_run
//! use multiproc::Pool;
//!
//! fn square(x: u64) -> u64 { x * x }
//!
//! fn main() -> multiproc::Result<()> {
//!     multiproc::init();
//!     let pool = Pool::builder().cluster("redis://head:6379/").build()?;
//!     let squares = pool.map(square, 0..1_000u64)?;
//!     assert_eq!(squares[10], 100);
//!     Ok(())
//! }
//! ```
//!
//! [`Pool`]: crate::Pool

mod agent;
mod blob;
mod broker;
pub(crate) mod link;
mod options;
pub(crate) mod wire;

pub use self::agent::Worker;
pub use self::broker::{Broker, CONNECT_TIMEOUT, build_id};
pub use self::options::ClusterOptions;

/// Test support, not part of the API: how many times this process's
/// cluster pools checked their entries after the broker came back with
/// their keys, and how many entries they found lost and sent again.
/// Exists only with the `test-hooks` feature.
#[doc(hidden)]
#[cfg(feature = "test-hooks")]
pub fn __verify_counts() -> (u64, u64) {
    link::verify_counts()
}
