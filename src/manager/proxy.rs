//! Typed proxies: the client side of each kind of shared object.

use std::fmt;
use std::marker::PhantomData;
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::link::{Link, unexpected};
use super::protocol::{Op, Reply, Request};
use super::server::SharedObject;
use crate::codec;
use crate::error::{Error, ErrorKind, Result};

/// How long a call of a queue or lock proxy may wait, as the form the
/// caller chose.
#[derive(Clone, Copy)]
pub(crate) enum Wait {
    /// The `try_` forms.
    No,
    /// The blocking form (`None`) and the `_timeout` and `_deadline`
    /// forms (a timeout too long to represent is `None`: no limit).
    Until(Option<Instant>),
}

impl Wait {
    pub(crate) fn timeout(timeout: Duration) -> Self {
        Wait::Until(crate::time::deadline_after(timeout))
    }

    /// What the server is told: `None` waits as long as it takes,
    /// `Some(ZERO)` does not wait. A deadline is turned into what is left
    /// of it just before the request goes out.
    pub(crate) fn for_server(self) -> Option<Duration> {
        match self {
            Wait::No => Some(Duration::ZERO),
            Wait::Until(deadline) => crate::time::remaining(deadline),
        }
    }
}

/// Encodes a key, value or argument for the manager: plain postcard (no
/// descriptor table, which the manager could not keep anyway: an `Fd`
/// inside fails to encode).
pub(crate) fn enc<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>> {
    codec::encode_plain(value, codec::NoFds::Manager)
}

/// Decodes what the manager holds as a `T`, strictly: bytes left over mean
/// it holds another type.
pub(crate) fn dec<T: DeserializeOwned>(bytes: &[u8]) -> Result<T> {
    let fail = |e: Option<postcard::Error>| {
        let err = Error::new(
            ErrorKind::Decode,
            format!(
                "the manager holds a value that is not a {}",
                std::any::type_name::<T>()
            ),
        );
        match e {
            Some(e) => err.with_source(e),
            None => err,
        }
    };
    match postcard::take_from_bytes::<T>(bytes) {
        Ok((value, [])) => Ok(value),
        Ok(_) => Err(fail(None)),
        Err(e) => Err(fail(Some(e))),
    }
}

/// What every proxy holds: the server and the object's id.
#[derive(Clone, Serialize, Deserialize)]
pub(crate) struct Handle {
    pub(crate) link: Link,
    pub(crate) id: u64,
}

impl Handle {
    pub(crate) fn op(&self, op: Op) -> Result<Reply> {
        self.link.call(&Request::Op { id: self.id, op })
    }

    /// Read-modify-write of the dict entry `key`: read it with its
    /// version, compute, and write only if the version is unchanged (else
    /// again, on the newer value).
    fn modify<V: Serialize + DeserializeOwned>(
        &self,
        key: Vec<u8>,
        mut f: impl FnMut(Option<V>) -> V,
    ) -> Result<V> {
        let mut batch = None;
        loop {
            // The first read is a round trip of its own; after a lost race,
            // the value read back with the failed compare-and-set is used.
            let reply = match batch.take() {
                Some(r) => r,
                None => self.op(Op::GetVersioned(key.clone()))?,
            };
            let (current, version) = match reply {
                Reply::Versioned(v, version) => (v.map(|b| dec::<V>(&b)).transpose()?, version),
                other => return Err(unexpected(&other)),
            };
            let new = f(current);
            let value = enc(&new)?;
            // Set if unchanged, and read back in the same round trip, so a
            // lost race costs one round trip, not two.
            let replies = self.link.call(&Request::Batch(vec![
                Request::Op {
                    id: self.id,
                    op: Op::CompareAndSet {
                        key: key.clone(),
                        version,
                        value,
                    },
                },
                Request::Op {
                    id: self.id,
                    op: Op::GetVersioned(key.clone()),
                },
            ]))?;
            let Reply::Replies(mut replies) = replies else {
                return Err(unexpected(&replies));
            };
            if replies.len() != 2 {
                return Err(unexpected(&Reply::Replies(replies)));
            }
            let reread = replies.pop().expect("two replies");
            match replies.pop().expect("two replies") {
                Reply::Bool(true) => return Ok(new),
                Reply::Bool(false) => batch = Some(reread),
                Reply::Error(e) => return Err(e.into_error()),
                other => return Err(unexpected(&other)),
            }
        }
    }
}

