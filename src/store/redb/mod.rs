//! The durable [`Store`] on [redb](https://www.redb.org): one file, one redb
//! write transaction per [`WriteBatch`].
//!
//! Tables, all changed inside the write transaction that changes `kv`:
//!
//! | table      | key                                   | value                 |
//! |------------|---------------------------------------|-----------------------|
//! | `kv`       | key                                   | record (`record.rs`)  |
//! | `by_origin_packed` | (origin, ms, counter, key) of a block's first row | the block's rows (`origins.rs`) |
//! | `tombs`    | (ms, counter, origin, key)            | `()`                  |
//! | `pending_chunks` | number of its first row          | change rows (`pending.rs`) |
//! | `hashed_packed` | top 16 bits of [`key_hash`]      | (hash, key, header) of each key (`packed.rs`) |
//! | `meta`     | name                                  | bytes                 |
//!
//! A commit writes a key's record, a tombstone's `tombs` row, and appends
//! the key with its new header to the change list `pending_chunks`, a
//! chunk of rows per commit. `by_origin` (`origins.rs`) and `hashed`,
//! keyed by a random hash, are brought up to date from those rows in bulk,
//! reading no record (`hashed.rs`). `layout.rs` migrates a store of
//! an older layout.
//! The index keys end with the entry's key, so two keys written with the
//! same version never collide in an index.
//!
//! Commits use redb's default [`Durability::Immediate`](::redb::Durability):
//! when [`Store::commit`] returns `Ok`, the batch is on disk and survives a
//! crash of the process or the machine. While [`Store::set_deferred`] is
//! on they use `Durability::None` instead, and [`Store::sync`] makes them
//! durable with one empty durable commit: what redb promises of commits
//! followed by a durable one.
//!
//! [`key_hash`]: crate::core::entry::key_hash

mod hashed;
mod layout;
mod origins;
mod packed;
mod pending;
mod reads;
mod record;
mod writer;

use std::fmt::Display;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use ::redb::{Database, Durability, ReadableTableMetadata, TableDefinition};

use super::{Merged, Reads, Stamp, Store, StoreError, WriteBatch};
use crate::core::entry::{Entry, Origin, Version};
use reads::{begin_read, open_read, RedbReads};

/// The main table: key to encoded record.
const KV: TableDefinition<&str, &[u8]> = TableDefinition::new("kv");
/// Entries by writer: (origin, ms, counter, key), in blocks under their
/// first row (`origins.rs`).
const BY_ORIGIN: TableDefinition<&[u8], &[u8]> = TableDefinition::new("by_origin_packed");
/// Tombstones by age: (ms, counter, origin, key).
const TOMBS: TableDefinition<(u64, u32, u32, &str), ()> = TableDefinition::new("tombs");
/// Keys changed since `hashed` was last brought up to date, in commit order,
/// each with its record's header as that commit left it, in chunks (see
/// `pending.rs`).
const PENDING: TableDefinition<u64, &[u8]> = TableDefinition::new("pending_chunks");
/// Every stored key with the 64-bit hash that places it in a bucket and
/// its record's header, packed by the hash's top 16 bits (`packed.rs`):
/// what the digest needs, without the value.
const HASHED: TableDefinition<u32, &[u8]> = TableDefinition::new("hashed_packed");
/// Named values kept beside the data.
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");

/// redb's page cache when the topology does not set `cache_size`: the
/// store's memory is bounded by this, not by the number of keys (redb's own
/// default, 1 GiB, is what a node holding a million keys came to use).
pub const DEFAULT_CACHE_SIZE: u64 = 32 * 1024 * 1024;

/// What an operator can do about a store file that cannot be opened.
const RESCUE: &str = "Restore the file from a backup, or move it aside to start this node with no data and let it resync from its peers";

/// Turns any redb error into a [`StoreError`] saying what was being done.
fn ctx<E: Display>(what: &str) -> impl FnOnce(E) -> StoreError + '_ {
    move |e| StoreError(format!("redb: {what}: {e}"))
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
    /// The number of the next change row.
    next_seq: u64,
    /// The first change row not yet in `by_origin` (0 on open:
    /// rows fold again harmlessly, see `pending.rs`).
    origins_folded: AtomicU64,
    /// Commits are made without syncing ([`Store::set_deferred`]).
    deferred: bool,
    /// A commit made so has not been synced yet.
    unsynced: bool,
}

impl std::fmt::Debug for RedbStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedbStore")
            .field("path", &self.path)
            .finish()
    }
}

impl RedbStore {
    /// Opens the store in the file at `path` (e.g. `DATA_DIR/ringsync.redb`)
    /// with the default cache ([`DEFAULT_CACHE_SIZE`]), creating the file
    /// and its parent directory if they are missing.
    ///
    /// After a crash, redb repairs the file on open; every batch whose
    /// commit returned `Ok` is kept. A store written by an older build is
    /// migrated to this build's layout, once.
    pub fn open(path: &Path) -> Result<RedbStore, StoreError> {
        Self::open_with_cache(path, DEFAULT_CACHE_SIZE)
    }

