//! The durable [`Store`] on [redb](https://www.redb.org): one file, one redb
//! write transaction per [`WriteBatch`].
//!
//! Tables, all kept consistent inside the write transaction that changes
//! the main one:
//!
//! | table      | key                                   | value          |
//! |------------|---------------------------------------|----------------|
//! | `kv`       | key                                   | encoded record |
//! | `by_origin`| (origin, ms, counter, key)            | `()`           |
//! | `by_hash`  | ([`key_hash`] of key, key)            | `()`           |
//! | `tombs`    | (ms, counter, origin, key)            | `()`           |
//! | `meta`     | name                                  | bytes          |
//!
//! The index keys end with the entry's key, so two keys written with the
//! same version never collide in an index.
//!
//! A record is a fixed 17-byte header and the value: version ms (u64),
//! counter (u32), origin (u32), all big-endian, then a flag byte (0 = value,
//! 1 = tombstone), then the value bytes (none for a tombstone).
//!
//! Commits use redb's default [`Durability::Immediate`](::redb::Durability):
//! when [`Store::commit`] returns `Ok`, the batch is on disk and survives a
//! crash of the process or the machine.

use std::fmt::Display;
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use ::redb::{
    Database, ReadOnlyTable, ReadTransaction, ReadableDatabase, ReadableTable,
    ReadableTableMetadata, Table, TableDefinition,
};

use super::{merge_decision, Merged, Reads, Store, StoreError, WriteBatch};
use crate::core::entry::{key_hash, Entry, Origin, Version};

/// The main table: key to encoded record.
const KV: TableDefinition<&str, &[u8]> = TableDefinition::new("kv");
/// Entries by writer: (origin, ms, counter, key).
const BY_ORIGIN: TableDefinition<(u32, u64, u32, &str), ()> = TableDefinition::new("by_origin");
/// Entries by the 64-bit hash of their key, which places them in buckets.
const BY_HASH: TableDefinition<(u64, &str), ()> = TableDefinition::new("by_hash");
/// Tombstones by age: (ms, counter, origin, key).
const TOMBS: TableDefinition<(u64, u32, u32, &str), ()> = TableDefinition::new("tombs");
/// Named values kept beside the data.
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");

/// Bytes before the value in an encoded record.
const HEADER: usize = 17;
const FLAG_VALUE: u8 = 0;
const FLAG_TOMBSTONE: u8 = 1;

/// Turns any redb error into a [`StoreError`] saying what was being done.
/// What an operator can do about a store file that cannot be opened.
const RESCUE: &str = "Restore the file from a backup, or move it aside to start this node with no data and let it resync from its peers";

fn ctx<E: Display>(what: &str) -> impl FnOnce(E) -> StoreError + '_ {
    move |e| StoreError(format!("redb: {what}: {e}"))
}

/// Writes the record of `version` / `value` into `buf`, replacing its content.
fn encode_into(buf: &mut Vec<u8>, version: &Version, value: Option<&[u8]>) {
    buf.clear();
    buf.extend_from_slice(&version.ms.to_be_bytes());
    buf.extend_from_slice(&version.counter.to_be_bytes());
    buf.extend_from_slice(&version.origin.to_be_bytes());
    match value {
        Some(v) => {
            buf.push(FLAG_VALUE);
            buf.extend_from_slice(v);
        }
        None => buf.push(FLAG_TOMBSTONE),
    }
}

/// Reads the header of a record: its version and whether it is a tombstone.
fn decode_header(key: &str, rec: &[u8]) -> Result<(Version, bool), StoreError> {
    let bad = |why: &str| StoreError(format!("corrupt record for key {key:?}: {why}"));
    let Some(header) = rec.get(..HEADER) else {
        return Err(bad(&format!(
            "{} bytes, shorter than the header",
            rec.len()
        )));
    };
    let mut ms = [0u8; 8];
    ms.copy_from_slice(&header[0..8]);
    let mut counter = [0u8; 4];
    counter.copy_from_slice(&header[8..12]);
    let mut origin = [0u8; 4];
    origin.copy_from_slice(&header[12..16]);
    let version = Version {
        ms: u64::from_be_bytes(ms),
        counter: u32::from_be_bytes(counter),
        origin: u32::from_be_bytes(origin),
    };
    match header[16] {
        FLAG_VALUE => Ok((version, false)),
        FLAG_TOMBSTONE if rec.len() == HEADER => Ok((version, true)),
        FLAG_TOMBSTONE => Err(bad("a tombstone with value bytes")),
        f => Err(bad(&format!("unknown flag {f}"))),
    }
}