/// Constructor, `Clone`, `Debug` and serde for a proxy struct of
/// `handle: Handle` and `_types: PhantomData<..>`.
macro_rules! proxy_common {
    ($name:ident) => {
        proxy_common!($name<>);
    };
    ($name:ident < $($t:ident),* >) => {
        impl<$($t),*> $name<$($t),*> {
            pub(crate) fn new(link: Link, id: u64) -> Self {
                Self { handle: Handle { link, id }, _types: PhantomData }
            }
        }
        impl<$($t),*> Clone for $name<$($t),*> {
            fn clone(&self) -> Self {
                Self { handle: self.handle.clone(), _types: PhantomData }
            }
        }
        impl<$($t),*> fmt::Debug for $name<$($t),*> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_struct(stringify!($name))
                    .field("manager", &self.handle.link.address)
                    .field("id", &self.handle.id)
                    .finish()
            }
        }
        impl<$($t),*> Serialize for $name<$($t),*> {
            fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
                self.handle.serialize(s)
            }
        }
        impl<'de, $($t),*> Deserialize<'de> for $name<$($t),*> {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
                Ok(Self { handle: Handle::deserialize(d)?, _types: PhantomData })
            }
        }
    };
}

/// A shared dict (Python's `manager.dict()`), keys `K` and values `V`.
///
/// Every method is one round trip to the manager and fails with
/// [`ErrorKind::Eof`] if the manager is gone.
pub struct DictProxy<K, V> {
    handle: Handle,
    _types: PhantomData<fn(K) -> V>,
}
pub(crate) use proxy_common;
proxy_common!(DictProxy<K, V>);