    /// [`RedbStore::open`] with a page cache of `cache_bytes`.
    pub fn open_with_cache(path: &Path, cache_bytes: u64) -> Result<RedbStore, StoreError> {
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
        builder.set_cache_size(usize::try_from(cache_bytes).unwrap_or(usize::MAX));
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
        let what = format!("creating the tables of {shown}");
        for made in [
            txn.open_table(KV).map(drop),
            txn.open_table(BY_ORIGIN).map(drop),
            txn.open_table(TOMBS).map(drop),
            txn.open_table(HASHED).map(drop),
            txn.open_table(META).map(drop),
            txn.open_table(PENDING).map(drop),
        ] {
            made.map_err(ctx(&what))?;
        }
        layout::migrate(&txn, &shown)?;
        let next_seq = {
            let pending = txn.open_table(PENDING).map_err(ctx(&what))?;
            pending::next_row(&pending)?
        };
        txn.commit()
            .map_err(ctx(&format!("creating the tables of {shown}")))?;
        Ok(RedbStore {
            db: Arc::new(db),
            path: path.to_path_buf(),
            repaired,
            next_seq,
            origins_folded: AtomicU64::new(0),
            deferred: false,
            unsynced: false,
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
        let txn = begin_read(&self.db)?;
        let kv = open_read(&txn, KV, "kv")?;
        kv.len().map_err(ctx("counting entries"))
    }

    /// True when nothing is stored.
    pub fn is_empty(&self) -> Result<bool, StoreError> {
        Ok(self.len()? == 0)
    }

    /// What a fold outside a commit needs: the first row not yet in
    /// `by_origin`, and the next row to be written.
    fn folds(&self) -> (&AtomicU64, u64) {
        (&self.origins_folded, self.next_seq)
    }
}

/// Closing folds the change list, so that the next open finds both
/// indexes up to date and reads only `hashed`. A fold that fails here is
/// only logged: the rows stay and fold on the next open.
impl Drop for RedbStore {
    fn drop(&mut self) {
        if let Err(e) = hashed::fold_now(&self.db, &self.origins_folded, self.next_seq) {
            log::warn!(
                "{}: could not fold the change list on closing, the next open will: {e}",
                self.path.display()
            );
        }
    }
}

impl Store for RedbStore {
    fn set_deferred(&mut self, on: bool) {
        self.deferred = on;
    }

    fn sync(&mut self) -> Result<(), StoreError> {
        self.deferred = false;
        if !self.unsynced {
            return Ok(());
        }
        let txn = self.db.begin_write().map_err(ctx("beginning a sync"))?;
        txn.commit().map_err(ctx("syncing deferred commits"))?;
        self.unsynced = false;
        Ok(())
    }

    fn get(&self, key: &str) -> Result<Option<Entry>, StoreError> {
        reads::get_in(&self.db, key)
    }

    fn commit(&mut self, batch: WriteBatch) -> Result<Vec<Merged>, StoreError> {
        let mut txn = self
            .db
            .begin_write()
            .map_err(ctx("beginning a write transaction"))?;
        if self.deferred {
            txn.set_durability(Durability::None)
                .map_err(ctx("deferring a commit's sync"))?;
        }
        // On any error below, `txn` is dropped uncommitted: redb aborts it
        // and nothing of the batch is applied.
        let mut next_seq = self.next_seq;
        let origins = self.origins_folded.load(Ordering::Acquire);
        let (out, folded) = writer::apply(&txn, &batch, &mut next_seq, origins)?;
        txn.commit().map_err(ctx("committing"))?;
        // A durable commit makes every earlier one durable too.
        self.unsynced = self.deferred;
        self.next_seq = next_seq;
        if folded {
            self.origins_folded.store(next_seq, Ordering::Release);
        }
        Ok(out)
    }

    fn range(
        &self,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Entry>, StoreError> {
        reads::range_in(&self.db, prefix, after, limit)
    }

    fn by_origin(
        &self,
        origin: Origin,
        after: Version,
        limit: usize,
    ) -> Result<Vec<Entry>, StoreError> {
        origins::origins_now(&self.db, &self.origins_folded, self.next_seq)?;
        reads::by_origin_in(&self.db, origin, after, limit)
    }

    fn bucket(&self, bucket: u32, bits: u32) -> Result<Vec<Entry>, StoreError> {
        hashed::bucket_in(&self.db, self.folds(), bucket, bits)
    }

    fn old_tombstones(
        &self,
        before_ms: u64,
        limit: usize,
    ) -> Result<Vec<(String, Version)>, StoreError> {
        reads::old_tombstones_in(&self.db, before_ms, limit)
    }

    fn for_each(&self, f: &mut dyn FnMut(&Entry)) -> Result<(), StoreError> {
        reads::for_each_in(&self.db, f)
    }

    fn for_each_stamp(&self, f: &mut dyn FnMut(&Stamp)) -> Result<(), StoreError> {
        hashed::stamps_in(&self.db, self.folds(), f)
    }

    fn reads(&self) -> Option<Box<dyn Reads>> {
        Some(Box::new(RedbReads(Arc::clone(&self.db))))
    }

    fn meta(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let txn = begin_read(&self.db)?;
        let meta = open_read(&txn, META, "meta")?;
        Ok(meta
            .get(name)
            .map_err(ctx("reading meta"))?
            .map(|v| v.value().to_vec()))
    }
}

#[cfg(test)]
mod tests;
