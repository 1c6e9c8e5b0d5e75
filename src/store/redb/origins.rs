//! The redb store's `by_origin` index, packed (layout 5): every stored
//! key's row (origin, ms, counter, key), in that order, kept in blocks of
//! about [`BLOCK`] bytes, each holding rows of one origin, under the sort
//! key of its first row.
//!
//! A block's key is the origin (u32), ms (u64) and counter (u32),
//! big-endian, then the key's bytes: byte order is row order. Its value is
//! its rows, each ms (u64), counter (u32), big-endian, the key's length
//! (u16, little-endian), then the key. A row lives in the last block whose
//! key is not above it.
//!
//! Why: a fold then writes one block for some 70 rows (keys of 15 bytes)
//! where layout 4 inserted every row into a B-tree keyed by a tuple, which
//! cost about a fifth of a 10^6-key merge (`docs/DESIGN.md` §2). Versions
//! of one origin mostly arrive in order, so most rows append to the last
//! block of their origin.

use std::ops::Bound;
use std::sync::atomic::{AtomicU64, Ordering};

use ::redb::{Database, Durability, ReadableTable, Table, WriteTransaction};

use super::ctx;
use super::pending::for_each_row;
use super::record::decode_header;
use super::{BY_ORIGIN, PENDING};
use crate::core::entry::{Origin, Version};
use crate::core::store::StoreError;

/// Bytes a block is cut at: a fold that leaves a block longer cuts it into
/// even pieces, and one that leaves it under a quarter of this takes in
/// the next block of its origin.
pub(super) const BLOCK: usize = 2048;

/// Changes gathered before they are applied: bounds a fold's memory
/// beside the run of `hashed` (about 40 bytes each).
pub(super) const OPS_RUN: usize = 1 << 16;

/// Bytes of a row in a block before its key.
const FIXED: usize = 8 + 4 + 2;

/// One row of the index, ordered as the index orders rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct Row<'a> {
    pub(super) origin: Origin,
    pub(super) ms: u64,
    pub(super) counter: u32,
    pub(super) key: &'a str,
}

impl<'a> Row<'a> {
    fn of(v: Version, key: &'a str) -> Row<'a> {
        Row {
            origin: v.origin,
            ms: v.ms,
            counter: v.counter,
            key,
        }
    }

    fn version(&self) -> Version {
        Version {
            ms: self.ms,
            counter: self.counter,
            origin: self.origin,
        }
    }
}

/// What a fold does to a row: puts it in (`true`) or takes it out.
type Op<'a> = (Row<'a>, bool);

/// One key's change: the version its row had (none: no row) and the one
/// it has now (none: gone).
pub(super) type Change<'a> = (&'a str, Option<Version>, Option<Version>);

fn corrupt(what: &str, len: usize, why: &str) -> StoreError {
    StoreError(format!("corrupt by_origin {what} of {len} bytes: {why}"))
}

/// Writes into `out` the block key of a block starting at `row`.
fn block_key(out: &mut Vec<u8>, row: &Row<'_>) {
    out.clear();
    out.extend_from_slice(&row.origin.to_be_bytes());
    out.extend_from_slice(&row.ms.to_be_bytes());
    out.extend_from_slice(&row.counter.to_be_bytes());
    out.extend_from_slice(row.key.as_bytes());
}

/// The row a block key names.
fn parse_key(k: &[u8]) -> Result<Row<'_>, StoreError> {
    let Some((fixed, key)) = k.split_first_chunk::<16>() else {
        return Err(corrupt("block key", k.len(), "cut short"));
    };
    let (origin, rest) = fixed.split_at(4);
    let (ms, counter) = rest.split_at(8);
    Ok(Row {
        origin: u32::from_be_bytes(origin.try_into().unwrap_or_default()),
        ms: u64::from_be_bytes(ms.try_into().unwrap_or_default()),
        counter: u32::from_be_bytes(counter.try_into().unwrap_or_default()),
        key: std::str::from_utf8(key)
            .map_err(|_| corrupt("block key", k.len(), "a key that is not UTF-8"))?,
    })
}