impl<K, V> DictProxy<K, V>
where
    K: Serialize + DeserializeOwned,
    V: Serialize + DeserializeOwned,
{
    /// The value for `key`, if any (Python's `d.get(k)`).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Eof`] if the manager is gone; [`ErrorKind::Decode`] if
    /// what it holds is not of the proxy's types; [`ErrorKind::Encode`] if an
    /// argument cannot be encoded.
    pub fn get(&self, key: &K) -> Result<Option<V>> {
        match self.handle.op(Op::Get(enc(key)?))? {
            Reply::Value(v) => v.map(|b| dec(&b)).transpose(),
            other => Err(unexpected(&other)),
        }
    }

    /// Sets `key` to `value` (Python's `d[k] = v`).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Eof`] if the manager is gone; [`ErrorKind::Decode`] if
    /// what it holds is not of the proxy's types; [`ErrorKind::Encode`] if an
    /// argument cannot be encoded.
    pub fn insert(&self, key: K, value: V) -> Result<()> {
        self.handle
            .op(Op::Insert(enc(&key)?, enc(&value)?))
            .map(drop)
    }

    /// Removes `key`, returning its value (Python's `d.pop(k, None)`).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Eof`] if the manager is gone; [`ErrorKind::Decode`] if
    /// what it holds is not of the proxy's types; [`ErrorKind::Encode`] if an
    /// argument cannot be encoded.
    pub fn remove(&self, key: &K) -> Result<Option<V>> {
        match self.handle.op(Op::Remove(enc(key)?))? {
            Reply::Value(v) => v.map(|b| dec(&b)).transpose(),
            other => Err(unexpected(&other)),
        }
    }

    /// Whether `key` is present (Python's `k in d`).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Eof`] if the manager is gone; [`ErrorKind::Decode`] if
    /// what it holds is not of the proxy's types; [`ErrorKind::Encode`] if an
    /// argument cannot be encoded.
    pub fn contains(&self, key: &K) -> Result<bool> {
        match self.handle.op(Op::Contains(enc(key)?))? {
            Reply::Bool(b) => Ok(b),
            other => Err(unexpected(&other)),
        }
    }

    /// How many entries there are.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Eof`] if the manager is gone; [`ErrorKind::Decode`] if
    /// what it holds is not of the proxy's types.
    pub fn len(&self) -> Result<usize> {
        match self.handle.op(Op::Len)? {
            Reply::Len(n) => Ok(n as usize),
            other => Err(unexpected(&other)),
        }
    }

    /// Whether the dict is empty.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Eof`] if the manager is gone; [`ErrorKind::Decode`] if
    /// what it holds is not of the proxy's types.
    pub fn is_empty(&self) -> Result<bool> {
        self.len().map(|n| n == 0)
    }

    /// The keys, in insertion order.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Eof`] if the manager is gone; [`ErrorKind::Decode`] if
    /// what it holds is not of the proxy's types; [`ErrorKind::Encode`] if an
    /// argument cannot be encoded.
    pub fn keys(&self) -> Result<Vec<K>> {
        match self.handle.op(Op::Keys)? {
            Reply::Items(items) => items.iter().map(|b| dec(b)).collect(),
            other => Err(unexpected(&other)),
        }
    }

    /// The values, in insertion order.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Eof`] if the manager is gone; [`ErrorKind::Decode`] if
    /// what it holds is not of the proxy's types; [`ErrorKind::Encode`] if an
    /// argument cannot be encoded.
    pub fn values(&self) -> Result<Vec<V>> {
        match self.handle.op(Op::Values)? {
            Reply::Items(items) => items.iter().map(|b| dec(b)).collect(),
            other => Err(unexpected(&other)),
        }
    }

    /// The entries, in insertion order: a snapshot.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Eof`] if the manager is gone; [`ErrorKind::Decode`] if
    /// what it holds is not of the proxy's types.
    pub fn items(&self) -> Result<Vec<(K, V)>> {
        match self.handle.op(Op::Items)? {
            Reply::Pairs(pairs) => pairs.iter().map(|(k, v)| Ok((dec(k)?, dec(v)?))).collect(),
            other => Err(unexpected(&other)),
        }
    }

    /// Sets many entries in one round trip (Python's `d.update(...)`).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Eof`] if the manager is gone; [`ErrorKind::Decode`] if
    /// what it holds is not of the proxy's types; [`ErrorKind::Encode`] if an
    /// argument cannot be encoded.
    pub fn update(&self, entries: impl IntoIterator<Item = (K, V)>) -> Result<()> {
        let pairs = entries
            .into_iter()
            .map(|(k, v)| Ok((enc(&k)?, enc(&v)?)))
            .collect::<Result<_>>()?;
        self.handle.op(Op::Update(pairs)).map(drop)
    }

    /// Looks up many keys in one round trip.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Eof`] if the manager is gone; [`ErrorKind::Decode`] if
    /// what it holds is not of the proxy's types; [`ErrorKind::Encode`] if an
    /// argument cannot be encoded.
    pub fn get_many<'a>(&self, keys: impl IntoIterator<Item = &'a K>) -> Result<Vec<Option<V>>>
    where
        K: 'a,
    {
        let requests = keys
            .into_iter()
            .map(|k| {
                Ok(Request::Op {
                    id: self.handle.id,
                    op: Op::Get(enc(k)?),
                })
            })
            .collect::<Result<_>>()?;
        match self.handle.link.call(&Request::Batch(requests))? {
            Reply::Replies(replies) => replies
                .into_iter()
                .map(|r| match r {
                    Reply::Value(v) => v.map(|b| dec(&b)).transpose(),
                    other => Err(unexpected(&other)),
                })
                .collect(),
            other => Err(unexpected(&other)),
        }
    }

    /// Removes every entry.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Eof`] if the manager is gone; [`ErrorKind::Decode`] if
    /// what it holds is not of the proxy's types.
    pub fn clear(&self) -> Result<()> {
        self.handle.op(Op::Clear).map(drop)
    }

    /// Reads, changes and writes one entry atomically: `f` gets the current
    /// value (or `None`) and returns the new one. If another process
    /// changed the entry meanwhile, `f` runs again on the newer value, so
    /// it must not have side effects. Returns the value written.
    ///
    /// ```
    /// # multiproc::init();
    /// let m = multiproc::Manager::new()?;
    /// let counts = m.dict::<String, u64>()?;
    /// counts.modify("hits".to_string(), |n| n.unwrap_or(0) + 1)?;
    /// assert_eq!(counts.get(&"hits".to_string())?, Some(1));
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Eof`] if the manager is gone; [`ErrorKind::Decode`] if
    /// what it holds is not of the proxy's types; [`ErrorKind::Encode`] if an
    /// argument cannot be encoded.
    pub fn modify(&self, key: K, f: impl FnMut(Option<V>) -> V) -> Result<V> {
        self.handle.modify(enc(&key)?, f)
    }
}

/// A shared list (Python's `manager.list()`).
///
/// Every method is one round trip to the manager and fails with
/// [`ErrorKind::Eof`] if the manager is gone.
pub struct ListProxy<T> {
    handle: Handle,
    _types: PhantomData<fn(T) -> T>,
}
proxy_common!(ListProxy<T>);

impl<T: Serialize + DeserializeOwned> ListProxy<T> {
    /// Appends a value (Python's `append`).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Eof`] if the manager is gone; [`ErrorKind::Decode`] if
    /// what it holds is not of the proxy's types; [`ErrorKind::Encode`] if an
    /// argument cannot be encoded.
    pub fn push(&self, value: T) -> Result<()> {
        self.handle.op(Op::Push(enc(&value)?)).map(drop)
    }

    /// Removes and returns the last value; `None` if the list is empty.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Eof`] if the manager is gone; [`ErrorKind::Decode`] if
    /// what it holds is not of the proxy's types.
    pub fn pop(&self) -> Result<Option<T>> {
        match self.handle.op(Op::Pop)? {
            Reply::Value(v) => v.map(|b| dec(&b)).transpose(),
            other => Err(unexpected(&other)),
        }
    }

    /// The value at `index`; `None` if out of range.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Eof`] if the manager is gone; [`ErrorKind::Decode`] if
    /// what it holds is not of the proxy's types.
    pub fn get(&self, index: usize) -> Result<Option<T>> {
        match self.handle.op(Op::Index(index as u64))? {
            Reply::Value(v) => v.map(|b| dec(&b)).transpose(),
            other => Err(unexpected(&other)),
        }
    }

    /// Replaces the value at `index` (Python's `l[i] = v`).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Remote`] if `index` is out of range.
    pub fn set(&self, index: usize, value: T) -> Result<()> {
        self.handle
            .op(Op::SetIndex(index as u64, enc(&value)?))
            .map(drop)
    }

    /// How many values there are.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Eof`] if the manager is gone; [`ErrorKind::Decode`] if
    /// what it holds is not of the proxy's types.
    pub fn len(&self) -> Result<usize> {
        match self.handle.op(Op::Len)? {
            Reply::Len(n) => Ok(n as usize),
            other => Err(unexpected(&other)),
        }
    }

    /// Whether the list is empty.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Eof`] if the manager is gone; [`ErrorKind::Decode`] if
    /// what it holds is not of the proxy's types.
    pub fn is_empty(&self) -> Result<bool> {
        self.len().map(|n| n == 0)
    }

    /// Appends many values in one round trip.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Eof`] if the manager is gone; [`ErrorKind::Decode`] if
    /// what it holds is not of the proxy's types; [`ErrorKind::Encode`] if an
    /// argument cannot be encoded.
    pub fn extend(&self, values: impl IntoIterator<Item = T>) -> Result<()> {
        let items = values.into_iter().map(|v| enc(&v)).collect::<Result<_>>()?;
        self.handle.op(Op::Extend(items)).map(drop)
    }

    /// Reverses the list in place.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Eof`] if the manager is gone; [`ErrorKind::Decode`] if
    /// what it holds is not of the proxy's types.
    pub fn reverse(&self) -> Result<()> {
        self.handle.op(Op::Reverse).map(drop)
    }

    /// Removes every value.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Eof`] if the manager is gone; [`ErrorKind::Decode`] if
    /// what it holds is not of the proxy's types.
    pub fn clear(&self) -> Result<()> {
        self.handle.op(Op::Clear).map(drop)
    }

    fn snapshot(&self) -> Result<(u64, Vec<T>)> {
        match self.handle.op(Op::Snapshot)? {
            Reply::Snapshot(version, items) => Ok((
                version,
                items.iter().map(|b| dec(b)).collect::<Result<_>>()?,
            )),
            other => Err(unexpected(&other)),
        }
    }

    /// The values now: a snapshot, for iterating.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Eof`] if the manager is gone; [`ErrorKind::Decode`] if
    /// what it holds is not of the proxy's types.
    pub fn to_vec(&self) -> Result<Vec<T>> {
        self.snapshot().map(|(_, v)| v)
    }

    /// Iterates over a snapshot of the values, taken in one round trip
    /// (Python's `for x in l`); later changes do not show.
    ///
    /// ```
    /// # multiproc::init();
    /// let m = multiproc::Manager::new()?;
    /// let l = m.list_from(1..=3)?;
    /// let total: i32 = l.iter()?.sum();
    /// assert_eq!(total, 6);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Eof`] if the manager is gone; [`ErrorKind::Decode`] if
    /// what it holds is not of the proxy's types.
    pub fn iter(&self) -> Result<std::vec::IntoIter<T>> {
        self.to_vec().map(Vec::into_iter)
    }

    /// Sorts the list. Sorting happens here, on a snapshot, and is written
    /// back only if nobody changed the list meanwhile (else it starts over),
    /// so the result is as if the sort were atomic.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Eof`] if the manager is gone; [`ErrorKind::Decode`] if
    /// what it holds is not of the proxy's types.
    pub fn sort(&self) -> Result<()>
    where
        T: Ord,
    {
        loop {
            let (version, mut items) = self.snapshot()?;
            items.sort();
            let encoded = items.iter().map(|v| enc(v)).collect::<Result<_>>()?;
            match self.handle.op(Op::ReplaceIfVersion {
                version,
                items: encoded,
            })? {
                Reply::Bool(true) => return Ok(()),
                Reply::Bool(false) => continue,
                other => return Err(unexpected(&other)),
            }
        }
    }
}

