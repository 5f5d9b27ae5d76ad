//! The authentication handshake of `multiprocessing.connection`, as CPython
//! 3.12+ speaks it, with the legacy HMAC-MD5 form that CPython ≤ 3.11 uses.
//!
//! Each side challenges the other (the listener first):
//!
//! 1. challenger → `#CHALLENGE#{sha256}` + 40 random bytes
//! 2. answerer → `{sha256}` + HMAC-SHA256(key, `{sha256}` + the 40 bytes)
//!    — or, to a legacy 20-byte challenge, the bare 16-byte HMAC-MD5
//! 3. challenger → `#WELCOME#` or `#FAILURE#`
//!
//! Every message is a normal framed message; replies over 256 bytes are
//! refused. See `Lib/multiprocessing/connection.py` in CPython.

use hmac::{Hmac, Mac};

use crate::error::{Error, ErrorKind, Result};

const CHALLENGE: &[u8] = b"#CHALLENGE#";
pub(crate) const WELCOME: &[u8] = b"#WELCOME#";
pub(crate) const FAILURE: &[u8] = b"#FAILURE#";
/// The longest handshake message either side accepts.
pub(crate) const MAX_MESSAGE: usize = 256;
const MESSAGE_LENGTH: usize = 40;
const MD5ONLY_MESSAGE_LENGTH: usize = 20;
const MD5_DIGEST_LEN: usize = 16;

/// The two operations the handshake needs from a connection.
pub(crate) trait Channel {
    fn send_bytes(&self, buf: &[u8]) -> Result<()>;
    fn recv_bytes_max(&self, max: usize) -> Result<Vec<u8>>;
}

fn auth_error(message: impl Into<String>) -> Error {
    Error::new(ErrorKind::Authentication, message)
}

fn mac(digest: &str, key: &[u8], message: &[u8]) -> Option<Vec<u8>> {
    macro_rules! run {
        ($h:ty) => {{
            let mut m = <Hmac<$h> as Mac>::new_from_slice(key).ok()?;
            m.update(message);
            Some(m.finalize().into_bytes().to_vec())
        }};
    }
    match digest {
        "md5" => run!(md5::Md5),
        "sha256" => run!(sha2::Sha256),
        "sha384" => run!(sha2::Sha384),
        _ => None,
    }
}

/// Splits `{digest}payload`; an unprefixed message of a legacy length means
/// MD5. `None` for anything else.
fn digest_and_payload(message: &[u8]) -> Option<(&str, &[u8])> {
    if message.len() == MD5ONLY_MESSAGE_LENGTH || message.len() == MD5_DIGEST_LEN {
        return Some(("", message));
    }
    let rest = message.strip_prefix(b"{")?;
    let end = rest.iter().take(10).position(|&b| b == b'}')?;
    let name = std::str::from_utf8(&rest[..end]).ok()?;
    matches!(name, "md5" | "sha256" | "sha384").then_some((name, &rest[end + 1..]))
}

/// Constant-time comparison.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A fresh challenge: what to send, and the message whose MAC the answer
/// must carry.
pub(crate) fn new_challenge() -> Result<(Vec<u8>, Vec<u8>)> {
    let mut random = [0u8; MESSAGE_LENGTH];
    rustix::rand::getrandom(&mut random, rustix::rand::GetRandomFlags::empty())
        .map_err(|e| Error::io("no random bytes for the challenge", e.into()))?;
    let message = [b"{sha256}".as_slice(), &random].concat();
    Ok(([CHALLENGE, &message].concat(), message))
}

/// Whether `response` proves knowledge of `key` for the challenge `message`.
pub(crate) fn response_ok(key: &[u8], message: &[u8], response: &[u8]) -> bool {
    match digest_and_payload(response) {
        Some((name, mac_got)) => {
            let name = if name.is_empty() { "md5" } else { name };
            mac(name, key, message).is_some_and(|expected| same(&expected, mac_got))
        }
        None => false,
    }
}

/// Challenges the peer to prove it knows `key`.
pub(crate) fn deliver_challenge(conn: &impl Channel, key: &[u8]) -> Result<()> {
    let (challenge, message) = new_challenge()?;
    conn.send_bytes(&challenge)?;
    let response = conn.recv_bytes_max(MAX_MESSAGE)?;
    if response_ok(key, &message, &response) {
        conn.send_bytes(WELCOME)
    } else {
        let _ = conn.send_bytes(FAILURE);
        Err(auth_error(
            "authentication failed: the peer's digest was wrong (a different authkey?)",
        ))
    }
}

/// Answers the peer's challenge with `key`.
pub(crate) fn answer_challenge(conn: &impl Channel, key: &[u8]) -> Result<()> {
    let challenge = conn.recv_bytes_max(MAX_MESSAGE)?;
    conn.send_bytes(&respond(key, &challenge)?)?;
    match conn.recv_bytes_max(MAX_MESSAGE)? {
        w if w == WELCOME => Ok(()),
        _ => Err(auth_error(
            "authentication failed: the peer rejected our digest (a different authkey?)",
        )),
    }
}

/// The answer to the peer's `challenge` with `key`.
pub(crate) fn respond(key: &[u8], challenge: &[u8]) -> Result<Vec<u8>> {
    let Some(message) = challenge.strip_prefix(CHALLENGE) else {
        return Err(auth_error(
            "authentication failed: the peer did not send a challenge",
        ));
    };
    if message.len() < MD5ONLY_MESSAGE_LENGTH {
        return Err(auth_error(
            "authentication failed: the challenge is too short",
        ));
    }
    let response = match digest_and_payload(message) {
        Some(("", _)) => mac("md5", key, message).expect("md5 is supported"),
        Some((name, _)) => {
            let m = mac(name, key, message).expect("listed digests are supported");
            [format!("{{{name}}}").as_bytes(), &m].concat()
        }
        None => {
            return Err(auth_error(
                "authentication failed: the challenge names an unsupported digest",
            ));
        }
    };
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_match_known_values() {
        // hmac.new(b"key", b"The quick brown fox jumps over the lazy dog", "md5").hexdigest()
        let m = mac(
            "md5",
            b"key",
            b"The quick brown fox jumps over the lazy dog",
        )
        .unwrap();
        let hex: String = m.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, "80070713463e7749b90c2dc24911e275");
    }

    #[test]
    fn prefixes_are_parsed_strictly() {
        assert_eq!(
            digest_and_payload(b"{sha256}abc"),
            Some(("sha256", &b"abc"[..]))
        );
        assert_eq!(digest_and_payload(&[7u8; 20]), Some(("", &[7u8; 20][..])));
        assert_eq!(
            digest_and_payload(b"{sha1}abcdefghijklmnopqrstuvwxyz"),
            None
        );
        assert_eq!(
            digest_and_payload(b"{sha256abcdefghijklmnopqrstuvwxyz"),
            None
        );
        assert_eq!(digest_and_payload(b""), None);
    }
}
