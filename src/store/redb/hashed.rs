//! The redb store's hash index, kept off the hot path: `hashed` holds one
//! compact row per key, (key hash, key) to the record's 17-byte header,
//! which serves buckets and lets opening rebuild the digest without
//! reading a value; commits only append each changed key, with its new
//! header, to `pending`, and a fold brings `hashed` up to date in bulk.
//!
//! Why: a row keyed by a random hash dirties about one copy-on-write page
//! per entry when written with the entry; a fold of many keys, sorted,
//! dirties each page of `hashed` at most once for all of them.

use std::ops::Bound;
use std::sync::atomic::{AtomicU64, Ordering};

use ::redb::{Database, ReadableTable, ReadableTableMetadata, Table, WriteTransaction};

use super::pending::{fold_origins, for_each_row, waiting};
use super::reads::{begin_read, indexed, open_read};
use super::record::{decode_header, HEADER};
use super::{ctx, HASHED, KV, PENDING};
use crate::core::entry::{key_hash, Entry};
use crate::core::store::{Stamp, StoreError};

/// A fold is due once `pending` holds this many rows, or as many as
/// `hashed`, whichever is more: each fold then dirties at most every page
/// of `hashed` once for as many keys as it holds, so the folds of a
/// growing store cost about two page writes per page of it in all
/// (measured at 10^6 keys: folding at a quarter cost 2.5 s, at the whole
/// 1.1 s, beside 2.4 s for the rest of the commits)...
pub(super) const FOLD_MIN: u64 = 1 << 16;
/// ... but never more than this many, which bounds the work a fold (and
/// so a commit, or opening) may find waiting.
const FOLD_MAX: u64 = 1 << 20;
/// Keys folded per sorted run. Each run touches the pages of `hashed` its
/// keys fall in, spread over the whole table, so a fold costs about one
/// pass over `hashed` per run: few, large runs (at most four for the
/// largest fold) keep a fold of 10^6 keys into a store of 10^7 from
/// rewriting its index sixteen times. A run holds about 90 bytes per key
/// in memory: 24 MB at most.
const RUN: usize = 1 << 18;

/// Whether a commit that leaves `pending` rows waiting should fold them.
pub(super) fn fold_due(txn: &WriteTransaction, pending: u64) -> Result<bool, StoreError> {
    if pending < FOLD_MIN {
        return Ok(false);
    }
    let hashed = txn
        .open_table(HASHED)
        .map_err(ctx("opening table hashed"))?
        .len()
        .map_err(ctx("counting hashed"))?;
    Ok(pending >= hashed.clamp(FOLD_MIN, FOLD_MAX))
}

/// Brings `hashed` up to date with every key named in the change list,
/// `by_origin` with the rows from `origins_from` on (the others are in it
/// already), and empties the change list, in `txn`. Each row says what its
/// key's index rows became, so no record is read; of a key's rows, the
/// last one counts.
pub(super) fn fold(txn: &WriteTransaction, origins_from: u64) -> Result<(), StoreError> {
    fold_origins(txn, origins_from)?;
    {
        let pending = txn
            .open_table(PENDING)
            .map_err(ctx("opening table pending"))?;
        let mut hashed = txn
            .open_table(HASHED)
            .map_err(ctx("opening table hashed"))?;
        type Run = Vec<(u64, String, u64, Option<[u8; HEADER]>)>;
        let mut run: Run = Vec::with_capacity(RUN);
        for_each_row(&pending, 0, |seq, row| {
            run.push((key_hash(&row.key), row.key, seq, row.header));
            if run.len() == RUN {
                fold_run(&mut hashed, &mut run)?;
            }
            Ok(())
        })?;
        fold_run(&mut hashed, &mut run)?;
    }
    txn.delete_table(PENDING)
        .map_err(ctx("emptying table pending"))?;
    txn.open_table(PENDING)
        .map_err(ctx("recreating table pending"))?;
    Ok(())
}