/// A shared set.
///
/// Every method is one round trip to the manager and fails with
/// [`ErrorKind::Eof`] if the manager is gone.
pub struct SetProxy<T> {
    handle: Handle,
    _types: PhantomData<fn(T) -> T>,
}
proxy_common!(SetProxy<T>);

impl<T: Serialize + DeserializeOwned> SetProxy<T> {
    /// Adds a value; `false` if it was already there.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Eof`] if the manager is gone; [`ErrorKind::Decode`] if
    /// what it holds is not of the proxy's types; [`ErrorKind::Encode`] if an
    /// argument cannot be encoded.
    pub fn add(&self, value: T) -> Result<bool> {
        match self.handle.op(Op::Add(enc(&value)?))? {
            Reply::Bool(b) => Ok(b),
            other => Err(unexpected(&other)),
        }
    }

    /// Removes a value; `false` if it was not there (Python's `discard`).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Eof`] if the manager is gone; [`ErrorKind::Decode`] if
    /// what it holds is not of the proxy's types; [`ErrorKind::Encode`] if an
    /// argument cannot be encoded.
    pub fn remove(&self, value: &T) -> Result<bool> {
        match self.handle.op(Op::Discard(enc(value)?))? {
            Reply::Bool(b) => Ok(b),
            other => Err(unexpected(&other)),
        }
    }

