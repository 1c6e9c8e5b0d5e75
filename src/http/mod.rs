//! All HTTP code: the tide server's routes and the surf client calls.
//!
//! tide, surf and async-std are flagged unmaintained upstream; keeping them
//! to this module (and the async shell in [`crate::service`]) makes a later
//! swap one module's work. This module implements the service's
//! [`crate::service::Transport`] and serves a [`crate::service::NodeHandle`];
//! the service never imports it. Handlers are short: decode, call, encode.

pub mod bench_baseline;
pub mod client;
pub mod edge;
pub mod framing;
mod limits;
pub mod listen;
pub mod metrics;
mod outbox;
pub mod pool;
pub mod routes;
mod sealed;
pub mod server;

/// Percent-decodes a URL path segment into UTF-8.
pub fn percent_decode(s: &str) -> Result<String, String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| format!("bad percent escape at byte {i} of the key"))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| "the key is not valid UTF-8".to_string())
}

/// Percent-encodes a key for a URL path segment.
pub fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_through_the_url_and_bad_escapes_are_named() {
        for k in ["plain", "a/b c", "ключ", "100%"] {
            assert_eq!(percent_decode(&percent_encode(k)).as_deref(), Ok(k));
        }
        assert!(percent_decode("%zz").is_err());
        assert!(percent_decode("%ff").unwrap_err().contains("UTF-8"));
    }
}