/// The origin of a block key (0 for one cut short: `parse_key` names it).
fn origin_of(k: &[u8]) -> Origin {
    k.first_chunk::<4>().map_or(0, |o| u32::from_be_bytes(*o))
}

fn put(out: &mut Vec<u8>, row: &Row<'_>) -> Result<(), StoreError> {
    let len = u16::try_from(row.key.len())
        .map_err(|_| StoreError(format!("a key of {} bytes in by_origin", row.key.len())))?;
    out.extend_from_slice(&row.ms.to_be_bytes());
    out.extend_from_slice(&row.counter.to_be_bytes());
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(row.key.as_bytes());
    Ok(())
}

/// The rows of a block of `origin`, in order, each with its offset.
fn rows(
    origin: Origin,
    block: &[u8],
) -> impl Iterator<Item = Result<(usize, Row<'_>), StoreError>> + '_ {
    let mut at = 0;
    std::iter::from_fn(move || {
        let rest = block.get(at..).filter(|r| !r.is_empty())?;
        let Some((fixed, tail)) = rest.split_first_chunk::<FIXED>() else {
            at = block.len();
            return Some(Err(corrupt("block", block.len(), "a row cut short")));
        };
        let (ms, rest) = fixed.split_at(8);
        let (counter, len) = rest.split_at(4);
        let len = usize::from(u16::from_le_bytes(len.try_into().unwrap_or_default()));
        let Some(key) = tail.get(..len) else {
            at = block.len();
            return Some(Err(corrupt("block", block.len(), "a key cut short")));
        };
        let Ok(key) = std::str::from_utf8(key) else {
            at = block.len();
            return Some(Err(corrupt(
                "block",
                block.len(),
                "a key that is not UTF-8",
            )));
        };
        let row = Row {
            origin,
            ms: u64::from_be_bytes(ms.try_into().unwrap_or_default()),
            counter: u32::from_be_bytes(counter.try_into().unwrap_or_default()),
            key,
        };
        let start = at;
        at += FIXED + len;
        Some(Ok((start, row)))
    })
}

/// Appends to `out` the rows of `block` (of `origin`) with `ops` applied;
/// `ops` are sorted, one per row.
fn merge(
    origin: Origin,
    block: &[u8],
    ops: &[Op<'_>],
    out: &mut Vec<u8>,
) -> Result<(), StoreError> {
    let mut old = rows(origin, block).map(|r| r.map(|(_, row)| row));
    let mut cur = old.next().transpose()?;
    for &(row, set) in ops {
        while let Some(r) = cur.filter(|r| *r < row) {
            put(out, &r)?;
            cur = old.next().transpose()?;
        }
        if cur == Some(row) {
            cur = old.next().transpose()?;
        }
        if set {
            put(out, &row)?;
        }
    }
    while let Some(r) = cur {
        put(out, &r)?;
        cur = old.next().transpose()?;
    }
    Ok(())
}

/// The key of the last block of `origin` whose key is not above `key`.
fn block_at(
    table: &impl ReadableTable<&'static [u8], &'static [u8]>,
    key: &[u8],
    origin: Origin,
) -> Result<Option<Vec<u8>>, StoreError> {
    let last = table
        .range::<&[u8]>(..=key)
        .map_err(ctx("scanning by_origin"))?
        .next_back();
    key_of(last, origin)
}

/// The key of the first block of `origin` whose key is above `key`.
fn block_after(
    table: &Table<'_, &'static [u8], &'static [u8]>,
    key: &[u8],
    origin: Origin,
) -> Result<Option<Vec<u8>>, StoreError> {
    let next = table
        .range::<&[u8]>((Bound::Excluded(key), Bound::Unbounded))
        .map_err(ctx("scanning by_origin"))?
        .next();
    key_of(next, origin)
}

/// The key of the block a scan found, if it is one of `origin`'s.
fn key_of(
    found: Option<Result<(Guard<'_>, Guard<'_>), ::redb::StorageError>>,
    origin: Origin,
) -> Result<Option<Vec<u8>>, StoreError> {
    let Some(item) = found else {
        return Ok(None);
    };
    let (k, _) = item.map_err(ctx("scanning by_origin"))?;
    Ok((origin_of(k.value()) == origin).then(|| k.value().to_vec()))
}

type Guard<'a> = ::redb::AccessGuard<'a, &'static [u8]>;

/// Removes the block at `key`, returning its rows.
fn take(
    table: &mut Table<'_, &'static [u8], &'static [u8]>,
    key: &[u8],
) -> Result<Vec<u8>, StoreError> {
    Ok(table
        .remove(key)
        .map_err(ctx("updating by_origin"))?
        .map(|v| v.value().to_vec())
        .unwrap_or_default())
}

/// Writes `rows` (of `origin`, sorted) as blocks: in even pieces of about
/// `block` bytes at most, each under its first row.
fn write(
    table: &mut Table<'_, &'static [u8], &'static [u8]>,
    origin: Origin,
    rows_bytes: &[u8],
    block: usize,
) -> Result<(), StoreError> {
    let pieces = rows_bytes.len().div_ceil(block.max(1));
    let mut key = Vec::new();
    let mut start: Option<(usize, Row<'_>)> = None;
    let mut piece = 1;
    for item in rows(origin, rows_bytes) {
        let (at, row) = item?;
        match start {
            None => start = Some((at, row)),
            Some((from, first)) if at >= rows_bytes.len() * piece / pieces => {
                block_key(&mut key, &first);
                table
                    .insert(key.as_slice(), &rows_bytes[from..at])
                    .map_err(ctx("updating by_origin"))?;
                piece += 1;
                start = Some((at, row));
            }
            Some(_) => {}
        }
    }
    if let Some((from, first)) = start {
        block_key(&mut key, &first);
        table
            .insert(key.as_slice(), &rows_bytes[from..])
            .map_err(ctx("updating by_origin"))?;
    }
    Ok(())
}

/// Makes the index say what `changes` say, in order: of a key's changes,
/// the last counts. Each block they touch is read and written once.
pub(super) fn apply<'a>(
    table: &mut Table<'_, &'static [u8], &'static [u8]>,
    changes: impl Iterator<Item = Change<'a>>,
) -> Result<(), StoreError> {
    apply_sized(table, changes, BLOCK)
}

fn apply_sized<'a>(
    table: &mut Table<'_, &'static [u8], &'static [u8]>,
    changes: impl Iterator<Item = Change<'a>>,
    block: usize,
) -> Result<(), StoreError> {
    let mut ops: Vec<Op<'a>> = Vec::new();
    for (key, was, now) in changes {
        if let Some(v) = was {
            ops.push((Row::of(v, key), false));
        }
        if let Some(v) = now {
            ops.push((Row::of(v, key), true));
        }
    }
    // Stable: of equal rows, the last op counts.
    ops.sort_by(|a, b| a.0.cmp(&b.0));
    let mut kept = 0;
    for i in 0..ops.len() {
        if ops.get(i + 1).is_some_and(|n| n.0 == ops[i].0) {
            continue;
        }
        ops[kept] = ops[i];
        kept += 1;
    }
    ops.truncate(kept);
    let (mut key, mut out) = (Vec::new(), Vec::new());
    let mut i = 0;
    while let Some(&(first, _)) = ops.get(i) {
        let origin = first.origin;
        block_key(&mut key, &first);
        let found = block_at(table, &key, origin)?;
        let mut old = match &found {
            Some(k) => take(table, k)?,
            None => Vec::new(),
        };
        let mut from = found.unwrap_or_else(|| key.clone());
        out.clear();
        loop {
            let next = block_after(table, &from, origin)?;
            let end = match &next {
                Some(n) => Some(parse_key(n)?),
                None => None,
            };
            let n = ops[i..]
                .iter()
                .take_while(|(r, _)| r.origin == origin && end.is_none_or(|e| *r < e))
                .count();
            merge(origin, &old, &ops[i..i + n], &mut out)?;
            i += n;
            match next {
                // A block left small takes in the next of its origin.
                Some(n) if out.len() < block / 4 => {
                    old = take(table, &n)?;
                    from = n;
                }
                _ => break,
            }
        }
        write(table, origin, &out, block)?;
    }
    Ok(())
}

/// Calls `f` with the key of each row of `origin` above `after`, in
/// order, while it returns `true`.
pub(super) fn scan(
    table: &impl ReadableTable<&'static [u8], &'static [u8]>,
    origin: Origin,
    after: Version,
    mut f: impl FnMut(&str) -> Result<bool, StoreError>,
) -> Result<(), StoreError> {
    let mut key = Vec::new();
    block_key(
        &mut key,
        &Row {
            origin,
            ms: after.ms,
            counter: after.counter,
            key: "",
        },
    );
    let from = block_at(table, &key, origin)?.unwrap_or(key);
    for item in table
        .range::<&[u8]>(from.as_slice()..)
        .map_err(ctx("scanning by_origin"))?
    {
        let (k, v) = item.map_err(ctx("scanning by_origin"))?;
        if parse_key(k.value())?.origin != origin {
            break;
        }
        for r in rows(origin, v.value()) {
            let (_, row) = r?;
            // Rows with the same (ms, counter) as `after` are above it
            // only if `origin` is above `after.origin`.
            if row.version() <= after {
                continue;
            }
            if !f(row.key)? {
                return Ok(());
            }
        }
    }
    Ok(())
}

/// The change of by_origin a change row says: the version it replaced,
/// and its record's now.
pub(super) fn change_of(row: &super::pending::Row) -> Result<Change<'_>, StoreError> {
    let now = match &row.header {
        Some(h) => Some(decode_header(&row.key, h)?.0),
        None => None,
    };
    Ok((row.key.as_str(), row.replaced, now))
}