/// Applies one sorted run of rows to `hashed`, and empties it: of a key's
/// rows, the last one counts.
fn fold_run(
    hashed: &mut Table<'_, (u64, &'static str), &'static [u8]>,
    run: &mut Vec<(u64, String, u64, Option<[u8; HEADER]>)>,
) -> Result<(), StoreError> {
    run.sort_unstable_by(|a, b| (a.0, &a.1, a.2).cmp(&(b.0, &b.1, b.2)));
    for (i, (h, key, _, header)) in run.iter().enumerate() {
        if run.get(i + 1).is_some_and(|n| n.0 == *h && n.1 == *key) {
            continue;
        }
        match header {
            Some(header) => {
                hashed
                    .insert((*h, key.as_str()), header.as_slice())
                    .map_err(ctx("updating hashed"))?;
            }
            None => {
                hashed
                    .remove((*h, key.as_str()))
                    .map_err(ctx("updating hashed"))?;
            }
        }
    }
    run.clear();
    Ok(())
}

/// Folds the change list in a commit of its own if it holds anything:
/// before a read of `hashed` that must see every commit. `origins` is the
/// first row not yet in `by_origin`, moved to `next` (the next row to be
/// written) once all are.
pub(super) fn fold_now(db: &Database, origins: &AtomicU64, next: u64) -> Result<(), StoreError> {
    let waiting = {
        let txn = begin_read(db)?;
        let pending = open_read(&txn, PENDING, "pending_chunks")?;
        waiting(&pending, next)?
    };
    if waiting == 0 {
        return Ok(());
    }
    let txn = db
        .begin_write()
        .map_err(ctx("beginning a write transaction"))?;
    fold(&txn, origins.load(Ordering::Acquire))?;
    txn.commit().map_err(ctx("committing a fold of pending"))?;
    origins.store(next, Ordering::Release);
    Ok(())
}

/// [`Store::bucket`](crate::core::store::Store::bucket).
pub(super) fn bucket_in(
    db: &Database,
    (origins, next): (&AtomicU64, u64),
    bucket: u32,
    bits: u32,
) -> Result<Vec<Entry>, StoreError> {
    if bits > 32 {
        return Err(StoreError(format!(
            "bucket: {bits} bits do not fit a u32 bucket number"
        )));
    }
    // The hash range of the bucket: the hashes whose top `bits` bits are
    // `bucket`. With 0 bits, the single bucket 0 holds every hash.
    let (lo, hi) = if bits == 0 {
        if bucket != 0 {
            return Ok(Vec::new());
        }
        (0, u64::MAX)
    } else {
        if u64::from(bucket) >> bits != 0 {
            return Ok(Vec::new());
        }
        let shift = 64 - bits;
        let lo = u64::from(bucket) << shift;
        (lo, lo | ((1u64 << shift) - 1))
    };
    fold_now(db, origins, next)?;
    let txn = begin_read(db)?;
    let index = open_read(&txn, HASHED, "hashed")?;
    let kv = open_read(&txn, KV, "kv")?;
    let upper = match hi.checked_add(1) {
        Some(next) => Bound::Excluded((next, "")),
        None => Bound::Unbounded,
    };
    let iter = index
        .range::<(u64, &str)>((Bound::Included((lo, "")), upper))
        .map_err(ctx("scanning hashed"))?;
    let mut out = Vec::new();
    for item in iter {
        let (k, _) = item.map_err(ctx("scanning hashed"))?;
        let (_, key) = k.value();
        out.push(indexed(&kv, key, "hashed")?);
    }
    out.sort_unstable_by(|a, b| a.key.cmp(&b.key));
    Ok(out)
}

/// [`Store::for_each_stamp`](crate::core::store::Store::for_each_stamp):
/// `hashed` alone, after a fold, so no value is read.
pub(super) fn stamps_in(
    db: &Database,
    (origins, next): (&AtomicU64, u64),
    f: &mut dyn FnMut(&Stamp),
) -> Result<(), StoreError> {
    fold_now(db, origins, next)?;
    let txn = begin_read(db)?;
    let index = open_read(&txn, HASHED, "hashed")?;
    for item in index.iter().map_err(ctx("scanning hashed"))? {
        let (k, header) = item.map_err(ctx("scanning hashed"))?;
        let (key_hash, key) = k.value();
        let (version, tombstone) = decode_header(key, header.value())?;
        f(&Stamp {
            key_hash,
            version,
            tombstone,
        });
    }
    Ok(())
}
