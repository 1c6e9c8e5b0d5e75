//! The redb store's hash index, kept off the hot path: `hashed` holds one
//! compact record per key, its hash, the key and the record's 17-byte
//! header, packed by the top 16 bits of the hash (`packed.rs`), which
//! serves buckets and lets opening rebuild the digest without reading a
//! value; commits only append each changed key, with its new header, to
//! the change list, and a fold brings `hashed` up to date in bulk.
//!
//! Why: a row keyed by a random hash dirties about one copy-on-write page
//! per entry when written with the entry; a fold of many keys, sorted,
//! rewrites each value of `hashed` at most once for all of them.

use std::sync::atomic::{AtomicU64, Ordering};

use ::redb::{Database, ReadableTable, ReadableTableMetadata, Table, WriteTransaction};

use super::origins::{apply as apply_origins, change_of, OPS_RUN};
use super::packed::{merge, prefix, records, Op};
use super::pending::{for_each_row, waiting};
use super::reads::{begin_read, indexed, open_read};
use super::record::{decode_header, HEADER};
use super::{ctx, BY_ORIGIN, HASHED, KV, PENDING};
use crate::core::entry::{key_hash, Entry, Version};
use crate::core::store::{Stamp, StoreError};

/// A fold is due once the change list holds this many rows, or as many as
/// `hashed` holds keys (at least the keys less the rows: a row names a key
/// that is new, or one already indexed), whichever is more: each fold then dirties at most every page
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
pub(super) const RUN: usize = 1 << 18;

/// Whether a commit that leaves `pending` rows waiting should fold them.
pub(super) fn fold_due(txn: &WriteTransaction, pending: u64) -> Result<bool, StoreError> {
    if pending < FOLD_MIN {
        return Ok(false);
    }
    let keys = txn
        .open_table(KV)
        .map_err(ctx("opening table kv"))?
        .len()
        .map_err(ctx("counting kv"))?;
    let indexed = keys.saturating_sub(pending);
    Ok(pending >= indexed.clamp(FOLD_MIN, FOLD_MAX))
}

/// Brings `hashed` up to date with every key named in the change list,
/// `by_origin` with the rows from `origins_from` on (the others are in it
/// already), and empties the change list, in `txn`. Each row says what its
/// key's index rows became, so no record is read; of a key's rows, the
/// last one counts.
pub(super) fn fold(txn: &WriteTransaction, origins_from: u64) -> Result<(), StoreError> {
    {
        let pending = txn
            .open_table(PENDING)
            .map_err(ctx("opening table pending"))?;
        let mut by_origin = txn
            .open_table(BY_ORIGIN)
            .map_err(ctx("opening table by_origin_packed"))?;
        let mut hashed = txn
            .open_table(HASHED)
            .map_err(ctx("opening table hashed"))?;
        let mut run: Vec<Change> = Vec::with_capacity(RUN);
        // The rows of `run` still to go into `by_origin`: their place in
        // the run, the version replaced and the version now.
        let mut origins: Vec<(usize, Option<Version>, Option<Version>)> = Vec::new();
        let to_origins =
            |by_origin: &mut Table<'_, &'static [u8], &'static [u8]>,
             run: &[Change],
             origins: &mut Vec<(usize, Option<Version>, Option<Version>)>| {
                let changes = origins.iter().map(|&(i, was, now)| {
                    let key = run.get(i).map_or("", |c| c.1.as_str());
                    (key, was, now)
                });
                apply_origins(by_origin, changes)?;
                origins.clear();
                Ok::<(), StoreError>(())
            };
        // One pass over the list serves both indexes.
        for_each_row(&pending, 0, |seq, row| {
            if seq >= origins_from {
                let (_, was, now) = change_of(&row)?;
                origins.push((run.len(), was, now));
            }
            run.push((key_hash(&row.key), row.key, seq, row.header));
            if origins.len() == OPS_RUN || run.len() == RUN {
                to_origins(&mut by_origin, &run, &mut origins)?;
            }
            if run.len() == RUN {
                fold_run(&mut hashed, &mut run)?;
            }
            Ok(())
        })?;
        to_origins(&mut by_origin, &run, &mut origins)?;
        fold_run(&mut hashed, &mut run)?;
    }
    txn.delete_table(PENDING)
        .map_err(ctx("emptying table pending"))?;
    txn.open_table(PENDING)
        .map_err(ctx("recreating table pending"))?;
    Ok(())
}

/// One key's change in a fold: its hash, the key, the row's number, and
/// its header now (none: gone).
pub(super) type Change = (u64, String, u64, Option<[u8; HEADER]>);

/// Applies a run of changes to `hashed`, and empties it: of a key's
/// changes, the last one (by row number) counts. Each value of `hashed`
/// the run touches is read and written once.
pub(super) fn fold_run(
    hashed: &mut Table<'_, u32, &'static [u8]>,
    run: &mut Vec<Change>,
) -> Result<(), StoreError> {
    run.sort_unstable_by(|a, b| (a.0, &a.1, a.2).cmp(&(b.0, &b.1, b.2)));
    let mut ops: Vec<Op<'_>> = Vec::new();
    let mut out = Vec::new();
    let mut i = 0;
    while i < run.len() {
        let p = prefix(run[i].0);
        ops.clear();
        while let Some((h, key, _, header)) = run.get(i).filter(|c| prefix(c.0) == p) {
            let last = run.get(i + 1).is_none_or(|n| n.0 != *h || n.1 != *key);
            if last {
                ops.push((*h, key.as_str(), header.as_ref()));
            }
            i += 1;
        }
        let old = hashed
            .get(p)
            .map_err(ctx("reading hashed"))?
            .map(|v| v.value().to_vec())
            .unwrap_or_default();
        merge(&old, &ops, &mut out)?;
        if out.is_empty() {
            hashed.remove(p).map_err(ctx("updating hashed"))?;
        } else {
            hashed
                .insert(p, out.as_slice())
                .map_err(ctx("updating hashed"))?;
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
    let iter = index
        .range(prefix(lo)..=prefix(hi))
        .map_err(ctx("scanning hashed"))?;
    let mut out = Vec::new();
    for item in iter {
        let (_, value) = item.map_err(ctx("scanning hashed"))?;
        for rec in records(value.value()) {
            let rec = rec?;
            if (lo..=hi).contains(&rec.hash) {
                out.push(indexed(&kv, rec.key, "hashed")?);
            }
        }
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
        let (_, value) = item.map_err(ctx("scanning hashed"))?;
        for rec in records(value.value()) {
            let rec = rec?;
            let (version, tombstone) = decode_header(rec.key, rec.header)?;
            f(&Stamp {
                key_hash: rec.hash,
                version,
                tombstone,
            });
        }
    }
    Ok(())
}
