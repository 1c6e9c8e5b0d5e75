//! The redb store's layout version, and the one-time migration of a store
//! written by an older build to this one's.
//!
//! | layout | tables beside `kv`, `tombs`, `meta` (and `by_origin` up to 4) |
//! |--------|---------------------------------------------------|
//! | 1 (no meta value) | `by_hash`, written with each entry |
//! | 2 | `hashed`, and `pending` naming changed keys only |
//! | 3 | `hashed`, and `pending_rows`: each change of a key, from which `by_origin` and `hashed` are folded |
//! | 4 | `hashed_packed` (layout 3's `hashed` rows packed by hash prefix), and `pending_chunks` (layout 3's rows, a chunk of them per commit) |
//! | 5 | as 4, with `by_origin_packed` (layout 4's `by_origin` rows in blocks, `origins.rs`) for `by_origin` |

use ::redb::{ReadableTable, ReadableTableMetadata, TableDefinition, WriteTransaction};

use super::hashed::{fold_run, Change, RUN};
use super::origins::{self, OPS_RUN};
use super::pending::{decode_row, Rows};
use super::record::{decode_header, HEADER};
use super::{ctx, BY_ORIGIN, HASHED, KV, META, PENDING};
use crate::core::entry::{key_hash, Version};
use crate::core::store::StoreError;

/// The meta value naming the store's layout.
pub(super) const META_LAYOUT: &str = "store_layout";
/// This build's layout.
const LAYOUT: u8 = 5;
/// Layouts 1 to 4's `by_origin`: a row per key, (origin, ms, counter, key)
/// to nothing.
pub(super) const BY_ORIGIN_V4: TableDefinition<(u32, u64, u32, &str), ()> =
    TableDefinition::new("by_origin");
/// Layout 1's bucket index: (key hash, key) to nothing.
const BY_HASH_V1: TableDefinition<(u64, &str), ()> = TableDefinition::new("by_hash");
/// Layout 2's `pending`: sequence number to a changed key, whose header the
/// fold read from `kv`.
const PENDING_V2: TableDefinition<u64, &str> = TableDefinition::new("pending");
/// Layouts 2 and 3's hash index: (key hash, key) to the record's header.
const HASHED_V3: TableDefinition<(u64, &str), &[u8]> = TableDefinition::new("hashed");
/// Layout 3's change list: a row (`pending.rs`) per row number.
const PENDING_V3: TableDefinition<u64, &[u8]> = TableDefinition::new("pending_rows");

/// Brings a store written by an older build to this layout, once, in
/// `txn`. Layout 1 had no `hashed` table, so it is built from the records'
/// headers (the one time opening reads every record) and `by_hash` goes.
/// Layout 2's `pending` rows become this layout's, each with the header of
/// its key's record as it is now; layout 3's are gathered into chunks.
/// Layout 4's `by_origin` rows (and so those of every older layout) are
/// packed into blocks. A layout newer than this build's is refused.
pub(super) fn migrate(txn: &WriteTransaction, shown: &str) -> Result<(), StoreError> {
    let mut meta = txn.open_table(META).map_err(ctx("opening table meta"))?;
    let layout = meta
        .get(META_LAYOUT)
        .map_err(ctx("reading meta"))?
        .map(|v| v.value().to_vec());
    match layout.as_deref() {
        Some([LAYOUT]) => return Ok(()),
        None => {
            from_layout_1(txn, shown)?;
            from_layout_4(txn, shown)?;
        }
        Some([2]) => {
            from_layout_2(txn, shown)?;
            from_layout_4(txn, shown)?;
        }
        Some([3]) => {
            from_layout_3(txn, shown)?;
            from_layout_4(txn, shown)?;
        }
        Some([4]) => from_layout_4(txn, shown)?,
        Some(other) => {
            return Err(StoreError(format!(
                "{shown} has store layout {other:?}, which this build ({LAYOUT}) cannot read: run the build that wrote it, or move the file aside to resync this node from its peers"
            )))
        }
    }
    meta.insert(META_LAYOUT, [LAYOUT].as_slice())
        .map_err(ctx("writing meta"))?;
    Ok(())
}

fn from_layout_1(txn: &WriteTransaction, shown: &str) -> Result<(), StoreError> {
    let kv = txn.open_table(KV).map_err(ctx("opening table kv"))?;
    let n = kv.len().map_err(ctx("counting entries"))?;
    if n > 0 {
        log::warn!(
            "{shown}: migrating the store to layout {LAYOUT} once: indexing the headers of {n} entries"
        );
        let mut index = Index::new(txn)?;
        for item in kv.iter().map_err(ctx("scanning kv"))? {
            let (k, rec) = item.map_err(ctx("scanning kv"))?;
            let (key, rec) = (k.value(), rec.value());
            decode_header(key, rec)?;
            index.add(key, &rec[..HEADER])?;
        }
        index.finish()?;
    }
    drop(kv);
    txn.delete_table(BY_HASH_V1)
        .map_err(ctx("removing table by_hash"))?;
    Ok(())
}

/// `hashed_packed` being built, a sorted run at a time.
struct Index<'t> {
    table: ::redb::Table<'t, u32, &'static [u8]>,
    run: Vec<Change>,
}

