//! The redb store's change list, `pending_rows`: one row appended per
//! change of a key, saying what the key's index rows became, so that both
//! indexes derived from it are brought up to date in bulk, reading no
//! record: `by_origin` before anything reads it (`fold_origins`), `hashed`
//! once the list is long (`hashed.rs`, which then empties it).
//!
//! A row is a flag byte, the key's new 17-byte record header if it has a
//! record (flag `PRESENT`), the version its record replaced if one did
//! (flag `REPLACED`: ms u64, counter u32, origin u32, big-endian), then
//! the key. Applying a key's rows in order leaves its index rows as its
//! last row says whatever was applied before, so a fold may run any rows
//! again: after a crash, the rows are simply folded from the first.

use std::sync::atomic::{AtomicU64, Ordering};

use ::redb::{Database, Durability, ReadableTable, WriteTransaction};

use super::record::{decode_header, put_version, read_version, HEADER, VERSION};
use super::{ctx, BY_ORIGIN, PENDING};
use crate::core::entry::Version;
use crate::core::store::StoreError;

const PRESENT: u8 = 1;
const REPLACED: u8 = 2;

/// One decoded row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Row {
    pub(super) key: String,
    /// The header of the key's record now; none when it is gone.
    pub(super) header: Option<[u8; HEADER]>,
    /// The version of the record this change replaced or removed.
    pub(super) replaced: Option<Version>,
}

/// Writes into `buf` the row of a change of `key`: its record's `header`
/// now (none when gone), and the version it `replaced`.
pub(super) fn encode_row(
    buf: &mut Vec<u8>,
    key: &str,
    header: Option<&[u8]>,
    replaced: Option<Version>,
) {
    buf.clear();
    buf.push(
        if header.is_some() { PRESENT } else { 0 } | if replaced.is_some() { REPLACED } else { 0 },
    );
    if let Some(h) = header {
        buf.extend_from_slice(h);
    }
    if let Some(v) = replaced {
        put_version(buf, &v);
    }
    buf.extend_from_slice(key.as_bytes());
}

/// Reads a row written by [`encode_row`].
pub(super) fn decode_row(row: &[u8]) -> Result<Row, StoreError> {
    let bad = |why: &str| StoreError(format!("corrupt pending row of {} bytes: {why}", row.len()));
    let Some((&flags, mut rest)) = row.split_first() else {
        return Err(bad("empty"));
    };
    if flags & !(PRESENT | REPLACED) != 0 {
        return Err(bad(&format!("unknown flags {flags}")));
    }
    let mut take = |n: usize| -> Result<&[u8], StoreError> {
        if rest.len() < n {
            return Err(bad("cut short"));
        }
        let (head, tail) = rest.split_at(n);
        rest = tail;
        Ok(head)
    };
    let header = match flags & PRESENT {
        0 => None,
        _ => {
            let mut h = [0u8; HEADER];
            h.copy_from_slice(take(HEADER)?);
            Some(h)
        }
    };
    let replaced = match flags & REPLACED {
        0 => None,
        _ => {
            let mut v = [0u8; VERSION];
            v.copy_from_slice(take(VERSION)?);
            Some(read_version(&v))
        }
    };
    let key = std::str::from_utf8(rest)
        .map_err(|_| bad("a key that is not UTF-8"))?
        .to_string();
    if let Some(h) = &header {
        decode_header(&key, h)?;
    }
    Ok(Row {
        key,
        header,
        replaced,
    })
}

/// Applies to `by_origin`, in `txn`, the rows numbered `from` and up, in
/// order.
pub(super) fn fold_origins(txn: &WriteTransaction, from: u64) -> Result<(), StoreError> {
    let pending = txn
        .open_table(PENDING)
        .map_err(ctx("opening table pending_rows"))?;
    let mut by_origin = txn
        .open_table(BY_ORIGIN)
        .map_err(ctx("opening table by_origin"))?;
    for item in pending
        .range(from..)
        .map_err(ctx("scanning pending_rows"))?
    {
        let (_, row) = item.map_err(ctx("scanning pending_rows"))?;
        let row = decode_row(row.value())?;
        let key = row.key.as_str();
        if let Some(v) = row.replaced {
            by_origin
                .remove((v.origin, v.ms, v.counter, key))
                .map_err(ctx("updating by_origin"))?;
        }
        if let Some(h) = &row.header {
            let (v, _) = decode_header(key, h)?;
            by_origin
                .insert((v.origin, v.ms, v.counter, key), ())
                .map_err(ctx("updating by_origin"))?;
        }
    }
    Ok(())
}

/// Brings `by_origin` up to date before a read of it: folds the rows from
/// `folded` (the first row not yet in it) to `next` (the next row to be
/// written) in a commit of its own, and moves `folded` to `next`. That
/// commit is not synced: if it is lost in a crash, the rows are still
/// there and fold again.
pub(super) fn origins_now(db: &Database, folded: &AtomicU64, next: u64) -> Result<(), StoreError> {
    let from = folded.load(Ordering::Acquire);
    if from >= next {
        return Ok(());
    }
    let mut txn = db
        .begin_write()
        .map_err(ctx("beginning a write transaction"))?;
    txn.set_durability(Durability::None)
        .map_err(ctx("setting a fold's durability"))?;
    fold_origins(&txn, from)?;
    txn.commit()
        .map_err(ctx("committing a fold of pending_rows"))?;
    folded.store(next, Ordering::Release);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_round_trip_and_bad_rows_are_named() {
        let v = Version {
            ms: 1 << 40,
            counter: 3,
            origin: 9,
        };
        let mut header = Vec::new();
        super::super::record::encode_into(&mut header, &v, Some(b"x"));
        let mut buf = Vec::new();
        for (h, r) in [
            (Some(&header[..HEADER]), None),
            (Some(&header[..HEADER]), Some(v)),
            (None, Some(v)),
            (None, None),
        ] {
            encode_row(&mut buf, "k/1", h, r);
            let row = decode_row(&buf).expect("decodes");
            assert_eq!(row.key, "k/1");
            assert_eq!(row.header.as_ref().map(|h| &h[..]), h);
            assert_eq!(row.replaced, r);
        }
        encode_row(&mut buf, "k", Some(&header[..HEADER]), Some(v));
        assert!(decode_row(&buf[..10]).is_err());
        assert!(decode_row(&[]).is_err());
        let mut bad = buf.clone();
        bad[0] = 8;
        assert!(decode_row(&bad).expect_err("flags").0.contains("flags"));
    }
}