/// Decodes a whole record into the [`Entry`] of `key`.
fn decode(key: &str, rec: &[u8]) -> Result<Entry, StoreError> {
    let (version, tombstone) = decode_header(key, rec)?;
    Ok(Entry {
        key: key.to_string(),
        value: (!tombstone).then(|| rec[HEADER..].to_vec()),
        version,
    })
}

/// A [`Store`] in one redb file.
///
/// Only one `RedbStore` may have a given file open at a time (redb locks it).
pub struct RedbStore {
    // Shared with the handles of [`Store::reads`]: the file closes (and
    // redb writes its clean-shutdown state) when the last one is dropped.
    db: Arc<Database>,
    path: PathBuf,
    repaired: bool,
}

impl std::fmt::Debug for RedbStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedbStore")
            .field("path", &self.path)
            .finish()
    }
}

impl RedbStore {
    /// Opens the store in the file at `path` (e.g. `DATA_DIR/ringsync.redb`),
    /// creating the file and its parent directory if they are missing.
    ///
    /// After a crash, redb repairs the file on open; every batch whose
    /// commit returned `Ok` is kept.
    pub fn open(path: &Path) -> Result<RedbStore, StoreError> {
        let shown = path.display().to_string();
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| StoreError(format!("creating directory {}: {e}", dir.display())))?;
        }
        // redb would take an empty file for a new database: a store file
        // truncated to nothing would silently become a node that holds
        // nothing. Only a missing file starts a new store.
        let existing = match std::fs::metadata(path) {
            Ok(m) if m.len() == 0 => return Err(StoreError(format!(
                "{shown} is empty (0 bytes): the store was truncated or never written, and was not opened. {RESCUE}"
            ))),
            Ok(_) => true,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
            Err(e) => return Err(StoreError(format!("cannot read {shown}: {e}"))),
        };
        let repaired = Arc::new(AtomicBool::new(false));
        let mut builder = Database::builder();
        let flag = Arc::clone(&repaired);
        builder.set_repair_callback(move |_| flag.store(true, Ordering::Relaxed));
        let opened = if existing {
            builder.open(path)
        } else {
            builder.create(path)
        };
        let db = opened.map_err(|e| {
            StoreError(format!(
                "cannot open {shown} as a ringsync store: {e}. {RESCUE}"
            ))
        })?;
        let repaired = repaired.load(Ordering::Relaxed);
        if repaired {
            log::warn!(
                "{shown} was not closed cleanly (a crash or a kill): redb repaired it on open"
            );
        }
        // Create every table now, so that read transactions always find them.
        let txn = db.begin_write().map_err(ctx(&format!("opening {shown}")))?;
        {
            let what = format!("creating the tables of {shown}");
            txn.open_table(KV).map_err(ctx(&what))?;
            txn.open_table(BY_ORIGIN).map_err(ctx(&what))?;
            txn.open_table(BY_HASH).map_err(ctx(&what))?;
            txn.open_table(TOMBS).map_err(ctx(&what))?;
            txn.open_table(META).map_err(ctx(&what))?;
        }
        txn.commit()
            .map_err(ctx(&format!("creating the tables of {shown}")))?;
        Ok(RedbStore {
            db: Arc::new(db),
            path: path.to_path_buf(),
            repaired,
        })
    }

    /// Whether opening had to repair the file: it was not closed cleanly.
    pub fn was_repaired(&self) -> bool {
        self.repaired
    }

    /// The file this store lives in.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Number of stored entries, tombstones included.
    pub fn len(&self) -> Result<u64, StoreError> {
        let txn = self.read()?;
        let kv = open_read(&txn, KV, "kv")?;
        kv.len().map_err(ctx("counting entries"))
    }

    /// True when nothing is stored.
    pub fn is_empty(&self) -> Result<bool, StoreError> {
        Ok(self.len()? == 0)
    }

    fn read(&self) -> Result<ReadTransaction, StoreError> {
        begin_read(&self.db)
    }

    /// The entry of `key`, looked up in an index: it must exist.
    fn indexed(
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
}

fn begin_read(db: &Database) -> Result<ReadTransaction, StoreError> {
    db.begin_read().map_err(ctx("beginning a read transaction"))
}

