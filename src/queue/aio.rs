//! [`Queue::get_async`] and [`Queue::put_async`] (feature `async`).

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{GetError, PutError, Queue};
use crate::aio::wait_slice;

impl<T: Serialize + DeserializeOwned> Queue<T> {
    /// Takes the oldest message, awaiting one while the queue is empty: the
    /// `async` form of [`get`](Queue::get), for any runtime (feature
    /// `async`).
    ///
    /// The message is taken on the awaiting task, when the future is
    /// polled; only the wait for one runs on a pool thread of the
    /// [`blocking`](https://docs.rs/blocking) crate, 50 ms at a time.
    ///
    /// **Cancel-safe**: a future dropped before it returned took nothing
    /// (the message stays for the next get), and its pool thread is free
    /// again within 50 ms. Put a time limit on it with the runtime's own
    /// timeout (`tokio::time::timeout`, `smol::future::or` with a timer).
    ///
    /// # Errors
    ///
    /// As [`get`](Queue::get): [`GetError::Closed`] once the queue is shut
    /// down and empty, [`GetError::Failed`] if the message does not decode.
    pub async fn get_async(&self) -> Result<T, GetError> {
        loop {
            match self.try_get() {
                Err(GetError::Empty) => {}
                other => return other,
            }
            let ring = self.ring.clone();
            wait_slice(move |deadline| ring.wait_ready(true, deadline)).await;
        }
    }

    /// Puts `value`, awaiting room while a bounded queue is full: the
    /// `async` form of [`put`](Queue::put), for any runtime (feature
    /// `async`). An unbounded queue never waits.
    ///
    /// The value is put on the awaiting task, when the future is polled;
    /// only the wait for room runs on a pool thread, 50 ms at a time.
    ///
    /// **Cancel-safe**: a future dropped before it returned put nothing
    /// (the value is dropped with it), and its pool thread is free again
    /// within 50 ms.
    ///
    /// # Errors
    ///
    /// As [`put`](Queue::put) (the value is handed back):
    /// [`PutError::Closed`], [`PutError::Failed`].
    pub async fn put_async(&self, value: T) -> Result<(), PutError<T>> {
        let mut value = value;
        loop {
            match self.try_put(value) {
                Err(PutError::Full(v)) => value = v,
                other => return other,
            }
            let ring = self.ring.clone();
            wait_slice(move |deadline| ring.wait_ready(false, deadline)).await;
        }
    }
}
