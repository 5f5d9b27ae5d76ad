//! One log record as a child sends it to its parent: one sequenced packet,
//! at most [`MAX_PACKET`] bytes, encoded by the child and decoded by the
//! parent's collector. The decoder borrows from the packet it is given and
//! allocates nothing, so a hostile packet costs at most the bytes that
//! arrived.
//!
//! ```text
//! 0      magic 0xA7
//! 1      level (1 = error .. 5 = trace)
//! 2..6   pid (u32, little-endian)
//! 6..10  line (u32, little-endian; u32::MAX = none)
//! 10     name length (u8)
//! 11..13 target length (u16, little-endian)
//! 13..15 module path length (u16; 0xFFFF = none)
//! 15..17 file length (u16; 0xFFFF = none)
//! 17..   name, target, module path, file, then the message (the rest)
//! ```

use std::fmt::Write as _;

use log::{Level, Record};

/// The largest packet a child sends and the parent accepts.
pub(crate) const MAX_PACKET: usize = 16 * 1024;
/// The most bytes of a target, module path or file name that are sent.
const MAX_FIELD: usize = 1024;
const MAGIC: u8 = 0xA7;
const HEADER: usize = 17;
const NONE16: u16 = u16::MAX;
/// Ends a message that did not fit.
pub(crate) const TRUNCATED: &str = " …[truncated]";

/// A decoded record, borrowing from the packet.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Packet<'a> {
    pub(crate) level: Level,
    pub(crate) pid: u32,
    pub(crate) name: &'a str,
    pub(crate) target: &'a str,
    pub(crate) module_path: Option<&'a str>,
    pub(crate) file: Option<&'a str>,
    pub(crate) line: Option<u32>,
    pub(crate) message: &'a str,
}

fn level_code(level: Level) -> u8 {
    level as usize as u8
}

fn level_of(code: u8) -> Option<Level> {
    Level::iter().find(|l| level_code(*l) == code)
}

/// The longest prefix of `s` of at most `max` bytes that ends on a
/// character boundary.
fn clip(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Writes into a buffer, never past [`MAX_PACKET`] less room for the
/// truncation marker; remembers whether something was cut.
struct Bounded<'a> {
    buf: &'a mut Vec<u8>,
    limit: usize,
    cut: bool,
}

impl std::fmt::Write for Bounded<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        if self.cut {
            return Ok(());
        }
        let room = self.limit.saturating_sub(self.buf.len());
        let part = clip(s, room);
        self.buf.extend_from_slice(part.as_bytes());
        if part.len() < s.len() {
            self.cut = true;
        }
        Ok(())
    }
}

/// Encodes `record`, from process `name` with `pid`, into `buf` (cleared
/// first). The message is cut at [`MAX_PACKET`] with [`TRUNCATED`].
pub(crate) fn encode(buf: &mut Vec<u8>, record: &Record<'_>, name: &str, pid: u32) {
    buf.clear();
    let name = clip(name, u8::MAX as usize);
    let target = clip(record.target(), MAX_FIELD);
    let module = record.module_path().map(|m| clip(m, MAX_FIELD));
    let file = record.file().map(|f| clip(f, MAX_FIELD));
    let len16 = |s: Option<&str>| s.map_or(NONE16, |s| s.len() as u16);
    buf.push(MAGIC);
    buf.push(level_code(record.level()));
    buf.extend_from_slice(&pid.to_le_bytes());
    buf.extend_from_slice(&record.line().unwrap_or(u32::MAX).to_le_bytes());
    buf.push(name.len() as u8);
    buf.extend_from_slice(&(target.len() as u16).to_le_bytes());
    buf.extend_from_slice(&len16(module).to_le_bytes());
    buf.extend_from_slice(&len16(file).to_le_bytes());
    for s in [Some(name), Some(target), module, file]
        .into_iter()
        .flatten()
    {
        buf.extend_from_slice(s.as_bytes());
    }
    let limit = MAX_PACKET - TRUNCATED.len();
    let mut w = Bounded {
        buf,
        limit,
        cut: false,
    };
    // A Display impl that fails leaves what it wrote so far.
    let _ = write!(w, "{}", record.args());
    if w.cut {
        w.buf.extend_from_slice(TRUNCATED.as_bytes());
    }
}