/// [`Store::get`] in a read transaction of its own.
fn get_in(db: &Database, key: &str) -> Result<Option<Entry>, StoreError> {
    let txn = begin_read(db)?;
    let kv = open_read(&txn, KV, "kv")?;
    match kv.get(key).map_err(ctx("reading kv"))? {
        Some(rec) => decode(key, rec.value()).map(Some),
        None => Ok(None),
    }
}

/// [`Store::range`] in a read transaction of its own.
fn range_in(
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

/// Reads of a [`RedbStore`] that run beside its commits: each in a redb
/// read transaction, which sees the last commit made durable before it.
struct RedbReads(Arc<Database>);

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

fn open_read<K: ::redb::Key + 'static, V: ::redb::Value + 'static>(
    txn: &ReadTransaction,
    def: TableDefinition<K, V>,
    name: &str,
) -> Result<ReadOnlyTable<K, V>, StoreError> {
    txn.open_table(def)
        .map_err(|e| StoreError(format!("redb: opening table {name}: {e}")))
}

/// The tables of one write transaction, with a reused encoding buffer.
struct Writer<'t> {
    kv: Table<'t, &'static str, &'static [u8]>,
    by_origin: Table<'t, (u32, u64, u32, &'static str), ()>,
    by_hash: Table<'t, (u64, &'static str), ()>,
    tombs: Table<'t, (u64, u32, u32, &'static str), ()>,
    buf: Vec<u8>,
}

impl Writer<'_> {
    /// The version and tombstone flag of the stored entry of `key`.
    fn stored(&self, key: &str) -> Result<Option<(Version, bool)>, StoreError> {
        match self.kv.get(key).map_err(ctx("reading kv"))? {
            Some(rec) => decode_header(key, rec.value()).map(Some),
            None => Ok(None),
        }
    }

    /// Removes the index rows of `key` at `version` (not its bucket row).
    fn unindex(&mut self, key: &str, version: Version, tombstone: bool) -> Result<(), StoreError> {
        self.by_origin
            .remove((version.origin, version.ms, version.counter, key))
            .map_err(ctx("updating by_origin"))?;
        if tombstone {
            self.tombs
                .remove((version.ms, version.counter, version.origin, key))
                .map_err(ctx("updating tombs"))?;
        }
        Ok(())
    }

    fn merge_one(&mut self, e: &Entry) -> Result<Merged, StoreError> {
        let key = e.key.as_str();
        let Merged::Applied { replaced } = merge_decision(e, self.stored(key)?) else {
            return Ok(Merged::Ignored);
        };
        match replaced {
            Some((v, tomb)) => self.unindex(key, v, tomb)?,
            None => {
                self.by_hash
                    .insert((key_hash(key), key), ())
                    .map_err(ctx("updating by_hash"))?;
            }
        }
        let v = e.version;
        encode_into(&mut self.buf, &v, e.value.as_deref());
        self.kv
            .insert(key, self.buf.as_slice())
            .map_err(ctx("writing kv"))?;
        self.by_origin
            .insert((v.origin, v.ms, v.counter, key), ())
            .map_err(ctx("updating by_origin"))?;
        if e.is_tombstone() {
            self.tombs
                .insert((v.ms, v.counter, v.origin, key), ())
                .map_err(ctx("updating tombs"))?;
        }
        Ok(Merged::Applied { replaced })
    }

    fn collect_one(&mut self, key: &str, version: Version) -> Result<(), StoreError> {
        if self.stored(key)? != Some((version, true)) {
            return Ok(());
        }
        self.kv.remove(key).map_err(ctx("writing kv"))?;
        self.by_hash
            .remove((key_hash(key), key))
            .map_err(ctx("updating by_hash"))?;
        self.unindex(key, version, true)
    }
}

impl Store for RedbStore {
    fn get(&self, key: &str) -> Result<Option<Entry>, StoreError> {
        get_in(&self.db, key)
    }