impl<'t> Index<'t> {
    fn new(txn: &'t WriteTransaction) -> Result<Index<'t>, StoreError> {
        Ok(Index {
            table: txn
                .open_table(HASHED)
                .map_err(ctx("opening table hashed_packed"))?,
            run: Vec::new(),
        })
    }

    fn add(&mut self, key: &str, header: &[u8]) -> Result<(), StoreError> {
        let h: [u8; HEADER] = header
            .get(..HEADER)
            .and_then(|h| h.try_into().ok())
            .ok_or_else(|| StoreError(format!("the record of {key:?} is shorter than a header")))?;
        self.run.push((key_hash(key), key.to_string(), 0, Some(h)));
        if self.run.len() >= RUN {
            fold_run(&mut self.table, &mut self.run)?;
        }
        Ok(())
    }

    fn finish(mut self) -> Result<(), StoreError> {
        fold_run(&mut self.table, &mut self.run)
    }
}

/// Layouts 2 and 3's `hashed` rows become `hashed_packed`'s records.
fn pack_hashed(txn: &WriteTransaction) -> Result<(), StoreError> {
    {
        let old = txn
            .open_table(HASHED_V3)
            .map_err(ctx("opening the old table hashed"))?;
        let mut index = Index::new(txn)?;
        for item in old.iter().map_err(ctx("scanning hashed"))? {
            let (k, header) = item.map_err(ctx("scanning hashed"))?;
            let (_, key) = k.value();
            decode_header(key, header.value())?;
            index.add(key, header.value())?;
        }
        index.finish()?;
    }
    txn.delete_table(HASHED_V3)
        .map_err(ctx("removing the old table hashed"))?;
    Ok(())
}

fn from_layout_2(txn: &WriteTransaction, shown: &str) -> Result<(), StoreError> {
    pack_hashed(txn)?;
    {
        let old = txn
            .open_table(PENDING_V2)
            .map_err(ctx("opening layout 2's table pending"))?;
        let n = old.len().map_err(ctx("counting pending"))?;
        if n > 0 {
            log::info!("{shown}: migrating the store to layout {LAYOUT}: {n} pending index rows");
        }
        let kv = txn.open_table(KV).map_err(ctx("opening table kv"))?;
        let mut pending = txn
            .open_table(PENDING)
            .map_err(ctx("opening table pending_chunks"))?;
        // Renumbered from 0, in the same order: only the order counts.
        let mut rows = Rows::new(0);
        for item in old.iter().map_err(ctx("scanning pending"))? {
            let (_, key) = item.map_err(ctx("scanning pending"))?;
            let key = key.value();
            match kv.get(key).map_err(ctx("reading kv"))? {
                Some(rec) => {
                    let rec = rec.value();
                    decode_header(key, rec)?;
                    rows.push(&mut pending, key, Some(&rec[..HEADER]), None)?;
                }
                None => rows.push(&mut pending, key, None, None)?,
            }
        }
        rows.finish(&mut pending)?;
    }
    txn.delete_table(PENDING_V2)
        .map_err(ctx("removing layout 2's table pending"))?;
    Ok(())
}

fn from_layout_3(txn: &WriteTransaction, shown: &str) -> Result<(), StoreError> {
    pack_hashed(txn)?;
    {
        let old = txn
            .open_table(PENDING_V3)
            .map_err(ctx("opening layout 3's table pending_rows"))?;
        let n = old.len().map_err(ctx("counting pending_rows"))?;
        if n > 0 {
            log::info!("{shown}: migrating the store to layout {LAYOUT}: {n} change rows");
        }
        let mut pending = txn
            .open_table(PENDING)
            .map_err(ctx("opening table pending_chunks"))?;
        let mut rows = Rows::new(0);
        for item in old.iter().map_err(ctx("scanning pending_rows"))? {
            let (_, row) = item.map_err(ctx("scanning pending_rows"))?;
            let row = decode_row(row.value())?;
            let header = row.header.as_ref().map(|h| &h[..]);
            rows.push(&mut pending, &row.key, header, row.replaced)?;
        }
        rows.finish(&mut pending)?;
    }
    txn.delete_table(PENDING_V3)
        .map_err(ctx("removing layout 3's table pending_rows"))?;
    Ok(())
}

/// Layout 4's `by_origin` rows, read in order, become `by_origin_packed`'s
/// blocks.
fn from_layout_4(txn: &WriteTransaction, shown: &str) -> Result<(), StoreError> {
    {
        let old = txn
            .open_table(BY_ORIGIN_V4)
            .map_err(ctx("opening layout 4's table by_origin"))?;
        let n = old.len().map_err(ctx("counting by_origin"))?;
        if n > 0 {
            log::info!(
                "{shown}: migrating the store to layout {LAYOUT}: packing {n} by_origin rows"
            );
        }
        let mut table = txn
            .open_table(BY_ORIGIN)
            .map_err(ctx("opening table by_origin_packed"))?;
        let mut run = origins::Run::new();
        for item in old.iter().map_err(ctx("scanning by_origin"))? {
            let (k, _) = item.map_err(ctx("scanning by_origin"))?;
            let (origin, ms, counter, key) = k.value();
            let v = Version {
                ms,
                counter,
                origin,
            };
            run.push((key.to_string(), None, Some(v)));
            if run.len() == OPS_RUN {
                origins::apply_run(&mut table, &mut run)?;
            }
        }
        origins::apply_run(&mut table, &mut run)?;
    }
    txn.delete_table(BY_ORIGIN_V4)
        .map_err(ctx("removing layout 4's table by_origin"))?;
    Ok(())
}
