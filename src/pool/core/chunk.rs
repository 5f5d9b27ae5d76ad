//! [`Chunk`]: consecutive items of one job, encoded, as they are queued,
//! sent, and (after a worker's death) sent again.

use crate::error::{Error, ErrorKind, Result};

use crate::pool::frame;

/// Consecutive items of one job, encoded: their postcard arguments back
/// to back, and where each ends (kept here, not sent: postcard values
/// delimit themselves).
pub(crate) struct Chunk {
    pub(crate) job: u64,
    pub(crate) func: u32,
    pub(crate) first: u64,
    pub(crate) count: u32,
    pub(crate) data: Vec<u8>,
    ends: Vec<u32>,
}

impl Chunk {
    pub(crate) fn new(job: u64, func: u32, first: u64) -> Self {
        Self {
            job,
            func,
            first,
            count: 0,
            data: Vec::new(),
            ends: Vec::new(),
        }
    }

    /// Appends one item's encoded arguments.
    #[inline]
    pub(crate) fn push<T: serde::Serialize>(&mut self, args: &T) -> Result<()> {
        let at = self.data.len();
        match frame::append(args, &mut self.data) {
            Ok(()) => {
                self.ends.push(self.data.len() as u32);
                self.count += 1;
                Ok(())
            }
            Err(e) => {
                self.data.truncate(at);
                Err(Error::new(
                    ErrorKind::Encode,
                    format!(
                        "could not encode a task's arguments of type {} (descriptors cannot travel in pool tasks: pass queues, locks and pipe ends in the initializer)",
                        std::any::type_name::<T>()
                    ),
                )
                .with_source(e))
            }
        }
    }

    pub(super) fn push_bytes(&mut self, item: &[u8]) {
        self.data.extend_from_slice(item);
        self.ends.push(self.data.len() as u32);
        self.count += 1;
    }

    /// The items as byte slices.
    pub(super) fn items(&self) -> Vec<&[u8]> {
        let mut start = 0;
        self.ends
            .iter()
            .map(|&end| {
                let item = &self.data[start..end as usize];
                start = end as usize;
                item
            })
            .collect()
    }
}