    fn commit(&mut self, batch: WriteBatch) -> Result<Vec<Merged>, StoreError> {
        let txn = self
            .db
            .begin_write()
            .map_err(ctx("beginning a write transaction"))?;
        // On any error below, `txn` is dropped uncommitted: redb aborts it
        // and nothing of the batch is applied.
        if batch.clear_first {
            for (name, res) in [
                ("kv", txn.delete_table(KV)),
                ("by_origin", txn.delete_table(BY_ORIGIN)),
                ("by_hash", txn.delete_table(BY_HASH)),
                ("tombs", txn.delete_table(TOMBS)),
            ] {
                res.map_err(|e| StoreError(format!("redb: clearing table {name}: {e}")))?;
            }
        }
        let out = {
            let open = |name: &str| format!("opening table {name}");
            let mut w = Writer {
                kv: txn.open_table(KV).map_err(ctx(&open("kv")))?,
                by_origin: txn.open_table(BY_ORIGIN).map_err(ctx(&open("by_origin")))?,
                by_hash: txn.open_table(BY_HASH).map_err(ctx(&open("by_hash")))?,
                tombs: txn.open_table(TOMBS).map_err(ctx(&open("tombs")))?,
                buf: Vec::with_capacity(256),
            };
            let mut out = Vec::with_capacity(batch.entries.len());
            for e in &batch.entries {
                out.push(w.merge_one(e)?);
            }
            for (key, version) in &batch.collect {
                w.collect_one(key, *version)?;
            }
            let mut meta = txn.open_table(META).map_err(ctx(&open("meta")))?;
            for (name, value) in &batch.meta {
                meta.insert(name.as_str(), value.as_slice())
                    .map_err(ctx("writing meta"))?;
            }
            out
        };
        txn.commit().map_err(ctx("committing"))?;
        Ok(out)
    }

    fn range(
        &self,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Entry>, StoreError> {
        range_in(&self.db, prefix, after, limit)
    }

    fn by_origin(
        &self,
        origin: Origin,
        after: Version,
        limit: usize,
    ) -> Result<Vec<Entry>, StoreError> {
        let mut out = Vec::new();
        if limit == 0 {
            return Ok(out);
        }
        let txn = self.read()?;
        let index = open_read(&txn, BY_ORIGIN, "by_origin")?;
        let kv = open_read(&txn, KV, "kv")?;
        let start = (origin, after.ms, after.counter, "");
        let iter = index
            .range::<(u32, u64, u32, &str)>((Bound::Included(start), Bound::Unbounded))
            .map_err(ctx("scanning by_origin"))?;
        for item in iter {
            let (k, _) = item.map_err(ctx("scanning by_origin"))?;
            let (o, ms, counter, key) = k.value();
            if o != origin {
                break;
            }
            // Rows with the same (ms, counter) as `after` are above it only
            // if `origin` is above `after.origin`.
            if (Version {
                ms,
                counter,
                origin: o,
            }) <= after
            {
                continue;
            }
            out.push(Self::indexed(&kv, key, "by_origin")?);
            if out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }

    fn bucket(&self, bucket: u32, bits: u32) -> Result<Vec<Entry>, StoreError> {
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
        let txn = self.read()?;
        let index = open_read(&txn, BY_HASH, "by_hash")?;
        let kv = open_read(&txn, KV, "kv")?;
        let upper = match hi.checked_add(1) {
            Some(next) => Bound::Excluded((next, "")),
            None => Bound::Unbounded,
        };
        let iter = index
            .range::<(u64, &str)>((Bound::Included((lo, "")), upper))
            .map_err(ctx("scanning by_hash"))?;
        let mut out = Vec::new();
        for item in iter {
            let (k, _) = item.map_err(ctx("scanning by_hash"))?;
            let (_, key) = k.value();
            out.push(Self::indexed(&kv, key, "by_hash")?);
        }
        out.sort_unstable_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    fn old_tombstones(
        &self,
        before_ms: u64,
        limit: usize,
    ) -> Result<Vec<(String, Version)>, StoreError> {
        let mut out = Vec::new();
        if limit == 0 {
            return Ok(out);
        }
        let txn = self.read()?;
        let tombs = open_read(&txn, TOMBS, "tombs")?;
        let iter = tombs
            .range::<(u64, u32, u32, &str)>((
                Bound::Unbounded,
                Bound::Excluded((before_ms, 0, 0, "")),
            ))
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

    fn for_each(&self, f: &mut dyn FnMut(&Entry)) -> Result<(), StoreError> {
        let txn = self.read()?;
        let kv = open_read(&txn, KV, "kv")?;
        for item in kv.iter().map_err(ctx("scanning kv"))? {
            let (k, rec) = item.map_err(ctx("scanning kv"))?;
            f(&decode(k.value(), rec.value())?);
        }
        Ok(())
    }

    fn reads(&self) -> Option<Box<dyn Reads>> {
        Some(Box::new(RedbReads(Arc::clone(&self.db))))
    }

    fn meta(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let txn = self.read()?;
        let meta = open_read(&txn, META, "meta")?;
        Ok(meta
            .get(name)
            .map_err(ctx("reading meta"))?
            .map(|v| v.value().to_vec()))
    }
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
