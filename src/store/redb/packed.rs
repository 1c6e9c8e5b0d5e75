//! The values of the redb store's hash index: every key whose hash shares
//! its top [`PREFIX_BITS`] bits, packed into one value, sorted by (hash,
//! key). A record is the key's hash (u64), the key's length (u16), both
//! little-endian, the record's 17-byte header, then the key.
//!
//! Why packed: a fold of 2^18 changes then reads and rewrites at most
//! 65,536 values instead of inserting 2^18 rows, each insert a descent of
//! the tree (measured on 10^6 keys folded as the store folds them: 1.5 to
//! 1.8 s packed, 2.7 to 3.0 s a row per key). A value holds some 15
//! records at 10^6 keys, 150 at 10^7.

use super::record::HEADER;
use crate::core::store::StoreError;

/// Bits of a key's hash that name its value.
pub(super) const PREFIX_BITS: u32 = 16;

/// The value holding the key of hash `h`.
pub(super) fn prefix(h: u64) -> u32 {
    (h >> (64 - PREFIX_BITS)) as u32
}

/// Bytes of a record before its key.
const FIXED: usize = 8 + 2 + HEADER;

/// One record of a packed value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Rec<'a> {
    pub(super) hash: u64,
    pub(super) key: &'a str,
    pub(super) header: &'a [u8],
}

/// What a fold does to one key: sets its header, or removes it.
pub(super) type Op<'a> = (u64, &'a str, Option<&'a [u8; HEADER]>);

fn put(out: &mut Vec<u8>, hash: u64, key: &str, header: &[u8]) -> Result<(), StoreError> {
    let len = u16::try_from(key.len())
        .map_err(|_| StoreError(format!("a key of {} bytes in the hash index", key.len())))?;
    out.extend_from_slice(&hash.to_le_bytes());
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(header);
    out.extend_from_slice(key.as_bytes());
    Ok(())
}

/// The records of `value`, in order.
pub(super) fn records(value: &[u8]) -> impl Iterator<Item = Result<Rec<'_>, StoreError>> + '_ {
    let mut rest = value;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let bad = |why: &str| {
            StoreError(format!(
                "corrupt hash index value of {} bytes: {why}",
                value.len()
            ))
        };
        let Some((fixed, tail)) = rest.split_at_checked(FIXED) else {
            rest = &[];
            return Some(Err(bad("a record cut short")));
        };
        let mut hash = [0u8; 8];
        hash.copy_from_slice(&fixed[..8]);
        let len = usize::from(u16::from_le_bytes([fixed[8], fixed[9]]));
        let Some((key, tail)) = tail.split_at_checked(len) else {
            rest = &[];
            return Some(Err(bad("a key cut short")));
        };
        rest = tail;
        Some(match std::str::from_utf8(key) {
            Ok(key) => Ok(Rec {
                hash: u64::from_le_bytes(hash),
                key,
                header: &fixed[10..],
            }),
            Err(_) => Err(bad("a key that is not UTF-8")),
        })
    })
}

/// Writes into `out` the value `old` with `ops` applied. `ops` are sorted
/// by (hash, key), one per key, as `old`'s records are.
pub(super) fn merge(old: &[u8], ops: &[Op<'_>], out: &mut Vec<u8>) -> Result<(), StoreError> {
    out.clear();
    let mut recs = records(old);
    let mut rec = recs.next().transpose()?;
    for &(hash, key, header) in ops {
        while let Some(r) = rec.filter(|r| (r.hash, r.key) < (hash, key)) {
            put(out, r.hash, r.key, r.header)?;
            rec = recs.next().transpose()?;
        }
        if rec.is_some_and(|r| (r.hash, r.key) == (hash, key)) {
            rec = recs.next().transpose()?;
        }
        if let Some(h) = header {
            put(out, hash, key, h)?;
        }
    }
    while let Some(r) = rec {
        put(out, r.hash, r.key, r.header)?;
        rec = recs.next().transpose()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(recs: &[(u64, &str, u8)]) -> Vec<u8> {
        let mut out = Vec::new();
        for &(h, k, b) in recs {
            put(&mut out, h, k, &[b; HEADER]).expect("put");
        }
        out
    }

    #[test]
    fn a_merge_sets_replaces_and_removes_in_order() {
        let old = value(&[(1, "a", 1), (5, "b", 1), (5, "c", 1), (9, "d", 1)]);
        let two = [2u8; HEADER];
        let ops: Vec<Op<'_>> = vec![
            (0, "z", Some(&two)),
            (5, "b", None),
            (5, "bb", Some(&two)),
            (9, "d", Some(&two)),
            (10, "e", None),
        ];
        let mut out = Vec::new();
        merge(&old, &ops, &mut out).expect("merge");
        assert_eq!(
            out,
            value(&[
                (0, "z", 2),
                (1, "a", 1),
                (5, "bb", 2),
                (5, "c", 1),
                (9, "d", 2)
            ])
        );
        merge(&out.clone(), &[], &mut out).expect("merge nothing");
        assert_eq!(records(&out).count(), 5);
        let two_keys = value(&[(1, "a", 1), (5, "c", 1)]);
        let all_gone: Vec<Op<'_>> = records(&two_keys)
            .map(|r| r.map(|r| (r.hash, r.key, None)))
            .collect::<Result<_, _>>()
            .expect("records");
        merge(&two_keys, &all_gone, &mut out).expect("merge");
        assert!(out.is_empty());
    }

    #[test]
    fn a_corrupt_value_is_named_not_read() {
        let v = value(&[(1, "abc", 1)]);
        for cut in [3, FIXED, v.len() - 1] {
            let err = records(&v[..cut]).find_map(Result::err).expect("an error");
            assert!(err.0.contains("cut short"), "{err}");
        }
        let mut out = Vec::new();
        assert!(merge(&v[..FIXED + 1], &[], &mut out).is_err());
        assert_eq!(prefix(u64::MAX), 0xffff);
        assert_eq!(prefix(1 << 48), 1);
    }
}
