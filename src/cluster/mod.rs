//! The cluster engine (issue 17), behind the `cluster` feature: the same
//! Pool on many machines over Redis Streams. See `README.md` beside this
//! file for the design. This first slice is the broker connection only:
//! nothing of the local engine imports this module.

use std::time::Duration;

use crate::error::{Error, ErrorKind, Result};

/// How long connecting to the broker (and each command's reply) may take
/// before the call fails with a clear error instead of hanging.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// A checked connection to the broker named by a `redis://`, `rediss://`
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
fn redact(url: &str) -> String {
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
