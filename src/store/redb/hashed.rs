//! The redb store's hash index, kept off the hot path: `hashed` holds one
//! compact row per key, (key hash, key) to the record's 17-byte header,
//! which serves buckets and lets opening rebuild the digest without
//! reading a value; commits only append the keys they change to `pending`,
//! and a fold brings `hashed` up to date in bulk.
//!
//! Why: a row keyed by a random hash dirties about one copy-on-write page
//! per entry when written with the entry; a fold of many keys, sorted,
//! dirties each page of `hashed` at most once for all of them.

use std::ops::Bound;

use ::redb::{Database, ReadableTable, ReadableTableMetadata, TableDefinition, WriteTransaction};

use super::reads::{begin_read, indexed, open_read};
use super::record::{decode_header, HEADER};
use super::{ctx, HASHED, KV, META, PENDING};
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
/// Keys folded per sorted run.
const RUN: usize = 1 << 16;

/// The meta value naming the store's layout.
pub(super) const META_LAYOUT: &str = "store_layout";
/// This build's layout: `kv`, `by_origin`, `tombs`, `hashed`, `pending`.
/// Layout 1 (no meta value) kept a `by_hash` table written with each entry.
const LAYOUT: u8 = 2;
/// Layout 1's bucket index: (key hash, key) to nothing.
const BY_HASH_V1: TableDefinition<(u64, &str), ()> = TableDefinition::new("by_hash");

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

/// Brings `hashed` up to date with every key named in `pending`, and
/// empties `pending`, in `txn`.
pub(super) fn fold(txn: &WriteTransaction) -> Result<(), StoreError> {
    {
        let pending = txn
            .open_table(PENDING)
            .map_err(ctx("opening table pending"))?;
        let kv = txn.open_table(KV).map_err(ctx("opening table kv"))?;
        let mut hashed = txn
            .open_table(HASHED)
            .map_err(ctx("opening table hashed"))?;
        let mut run: Vec<(u64, String)> = Vec::with_capacity(RUN);
        let mut rows = pending.iter().map_err(ctx("scanning pending"))?;
        loop {
            run.clear();
            for item in rows.by_ref().take(RUN) {
                let (_, key) = item.map_err(ctx("scanning pending"))?;
                let key = key.value();
                run.push((key_hash(key), key.to_string()));
            }
            if run.is_empty() {
                break;
            }
            run.sort_unstable();
            run.dedup();
            for (h, key) in &run {
                match kv.get(key.as_str()).map_err(ctx("reading kv"))? {
                    Some(rec) => {
                        let rec = rec.value();
                        decode_header(key, rec)?;
                        hashed
                            .insert((*h, key.as_str()), &rec[..HEADER])
                            .map_err(ctx("updating hashed"))?;
                    }
                    None => {
                        hashed
                            .remove((*h, key.as_str()))
                            .map_err(ctx("updating hashed"))?;
                    }
                }
            }
        }
    }
    txn.delete_table(PENDING)
        .map_err(ctx("emptying table pending"))?;
    txn.open_table(PENDING)
        .map_err(ctx("recreating table pending"))?;
    Ok(())
}

/// Folds `pending` in a commit of its own if it holds anything: before a
/// read of `hashed` that must see every commit.
fn fold_now(db: &Database) -> Result<(), StoreError> {
    let waiting = {
        let txn = begin_read(db)?;
        let pending = open_read(&txn, PENDING, "pending")?;
        pending.len().map_err(ctx("counting pending"))?
    };
    if waiting == 0 {
        return Ok(());
    }
    let txn = db
        .begin_write()
        .map_err(ctx("beginning a write transaction"))?;
    fold(&txn)?;
    txn.commit().map_err(ctx("committing a fold of pending"))
}

/// [`Store::bucket`](crate::core::store::Store::bucket).
pub(super) fn bucket_in(db: &Database, bucket: u32, bits: u32) -> Result<Vec<Entry>, StoreError> {
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
    fold_now(db)?;
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
pub(super) fn stamps_in(db: &Database, f: &mut dyn FnMut(&Stamp)) -> Result<(), StoreError> {
    fold_now(db)?;
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

/// Brings a store written by an older build to this layout, once, in
/// `txn`: layout 1 had no `hashed` table, so it is built from the records'
/// headers (the one time opening reads every record) and `by_hash` goes.
/// A layout newer than this build's is refused.
pub(super) fn migrate(txn: &WriteTransaction, shown: &str) -> Result<(), StoreError> {
    let mut meta = txn.open_table(META).map_err(ctx("opening table meta"))?;
    let layout = meta
        .get(META_LAYOUT)
        .map_err(ctx("reading meta"))?
        .map(|v| v.value().to_vec());
    match layout.as_deref() {
        Some([LAYOUT]) => return Ok(()),
        None => {}
        Some(other) => {
            return Err(StoreError(format!(
                "{shown} has store layout {other:?}, which this build ({LAYOUT}) cannot read: run the build that wrote it, or move the file aside to resync this node from its peers"
            )))
        }
    }
    let kv = txn.open_table(KV).map_err(ctx("opening table kv"))?;
    let n = kv.len().map_err(ctx("counting entries"))?;
    if n > 0 {
        log::warn!(
            "{shown}: migrating the store to layout {LAYOUT} once: indexing the headers of {n} entries"
        );
        let mut hashed = txn
            .open_table(HASHED)
            .map_err(ctx("opening table hashed"))?;
        for item in kv.iter().map_err(ctx("scanning kv"))? {
            let (k, rec) = item.map_err(ctx("scanning kv"))?;
            let (key, rec) = (k.value(), rec.value());
            decode_header(key, rec)?;
            hashed
                .insert((key_hash(key), key), &rec[..HEADER])
                .map_err(ctx("building hashed"))?;
        }
    }
    drop(kv);
    txn.delete_table(BY_HASH_V1)
        .map_err(ctx("removing table by_hash"))?;
    meta.insert(META_LAYOUT, [LAYOUT].as_slice())
        .map_err(ctx("writing meta"))?;
    Ok(())
}
