//! The unwinder's table of function starts (`.eh_frame_hdr`): how
//! `sys::image` tells the first byte of a function from any other address.
//!
//! Every Linux executable Rust builds carries it (unwind tables are on by
//! default, panic=abort included): a sorted array of (function start, FDE)
//! pairs, each a signed 32-bit offset from the header, written by the
//! linker for the unwinder's binary search
//! (<https://refspecs.linuxfoundation.org/LSB_5.0.0/LSB-Core-generic/LSB-Core-generic/ehframechpt.html>).
//! It is found through the program header `PT_GNU_EH_FRAME` of the object
//! that holds this code (`dl_iterate_phdr(3)`), once per process.

use std::sync::OnceLock;

/// The version and encodings every Linux linker writes: version 1, the
/// `.eh_frame` pointer `pcrel|sdata4`, the count `udata4`, the table
/// `datarel|sdata4`. Anything else is not read.
const HEADER: [u8; 4] = [1, 0x1b, 0x03, 0x3b];

/// The table of function starts of this executable.
pub(crate) struct FunctionStarts {
    /// Where the header is (the table's offsets are from here).
    base: usize,
    /// The table: `count` pairs of little-endian i32.
    table: &'static [u8],
}

impl FunctionStarts {
    fn start(&self, i: usize) -> usize {
        let at = i * 8;
        let off = i32::from_le_bytes(
            self.table[at..at + 4]
                .try_into()
                .expect("4 bytes in an 8-byte entry"),
        );
        self.base.wrapping_add_signed(off as isize)
    }

    /// Whether `addr` is one of the function starts.
    pub(crate) fn binary_search(&self, addr: usize) -> bool {
        let (mut lo, mut hi) = (0, self.table.len() / 8);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            match self.start(mid).cmp(&addr) {
                std::cmp::Ordering::Less => lo = mid + 1,
                std::cmp::Ordering::Greater => hi = mid,
                std::cmp::Ordering::Equal => return true,
            }
        }
        false
    }
}

/// This executable's table of function starts, found once; `None` if it
/// has none or one in another layout.
pub(crate) fn function_starts() -> Option<&'static FunctionStarts> {
    static TABLE: OnceLock<Option<FunctionStarts>> = OnceLock::new();
    TABLE.get_or_init(find).as_ref()
}

fn find() -> Option<FunctionStarts> {
    struct Search {
        probe: usize,
        hdr: Option<(usize, usize)>,
    }
    unsafe extern "C" fn visit(
        info: *mut libc::dl_phdr_info,
        _size: libc::size_t,
        data: *mut libc::c_void,
    ) -> libc::c_int {
        // SAFETY: `data` is the `Search` passed to dl_iterate_phdr below,
        // which calls this on the same thread while it is borrowed there.
        let search = unsafe { &mut *data.cast::<Search>() };
        // SAFETY: dl_iterate_phdr passes a valid dl_phdr_info for the
        // duration of the call.
        let info = unsafe { &*info };
        if info.dlpi_phdr.is_null() {
            return 0;
        }
        // SAFETY: dlpi_phdr points to dlpi_phnum program headers of a
        // loaded object, mapped for its life (this process's executable
        // or a library it loaded).
        let phdrs =
            unsafe { std::slice::from_raw_parts(info.dlpi_phdr, usize::from(info.dlpi_phnum)) };
        let base = info.dlpi_addr as usize;
        let holds_probe = phdrs.iter().any(|p| {
            let start = base.wrapping_add(p.p_vaddr as usize);
            p.p_type == libc::PT_LOAD
                && (start..start.saturating_add(p.p_memsz as usize)).contains(&search.probe)
        });
        if !holds_probe {
            return 0;
        }
        search.hdr = phdrs
            .iter()
            .find(|p| p.p_type == libc::PT_GNU_EH_FRAME)
            .map(|p| (base.wrapping_add(p.p_vaddr as usize), p.p_memsz as usize));
        1
    }
    let mut search = Search {
        probe: find as fn() -> Option<FunctionStarts> as usize,
        hdr: None,
    };
    // SAFETY: `visit` only reads what dl_iterate_phdr passes and writes
    // `search`, which outlives the call.
    unsafe { libc::dl_iterate_phdr(Some(visit), (&raw mut search).cast()) };
    let (base, len) = search.hdr?;
    // SAFETY: PT_GNU_EH_FRAME names `len` bytes of a loaded, read-only
    // segment of this executable, mapped for the life of the process.
    let hdr: &'static [u8] = unsafe { std::slice::from_raw_parts(base as *const u8, len) };
    if hdr.get(..4)? != HEADER {
        return None;
    }
    let count = u32::from_le_bytes(hdr.get(8..12)?.try_into().ok()?) as usize;
    let table = hdr.get(12..12usize.checked_add(count.checked_mul(8)?)?)?;
    Some(FunctionStarts { base, table })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[inline(never)]
    fn some_function(x: u64) -> u64 {
        std::hint::black_box(x).wrapping_mul(3)
    }

    #[test]
    fn function_starts_are_known_and_other_addresses_are_not() {
        let table = function_starts().expect("this test binary has unwind tables");
        let f = some_function as fn(u64) -> u64 as usize;
        assert!(table.binary_search(f));
        assert!(!table.binary_search(f + 1), "inside a function");
        assert!(!table.binary_search(0));
        assert!(!table.binary_search(usize::MAX));
    }
}
