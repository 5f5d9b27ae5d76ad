//! A client's way to its manager: the address and key, and this thread's
//! connection to it.

use std::cell::RefCell;
use std::rc::Rc;

use serde::{Deserialize, Serialize};

use crate::connection::{Address, Client};
use crate::error::{Error, ErrorKind, Result};

use super::protocol::{Kind, Reply, Request};
use super::wire::{self, Wire};

/// How to reach a manager's server: its address and key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Link {
    pub(crate) address: Address,
    pub(crate) authkey: Vec<u8>,
}

type ThreadConn = Rc<RefCell<Wire>>;

thread_local! {
    /// This thread's connection to each manager it talks to, made on first
    /// use (also in a child that received a proxy), with the pid it was
    /// made in: a forked child must not use its parent's.
    ///
    /// One connection per thread, as in Python: a thread blocked in a
    /// manager `acquire` or `get` holds up no other thread, the server
    /// knows which thread holds a lock (the connection is the owner), and
    /// when a thread or process ends, its connections close and the
    /// server gives back what they held.
    static CONNECTIONS: RefCell<Vec<(i32, Link, ThreadConn)>> = const { RefCell::new(Vec::new()) };
}

fn gone(link: &Link, e: &Error) -> Error {
    Error::new(
        ErrorKind::Eof,
        format!("the manager at {} is gone: {e}", link.address),
    )
}

impl Link {
    pub(crate) fn connection(&self) -> Result<ThreadConn> {
        let pid = crate::sys::process::cached_pid() as i32;
        let found = CONNECTIONS
            .try_with(|conns| {
                let mut conns = conns.borrow_mut();
                if conns.first().is_some_and(|(owner, _, _)| *owner != pid) {
                    conns.retain(|(owner, _, _)| *owner == pid);
                }
                conns
                    .iter()
                    .find(|(_, l, _)| l == self)
                    .map(|(_, _, c)| c.clone())
            })
            .map_err(|_| {
                Error::new(
                    ErrorKind::Io,
                    "this thread is ending: no manager connection for it any more",
                )
            })?;
        if let Some(c) = found {
            return Ok(c);
        }
        let conn = Client::connect::<()>(&self.address, Some(&self.authkey))?;
        let mut wire = Wire::from_connection(conn)?;
        // The server says when it is ready for requests (see wire.rs).
        if !wire.recv(64, wire::SPIN)?.is_empty() {
            return Err(Error::new(
                ErrorKind::Protocol,
                "the manager did not start with an empty frame",
            ));
        }
        let conn = Rc::new(RefCell::new(wire));
        // (Dropped with the thread if its list is gone meanwhile.)
        let _ = CONNECTIONS.try_with(|c| c.borrow_mut().push((pid, self.clone(), conn.clone())));
        Ok(conn)
    }

    pub(crate) fn forget(&self) {
        // During thread teardown the list may already be gone: nothing to do.
        let _ = CONNECTIONS.try_with(|c| c.borrow_mut().retain(|(_, l, _)| l != self));
    }

    /// One request, one reply. A reply that reports an error becomes an
    /// [`ErrorKind::Remote`] error.
    pub(crate) fn call(&self, request: &Request) -> Result<Reply> {
        let bytes = postcard::to_allocvec(request).map_err(|e| {
            Error::new(ErrorKind::Encode, "could not encode a manager request").with_source(e)
        })?;
        let conn = self.connection().map_err(|e| match e.kind() {
            ErrorKind::Io => gone(self, &e),
            _ => e,
        })?;
        let answer = {
            // Busy only if this very thread is inside a call already (a
            // guard dropped while unwinding out of one): refuse, not panic.
            let Ok(mut wire) = conn.try_borrow_mut() else {
                return Err(Error::new(
                    ErrorKind::Io,
                    "this thread's manager connection is in use by an interrupted call",
                ));
            };
            wire.send(&bytes)
                .and_then(|()| wire.recv(wire::MAX_REPLY, wire::SPIN))
        };
        let answer = answer.map_err(|e| {
            self.forget();
            gone(self, &e)
        })?;
        match postcard::from_bytes::<Reply>(&answer) {
            Ok(Reply::Error(e)) => Err(e.into_error()),
            Ok(reply) => Ok(reply),
            Err(e) => Err(
                Error::new(ErrorKind::Decode, "could not decode the manager's reply")
                    .with_source(e),
            ),
        }
    }

    pub(crate) fn create(&self, kind: Kind, init: Vec<(Vec<u8>, Vec<u8>)>) -> Result<u64> {
        match self.call(&Request::Create { kind, init })? {
            Reply::Created(id) => Ok(id),
            other => Err(unexpected(&other)),
        }
    }
}

pub(crate) fn unexpected(reply: &Reply) -> Error {
    Error::new(
        ErrorKind::Protocol,
        format!("unexpected reply from the manager: {reply:?}"),
    )
}