/// Decodes one packet; `None` for anything malformed (short, too long,
/// lengths past the end, bad UTF-8, unknown level). Allocates nothing.
pub(crate) fn decode(p: &[u8]) -> Option<Packet<'_>> {
    if p.len() < HEADER || p.len() > MAX_PACKET || p[0] != MAGIC {
        return None;
    }
    let u16_at = |i: usize| u16::from_le_bytes([p[i], p[i + 1]]);
    let u32_at = |i: usize| u32::from_le_bytes([p[i], p[i + 1], p[i + 2], p[i + 3]]);
    let level = level_of(p[1])?;
    let pid = u32_at(2);
    let line = Some(u32_at(6)).filter(|l| *l != u32::MAX);
    let mut rest = &p[HEADER..];
    let mut take = |len: usize| -> Option<&str> {
        if len > rest.len() {
            return None;
        }
        let (field, after) = rest.split_at(len);
        rest = after;
        std::str::from_utf8(field).ok()
    };
    let name = take(usize::from(p[10]))?;
    let target = take(usize::from(u16_at(11)))?;
    let mut optional = |len: u16| -> Option<Option<&str>> {
        if len == NONE16 {
            Some(None)
        } else {
            take(usize::from(len)).map(Some)
        }
    };
    let module_path = optional(u16_at(13))?;
    let file = optional(u16_at(15))?;
    let message = std::str::from_utf8(rest).ok()?;
    Some(Packet {
        level,
        pid,
        name,
        target,
        module_path,
        file,
        line,
        message,
    })
}

/// For `crate::fuzzing`: decodes `data` as a packet, and re-encodes what
/// decoded, which must decode to the same record.
#[cfg_attr(not(any(test, feature = "fuzzing")), allow(dead_code))]
pub(crate) fn fuzz(data: &[u8]) {
    if let Some(p) = decode(data) {
        let args = format_args!("{}", p.message);
        let record = Record::builder()
            .level(p.level)
            .target(p.target)
            .module_path(p.module_path)
            .file(p.file)
            .line(p.line)
            .args(args)
            .build();
        let mut buf = Vec::new();
        encode(&mut buf, &record, p.name, p.pid);
        let again = decode(&buf).expect("an encoded record decodes");
        assert_eq!(again.message, p.message);
        assert_eq!(again.target, p.target);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record_bytes(message: &str) -> Vec<u8> {
        let mut buf = Vec::new();
        encode(
            &mut buf,
            &Record::builder()
                .level(Level::Warn)
                .target("app::db")
                .module_path(Some("app::db"))
                .file(Some("src/db.rs"))
                .line(Some(42))
                .args(format_args!("{message}"))
                .build(),
            "PoolWorker-3",
            123,
        );
        buf
    }

    #[test]
    fn a_record_round_trips() {
        let buf = record_bytes("connected");
        let p = decode(&buf).expect("decodes");
        assert_eq!(
            p,
            Packet {
                level: Level::Warn,
                pid: 123,
                name: "PoolWorker-3",
                target: "app::db",
                module_path: Some("app::db"),
                file: Some("src/db.rs"),
                line: Some(42),
                message: "connected",
            }
        );
    }

    #[test]
    fn a_huge_message_is_cut_at_a_character_with_a_marker() {
        let long = "é".repeat(MAX_PACKET);
        let buf = record_bytes(&long);
        assert!(buf.len() <= MAX_PACKET);
        let p = decode(&buf).expect("decodes");
        assert!(p.message.ends_with(TRUNCATED));
        assert!(p.message.len() > MAX_PACKET / 2);
    }

    #[test]
    fn hostile_packets_are_rejected() {
        let good = record_bytes("hello");
        // Every truncation of a good packet: short headers, fields past the end.
        for n in 0..good.len() - "hello".len() {
            assert!(decode(&good[..n]).is_none(), "prefix of {n} bytes");
        }
        // Lengths that claim more than arrived.
        for at in [10, 11, 13, 15] {
            let mut bad = good.clone();
            bad[at] = 0xFE;
            if at != 10 {
                bad[at + 1] = 0xFF;
            }
            assert!(decode(&bad).is_none(), "length at {at}");
        }
        // Bad UTF-8 in the message and in the name.
        let mut bad = good.clone();
        *bad.last_mut().unwrap() = 0xFF;
        assert!(decode(&bad).is_none());
        let mut bad = good.clone();
        bad[HEADER] = 0xC3;
        assert!(decode(&bad).is_none());
        // Unknown level, wrong magic, over-long packet.
        let mut bad = good.clone();
        bad[1] = 9;
        assert!(decode(&bad).is_none());
        let mut bad = good.clone();
        bad[0] = 0;
        assert!(decode(&bad).is_none());
        let mut big = good.clone();
        big.resize(MAX_PACKET + 1, b'a');
        assert!(decode(&big).is_none());
    }
}
