//! [`ClusterOptions`]: how a cluster pool waits for the cluster, how long
//! it bears the broker's absence and lost agents, and how long its keys
//! outlive it.

use std::time::Duration;

/// How a cluster pool waits for the cluster and how long it bears losses.
#[derive(Clone, Debug)]
pub struct ClusterOptions {
    pub(crate) agent_wait: Duration,
    pub(crate) broker_timeout: Duration,
    pub(crate) max_losses: u32,
    pub(crate) caller_ttl: Duration,
}

impl Default for ClusterOptions {
    fn default() -> Self {
        ClusterOptions {
            agent_wait: Duration::from_secs(10),
            broker_timeout: Duration::from_secs(30),
            max_losses: 2,
            caller_ttl: Duration::from_secs(30),
        }
    }
}

impl ClusterOptions {
    /// How long `build`, and later a call with work in flight, waits for
    /// an agent of this build before it fails (default 10 s).
    pub fn agent_wait(mut self, d: Duration) -> Self {
        self.agent_wait = d;
        self
    }

    /// How long the broker may be unreachable before every call fails
    /// with [`ErrorKind::Io`](crate::ErrorKind::Io) ("lost the broker"; default 30 s).
    pub fn broker_timeout(mut self, d: Duration) -> Self {
        self.broker_timeout = d;
        self
    }

    /// How many times a chunk is run again after the agent running it was
    /// lost; past that its items fail with [`ErrorKind::WorkerLost`](crate::ErrorKind::WorkerLost)
    /// naming the last agent (default 2).
    pub fn max_losses(mut self, n: u32) -> Self {
        self.max_losses = n;
        self
    }

    /// How long the caller's keys outlive it if it dies without closing
    /// its pool (default 30 s; refreshed every tenth of it). Agents stop
    /// its work once they are gone.
    pub fn caller_ttl(mut self, d: Duration) -> Self {
        self.caller_ttl = d.max(Duration::from_millis(300));
        self
    }
}
