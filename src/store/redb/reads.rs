//! The redb store's reads: each in a read transaction of its own, which
//! sees the last commit made durable before it and nothing of one under
//! way, so they may run beside commits.

use std::ops::Bound;

use ::redb::{
    Database, ReadOnlyTable, ReadTransaction, ReadableDatabase, ReadableTable, TableDefinition,
};

use super::record::decode;
use super::{ctx, BY_ORIGIN, KV, TOMBS};
use crate::core::entry::{Entry, Origin, Version};
use crate::core::store::{Reads, StoreError};

pub(super) fn begin_read(db: &Database) -> Result<ReadTransaction, StoreError> {
    db.begin_read().map_err(ctx("beginning a read transaction"))
}

pub(super) fn open_read<K: ::redb::Key + 'static, V: ::redb::Value + 'static>(
    txn: &ReadTransaction,
    def: TableDefinition<K, V>,
    name: &str,
) -> Result<ReadOnlyTable<K, V>, StoreError> {
    txn.open_table(def)
        .map_err(|e| StoreError(format!("redb: opening table {name}: {e}")))
}

/// The entry of `key`, named by an index: it must exist.
pub(super) fn indexed(
    kv: &ReadOnlyTable<&str, &[u8]>,
    key: &str,
    index: &str,
) -> Result<Entry, StoreError> {
    match kv.get(key).map_err(ctx("reading kv"))? {
        Some(rec) => decode(key, rec.value()),
        None => Err(StoreError(format!(
            "index {index} names key {key:?}, which is not stored"
        ))),
    }
}

/// [`Store::get`](crate::core::store::Store::get).
pub(super) fn get_in(db: &Database, key: &str) -> Result<Option<Entry>, StoreError> {
    let txn = begin_read(db)?;
    let kv = open_read(&txn, KV, "kv")?;
    match kv.get(key).map_err(ctx("reading kv"))? {
        Some(rec) => decode(key, rec.value()).map(Some),
        None => Ok(None),
    }
}

/// [`Store::range`](crate::core::store::Store::range).
pub(super) fn range_in(
    db: &Database,
    prefix: &str,
    after: Option<&str>,
    limit: usize,
) -> Result<Vec<Entry>, StoreError> {
    let mut out = Vec::new();
    if limit == 0 {
        return Ok(out);
    }
    let txn = begin_read(db)?;
    let kv = open_read(&txn, KV, "kv")?;
    let start = match after {
        Some(a) if a >= prefix => Bound::Excluded(a),
        _ => Bound::Included(prefix),
    };
    let iter = kv
        .range::<&str>((start, Bound::Unbounded))
        .map_err(ctx("scanning kv"))?;
    for item in iter {
        let (k, rec) = item.map_err(ctx("scanning kv"))?;
        let key = k.value();
        if !key.starts_with(prefix) {
            break;
        }
        out.push(decode(key, rec.value())?);
        if out.len() >= limit {
            break;
        }
    }
    Ok(out)
}

/// [`Store::by_origin`](crate::core::store::Store::by_origin).
pub(super) fn by_origin_in(
    db: &Database,
    origin: Origin,
    after: Version,
    limit: usize,
) -> Result<Vec<Entry>, StoreError> {
    let mut out = Vec::new();
    if limit == 0 {
        return Ok(out);
    }
    let txn = begin_read(db)?;
    let index = open_read(&txn, BY_ORIGIN, "by_origin_packed")?;
    let kv = open_read(&txn, KV, "kv")?;
    super::origins::scan(&index, origin, after, |key| {
        out.push(indexed(&kv, key, "by_origin")?);
        Ok(out.len() < limit)
    })?;
    Ok(out)
}

/// [`Store::old_tombstones`](crate::core::store::Store::old_tombstones).
pub(super) fn old_tombstones_in(
    db: &Database,
    before_ms: u64,
    limit: usize,
) -> Result<Vec<(String, Version)>, StoreError> {
    let mut out = Vec::new();
    if limit == 0 {
        return Ok(out);
    }
    let txn = begin_read(db)?;
    let tombs = open_read(&txn, TOMBS, "tombs")?;
    let iter = tombs
        .range::<(u64, u32, u32, &str)>((Bound::Unbounded, Bound::Excluded((before_ms, 0, 0, ""))))
        .map_err(ctx("scanning tombs"))?;
    for item in iter {
        let (k, _) = item.map_err(ctx("scanning tombs"))?;
        let (ms, counter, origin, key) = k.value();
        out.push((
            key.to_string(),
            Version {
                ms,
                counter,
                origin,
            },
        ));
        if out.len() >= limit {
            break;
        }
    }
    Ok(out)
}

/// [`Store::for_each`](crate::core::store::Store::for_each).
pub(super) fn for_each_in(db: &Database, f: &mut dyn FnMut(&Entry)) -> Result<(), StoreError> {
    let txn = begin_read(db)?;
    let kv = open_read(&txn, KV, "kv")?;
    for item in kv.iter().map_err(ctx("scanning kv"))? {
        let (k, rec) = item.map_err(ctx("scanning kv"))?;
        f(&decode(k.value(), rec.value())?);
    }
    Ok(())
}

/// Reads of a [`RedbStore`](super::RedbStore) that run beside its commits.
pub(super) struct RedbReads(pub(super) std::sync::Arc<Database>);

impl Reads for RedbReads {
    fn get(&self, key: &str) -> Result<Option<Entry>, StoreError> {
        get_in(&self.0, key)
    }

    fn range(
        &self,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Entry>, StoreError> {
        range_in(&self.0, prefix, after, limit)
    }
}