    /// Whether the value is there.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Eof`] if the manager is gone; [`ErrorKind::Decode`] if
    /// what it holds is not of the proxy's types; [`ErrorKind::Encode`] if an
    /// argument cannot be encoded.
    pub fn contains(&self, value: &T) -> Result<bool> {
        match self.handle.op(Op::Contains(enc(value)?))? {
            Reply::Bool(b) => Ok(b),
            other => Err(unexpected(&other)),
        }
    }

    /// How many values there are.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Eof`] if the manager is gone; [`ErrorKind::Decode`] if
    /// what it holds is not of the proxy's types.
    pub fn len(&self) -> Result<usize> {
        match self.handle.op(Op::Len)? {
            Reply::Len(n) => Ok(n as usize),
            other => Err(unexpected(&other)),
        }
    }

    /// Whether the set is empty.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Eof`] if the manager is gone; [`ErrorKind::Decode`] if
    /// what it holds is not of the proxy's types.
    pub fn is_empty(&self) -> Result<bool> {
        self.len().map(|n| n == 0)
    }

    /// The values now, in insertion order: a snapshot.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Eof`] if the manager is gone; [`ErrorKind::Decode`] if
    /// what it holds is not of the proxy's types.
    pub fn to_vec(&self) -> Result<Vec<T>> {
        match self.handle.op(Op::Snapshot)? {
            Reply::Snapshot(_, items) => items.iter().map(|b| dec(b)).collect(),
            other => Err(unexpected(&other)),
        }
    }

    /// Removes every value.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Eof`] if the manager is gone; [`ErrorKind::Decode`] if
    /// what it holds is not of the proxy's types.
    pub fn clear(&self) -> Result<()> {
        self.handle.op(Op::Clear).map(drop)
    }
}

/// A namespace: named fields of any serde type (Python's
/// `manager.Namespace()`, with `ns.x = 3` written `ns.set("x", 3)`).
#[derive(Clone)]
pub struct Namespace {
    handle: Handle,
}

impl fmt::Debug for Namespace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Namespace")
            .field("id", &self.handle.id)
            .finish()
    }
}

impl Serialize for Namespace {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        self.handle.serialize(s)
    }
}

impl<'de> Deserialize<'de> for Namespace {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        Ok(Self {
            handle: Handle::deserialize(d)?,
        })
    }
}

