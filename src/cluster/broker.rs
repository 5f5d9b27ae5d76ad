//! The broker: [`Broker`] (a checked connection), this build's id and key
//! names, the broker's clock and who of the agents is alive.

use std::sync::OnceLock;
use std::time::Duration;

use crate::error::{Error, ErrorKind, Result};

/// This program's build, as agents and callers name it in their keys:
/// the first 16 hex digits of the SHA-256 of its executable, so that an
/// agent only takes tasks of the very same binary.
///
/// # Errors
///
/// [`ErrorKind::Io`] if the executable cannot be read.
pub fn build_id() -> Result<String> {
    static ID: OnceLock<String> = OnceLock::new();
    if let Some(id) = ID.get() {
        return Ok(id.clone());
    }
    use sha2::Digest;
    let mut file = std::fs::File::open("/proc/self/exe")
        .map_err(|e| Error::io("cannot read this program's executable", e))?;
    let mut hash = sha2::Sha256::new();
    std::io::copy(&mut file, &mut hash)
        .map_err(|e| Error::io("cannot read this program's executable", e))?;
    let digest = hash.finalize();
    let id: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    Ok(ID.get_or_init(|| id).clone())
}

/// The broker keys of one build (`mp:{build}:...`).
#[derive(Clone, Debug)]
pub(crate) struct Keys {
    prefix: String,
}

/// The consumer group every agent of a build reads the task stream in.
pub(crate) const GROUP: &str = "agents";

impl Keys {
    pub(crate) fn new(build: &str) -> Self {
        Keys {
            prefix: format!("mp:{build}:"),
        }
    }
    /// The stream of chunks to run (consumer group [`GROUP`]).
    pub(crate) fn tasks(&self) -> String {
        format!("{}tasks", self.prefix)
    }
    /// A hash: agent name -> `heartbeat_ms:processes:lease_ms`.
    pub(crate) fn agents(&self) -> String {
        format!("{}agents", self.prefix)
    }
    /// Exists (with a time to live) while caller `id` lives.
    pub(crate) fn caller(&self, id: &str) -> String {
        format!("{}caller:{id}", self.prefix)
    }
    /// The stream of answers to caller `id`.
    pub(crate) fn reply(&self, id: &str) -> String {
        format!("{}reply:{id}", self.prefix)
    }
    /// A blob of caller `id`'s arguments, named by its hash (hex).
    pub(crate) fn blob(&self, id: &str, hash: &str) -> String {
        format!("{}blob:{id}:{hash}", self.prefix)
    }
    /// The set of caller `id`'s cancelled job ids.
    pub(crate) fn cancel(&self, id: &str) -> String {
        format!("{}cancel:{id}", self.prefix)
    }
}

/// Whether `e` means the connection is gone (reconnect and try again),
/// not a command the broker refused.
pub(crate) fn connection_lost(e: &redis::RedisError) -> bool {
    e.is_io_error() || e.is_connection_dropped() || e.is_timeout()
}

/// The broker's clock, in milliseconds (`TIME`): agents' heartbeats are
/// compared with it, not with a machine's own clock.
pub(crate) fn broker_ms(conn: &mut redis::Connection) -> redis::RedisResult<u64> {
    let (s, us): (u64, u64) = redis::cmd("TIME").query(conn)?;
    Ok(s * 1000 + us / 1000)
}

/// The live agents in an `agents` hash at broker time `now`, and their
/// processes in all; fields of agents dead for long are removed.
pub(crate) fn live_agents(
    conn: &mut redis::Connection,
    keys: &Keys,
    now: u64,
) -> redis::RedisResult<(usize, usize)> {
    let all: Vec<(String, String)> = redis::cmd("HGETALL").arg(keys.agents()).query(conn)?;
    let (mut n, mut procs) = (0, 0);
    for (name, v) in all {
        let mut it = v.split(':').map(|x| x.parse::<u64>().unwrap_or(0));
        let (hb, p, lease) = (
            it.next().unwrap_or(0),
            it.next().unwrap_or(0),
            it.next().unwrap_or(0),
        );
        let age = now.saturating_sub(hb);
        if age <= 3 * lease.max(100) {
            n += 1;
            procs += p as usize;
        } else if age > 20 * lease.max(100) {
            let _: redis::RedisResult<()> =
                redis::cmd("HDEL").arg(keys.agents()).arg(&name).query(conn);
        }
    }
    Ok((n, procs))
}

/// How long connecting to the broker (and each command's reply) may take
/// before the call fails with a clear error instead of hanging.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// A checked connection to the broker named by a `redis://`, `rediss://`
/// (TLS: with the `cluster-tls` feature, else an `Io` error at connect)
/// or `redis+unix://` URL.
pub struct Broker {
    conn: redis::Connection,
    url: String,
}

impl std::fmt::Debug for Broker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL may carry a password: never print it.
        f.debug_struct("Broker").finish_non_exhaustive()
    }
}

/// The URL with any password replaced by `***`, for error messages.
pub(crate) fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let auth = &url[s + 3..at];
            let user = auth.split(':').next().unwrap_or("");
            format!("{}{}:***{}", &url[..s + 3], user, &url[at..])
        }
        _ => url.to_owned(),
    }
}

impl Broker {
    /// The connection, for the engine's own commands.
    pub(crate) fn into_connection(self) -> redis::Connection {
        self.conn
    }

    /// Connects to `url` and checks the broker answers `PING`, each step
    /// bounded by [`CONNECT_TIMEOUT`].
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Io`] naming the URL (password hidden) when the URL is
    /// malformed, the broker cannot be reached in time, or it does not
    /// answer `PING`.
    pub fn connect(url: &str) -> Result<Broker> {
        let shown = redact(url);
        let fail = |what: &str, e: redis::RedisError| {
            Error::new(
                ErrorKind::Io,
                format!("cluster broker {shown}: {what}: {e}"),
            )
        };
        #[cfg(feature = "cluster-tls")]
        {
            // rustls needs a process-wide crypto provider; a program that
            // installed its own keeps it.
            let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        }
        let client = redis::Client::open(url).map_err(|e| fail("bad URL", e))?;
        let mut conn = client
            .get_connection_with_timeout(CONNECT_TIMEOUT)
            .map_err(|e| fail("cannot connect", e))?;
        conn.set_read_timeout(Some(CONNECT_TIMEOUT))
            .and_then(|()| conn.set_write_timeout(Some(CONNECT_TIMEOUT)))
            .map_err(|e| fail("cannot set timeouts", e))?;
        let pong: String = redis::cmd("PING")
            .query(&mut conn)
            .map_err(|e| fail("no answer to PING", e))?;
        if pong != "PONG" {
            return Err(Error::new(
                ErrorKind::Protocol,
                format!("cluster broker {shown}: PING answered {pong:.64?}"),
            ));
        }
        Ok(Broker {
            conn,
            url: url.to_owned(),
        })
    }

    /// The URL this broker was reached at, password hidden.
    pub fn url(&self) -> String {
        redact(&self.url)
    }

    /// The number of keys in the broker's database (`DBSIZE`), used to
    /// check that a finished call leaves no keys behind.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Io`] when the broker does not answer in time.
    pub fn dbsize(&mut self) -> Result<u64> {
        redis::cmd("DBSIZE").query(&mut self.conn).map_err(|e| {
            Error::new(
                ErrorKind::Io,
                format!("cluster broker {}: DBSIZE: {e}", self.url()),
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn password_is_hidden() {
        assert_eq!(redact("redis://u:secret@h:1/"), "redis://u:***@h:1/");
        assert_eq!(redact("redis://h:1/"), "redis://h:1/");
    }
}
