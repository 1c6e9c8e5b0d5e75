//! The bytes of one stored record: a fixed header (version, tombstone
//! flag) and the value.
//!
//! A record is a fixed 17-byte header and the value: version ms (u64),
//! counter (u32), origin (u32), all big-endian, then a flag byte (0 = value,
//! 1 = tombstone), then the value bytes (none for a tombstone). The hash
//! index keeps the header alone.

use crate::core::entry::{Entry, Version};
use crate::core::store::StoreError;

/// Bytes before the value in an encoded record.
pub(super) const HEADER: usize = 17;
const FLAG_VALUE: u8 = 0;
const FLAG_TOMBSTONE: u8 = 1;

/// Bytes of an encoded version: ms (u64), counter (u32), origin (u32).
pub(super) const VERSION: usize = 16;

/// Appends `version` to `buf`, big-endian: ms, counter, origin.
pub(super) fn put_version(buf: &mut Vec<u8>, version: &Version) {
    buf.extend_from_slice(&version.ms.to_be_bytes());
    buf.extend_from_slice(&version.counter.to_be_bytes());
    buf.extend_from_slice(&version.origin.to_be_bytes());
}

/// The version [`put_version`] wrote at the start of `bytes`.
pub(super) fn read_version(bytes: &[u8; VERSION]) -> Version {
    let mut ms = [0u8; 8];
    ms.copy_from_slice(&bytes[0..8]);
    let mut counter = [0u8; 4];
    counter.copy_from_slice(&bytes[8..12]);
    let mut origin = [0u8; 4];
    origin.copy_from_slice(&bytes[12..16]);
    Version {
        ms: u64::from_be_bytes(ms),
        counter: u32::from_be_bytes(counter),
        origin: u32::from_be_bytes(origin),
    }
}

/// Writes the record of `version` / `value` into `buf`, replacing its content.
pub(super) fn encode_into(buf: &mut Vec<u8>, version: &Version, value: Option<&[u8]>) {
    buf.clear();
    put_version(buf, version);
    match value {
        Some(v) => {
            buf.push(FLAG_VALUE);
            buf.extend_from_slice(v);
        }
        None => buf.push(FLAG_TOMBSTONE),
    }
}

/// Reads the header of a record: its version and whether it is a tombstone.
pub(super) fn decode_header(key: &str, rec: &[u8]) -> Result<(Version, bool), StoreError> {
    let bad = |why: &str| StoreError(format!("corrupt record for key {key:?}: {why}"));
    let Some(header) = rec.get(..HEADER) else {
        return Err(bad(&format!(
            "{} bytes, shorter than the header",
            rec.len()
        )));
    };
    let mut v = [0u8; VERSION];
    v.copy_from_slice(&header[..VERSION]);
    let version = read_version(&v);
    match header[VERSION] {
        FLAG_VALUE => Ok((version, false)),
        FLAG_TOMBSTONE if rec.len() == HEADER => Ok((version, true)),
        FLAG_TOMBSTONE => Err(bad("a tombstone with value bytes")),
        f => Err(bad(&format!("unknown flag {f}"))),
    }
}

/// Decodes a whole record into the [`Entry`] of `key`.
pub(super) fn decode(key: &str, rec: &[u8]) -> Result<Entry, StoreError> {
    let (version, tombstone) = decode_header(key, rec)?;
    Ok(Entry {
        key: key.to_string(),
        value: (!tombstone).then(|| rec[HEADER..].to_vec()),
        version,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_round_trip_and_corruption() {
        let v = Version {
            ms: 1 << 40,
            counter: 7,
            origin: 3,
        };
        let mut buf = Vec::new();
        encode_into(&mut buf, &v, Some(b"hello"));
        let e = decode("k", &buf).expect("decodes");
        assert_eq!(e.version, v);
        assert_eq!(e.value.as_deref(), Some(&b"hello"[..]));
        encode_into(&mut buf, &v, None);
        assert_eq!(decode_header("k", &buf), Ok((v, true)));
        assert!(decode("k", &buf).expect("decodes").is_tombstone());

        assert!(decode("k", &buf[..5]).is_err());
        let mut bad = buf.clone();
        bad[16] = 9;
        assert!(decode("k", &bad).is_err());
        bad[16] = FLAG_TOMBSTONE;
        bad.push(1);
        let err = decode("k", &bad).expect_err("tombstone with bytes");
        assert!(err.0.contains("\"k\""), "{err}");
    }
}