impl Namespace {
    pub(crate) fn new(link: Link, id: u64) -> Self {
        Self {
            handle: Handle { link, id },
        }
    }

    /// Sets field `name`.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Eof`] if the manager is gone; [`ErrorKind::Decode`] if
    /// what it holds is not of the proxy's types; [`ErrorKind::Encode`] if an
    /// argument cannot be encoded.
    pub fn set<V: Serialize>(&self, name: &str, value: V) -> Result<()> {
        self.handle
            .op(Op::Insert(enc(name)?, enc(&value)?))
            .map(drop)
    }

    /// Field `name`, if set; [`ErrorKind::Decode`] if it holds another type.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Eof`] if the manager is gone; [`ErrorKind::Decode`] if
    /// what it holds is not of the proxy's types; [`ErrorKind::Encode`] if an
    /// argument cannot be encoded.
    pub fn get<V: DeserializeOwned>(&self, name: &str) -> Result<Option<V>> {
        match self.handle.op(Op::Get(enc(name)?))? {
            Reply::Value(v) => v.map(|b| dec(&b)).transpose(),
            other => Err(unexpected(&other)),
        }
    }

    /// Removes field `name`; whether it was set.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Eof`] if the manager is gone; [`ErrorKind::Decode`] if
    /// what it holds is not of the proxy's types; [`ErrorKind::Encode`] if an
    /// argument cannot be encoded.
    pub fn remove(&self, name: &str) -> Result<bool> {
        match self.handle.op(Op::Remove(enc(name)?))? {
            Reply::Value(v) => Ok(v.is_some()),
            other => Err(unexpected(&other)),
        }
    }

    /// The names of the fields that are set.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Eof`] if the manager is gone; [`ErrorKind::Decode`] if
    /// what it holds is not of the proxy's types; [`ErrorKind::Encode`] if an
    /// argument cannot be encoded.
    pub fn names(&self) -> Result<Vec<String>> {
        match self.handle.op(Op::Keys)? {
            Reply::Items(items) => items.iter().map(|b| dec(b)).collect(),
            other => Err(unexpected(&other)),
        }
    }
}

/// A proxy for an object of a registered type ([`SharedObject`]), whose
/// methods run in the manager's process.
pub struct ObjectProxy<T> {
    handle: Handle,
    _types: PhantomData<fn(T) -> T>,
}
proxy_common!(ObjectProxy<T>);

impl<T: SharedObject> ObjectProxy<T> {
    /// Runs one operation on the object, in the manager, and returns its
    /// response.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Remote`] if the method panicked (the object and the
    /// server go on); [`ErrorKind::Eof`] if the manager is gone.
    pub fn call(&self, request: T::Request) -> Result<T::Response> {
        match self.handle.op(Op::Call(enc(&request)?))? {
            Reply::Value(Some(b)) => dec(&b),
            other => Err(unexpected(&other)),
        }
    }
}

/// A shared value (Python's `manager.Value(typecode, value)`): one value of
/// any serde type, read and written whole.
pub struct ValueProxy<T> {
    handle: Handle,
    _types: PhantomData<fn(T) -> T>,
}
proxy_common!(ValueProxy<T>);

impl<T: Serialize + DeserializeOwned> ValueProxy<T> {
    /// The value now (Python's `v.value`).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Decode`] if it holds another type; [`ErrorKind::Eof`] if
    /// the manager is gone.
    pub fn get(&self) -> Result<T> {
        match self.handle.op(Op::Get(Vec::new()))? {
            Reply::Value(Some(b)) => dec(&b),
            other => Err(unexpected(&other)),
        }
    }

    /// Replaces the value (Python's `v.value = x`).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Encode`] if it cannot be encoded; [`ErrorKind::Eof`] if
    /// the manager is gone.
    pub fn set(&self, value: T) -> Result<()> {
        self.handle
            .op(Op::Insert(Vec::new(), enc(&value)?))
            .map(drop)
    }

    /// Reads, changes and writes the value atomically (what Python needs
    /// `get_lock()` for): `f` may run more than once, on the newest value,
    /// so it must not have side effects. Returns the value written.
    ///
    /// # Errors
    ///
    /// As [`get`](Self::get) and [`set`](Self::set).
    pub fn modify(&self, mut f: impl FnMut(T) -> T) -> Result<T> {
        self.handle.modify(Vec::new(), |v: Option<T>| {
            f(v.expect("a manager Value always holds a value"))
        })
    }
}