/// Changes gathered with their keys owned, applied by [`apply_run`].
pub(super) type Run = Vec<(String, Option<Version>, Option<Version>)>;

/// Applies `run` (see [`apply`]) and empties it.
pub(super) fn apply_run(
    table: &mut Table<'_, &'static [u8], &'static [u8]>,
    run: &mut Run,
) -> Result<(), StoreError> {
    apply(
        table,
        run.iter().map(|(k, was, now)| (k.as_str(), *was, *now)),
    )?;
    run.clear();
    Ok(())
}

/// Applies to `by_origin`, in `txn`, the change rows numbered `from` and
/// up, in order.
pub(super) fn fold_origins(txn: &WriteTransaction, from: u64) -> Result<(), StoreError> {
    let pending = txn
        .open_table(PENDING)
        .map_err(ctx("opening table pending_chunks"))?;
    let mut table = txn
        .open_table(BY_ORIGIN)
        .map_err(ctx("opening table by_origin_packed"))?;
    let mut run = Run::new();
    for_each_row(&pending, from, |_, row| {
        let (_, was, now) = change_of(&row)?;
        run.push((row.key, was, now));
        if run.len() == OPS_RUN {
            apply_run(&mut table, &mut run)?;
        }
        Ok(())
    })?;
    apply_run(&mut table, &mut run)
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
        .map_err(ctx("committing a fold of pending_chunks"))?;
    folded.store(next, Ordering::Release);
    Ok(())
}

#[cfg(test)]
#[path = "origins_tests.rs"]
mod tests;
