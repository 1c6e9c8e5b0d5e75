//! The redb store's commit: one write transaction per [`WriteBatch`],
//! whose hot path writes the key's record (one descent of `kv`: the insert
//! hands back the record it replaced) and adds one row to the commit's
//! change list, written as a few chunks (`pending.rs`), from which both
//! indexes are derived in bulk; nothing keyed by a random hash, nothing
//! per writer.

use ::redb::{ReadableTable, Table, WriteTransaction};

use super::hashed;
use super::pending::{waiting, Rows};
use super::record::{decode_header, encode_into, HEADER};
use super::{ctx, BY_ORIGIN, HASHED, KV, META, PENDING, TOMBS};
use crate::core::entry::{Entry, Version};
use crate::core::store::{merge_decision, Merged, StoreError, WriteBatch};

/// The tables of one write transaction, with a reused encoding buffer.
struct Writer<'t> {
    kv: Table<'t, &'static str, &'static [u8]>,
    tombs: Table<'t, (u64, u32, u32, &'static str), ()>,
    pending: Table<'t, u64, &'static [u8]>,
    /// The commit's change list.
    rows: Rows,
    buf: Vec<u8>,
    /// A replaced record kept to put back when the incoming entry loses.
    old: Vec<u8>,
}

impl Writer<'_> {
    /// The version and tombstone flag of the stored entry of `key`.
    fn stored(&self, key: &str) -> Result<Option<(Version, bool)>, StoreError> {
        match self.kv.get(key).map_err(ctx("reading kv"))? {
            Some(rec) => decode_header(key, rec.value()).map(Some),
            None => Ok(None),
        }
    }

    /// Notes the change of `key`: with `present`, its record is the one
    /// just encoded in `buf`, whose header the row carries; without, the
    /// key is gone. `replaced` is the version it replaced. Gathered, and
    /// written a chunk at a time: appends, which dirty the last pages of
    /// `pending_chunks` and no other.
    fn touch(
        &mut self,
        key: &str,
        present: bool,
        replaced: Option<Version>,
    ) -> Result<(), StoreError> {
        let header = present.then(|| &self.buf[..HEADER]);
        self.rows.push(&mut self.pending, key, header, replaced)
    }

    /// Removes the `tombs` row of `key` at `version`, if a tombstone.
    fn untomb(&mut self, key: &str, version: Version, tombstone: bool) -> Result<(), StoreError> {
        if tombstone {
            self.tombs
                .remove((version.ms, version.counter, version.origin, key))
                .map_err(ctx("updating tombs"))?;
        }
        Ok(())
    }

    fn merge_one(&mut self, e: &Entry) -> Result<Merged, StoreError> {
        let key = e.key.as_str();
        let v = e.version;
        encode_into(&mut self.buf, &v, e.value.as_deref());
        // Written first, decided after: the insert's descent hands back the
        // record it replaced, and the rare loser puts that record back.
        let (decision, stored) = match self
            .kv
            .insert(key, self.buf.as_slice())
            .map_err(ctx("writing kv"))?
        {
            Some(old) => {
                let rec = old.value();
                let stored = decode_header(key, rec)?;
                let decision = merge_decision(e, Some(stored));
                if decision == Merged::Ignored {
                    self.old.clear();
                    self.old.extend_from_slice(rec);
                }
                (decision, true)
            }
            None => (merge_decision(e, None), false),
        };
        let Merged::Applied { replaced } = decision else {
            if stored {
                self.kv
                    .insert(key, self.old.as_slice())
                    .map_err(ctx("writing kv"))?;
            } else {
                self.kv.remove(key).map_err(ctx("writing kv"))?;
            }
            return Ok(Merged::Ignored);
        };
        if let Some((v, tomb)) = replaced {
            self.untomb(key, v, tomb)?;
        }
        if e.is_tombstone() {
            self.tombs
                .insert((v.ms, v.counter, v.origin, key), ())
                .map_err(ctx("updating tombs"))?;
        }
        self.touch(key, true, replaced.map(|(v, _)| v))?;
        Ok(Merged::Applied { replaced })
    }

    fn collect_one(&mut self, key: &str, version: Version) -> Result<(), StoreError> {
        if self.stored(key)? != Some((version, true)) {
            return Ok(());
        }
        self.kv.remove(key).map_err(ctx("writing kv"))?;
        self.untomb(key, version, true)?;
        self.touch(key, false, Some(version))
    }
}

/// Applies `batch` in `txn` (not committed here); `next_seq` is the number
/// of the next change row, moved past the rows written; `origins_from` is
/// the first row not yet in `by_origin`. Says whether it folded the rows
/// (so all are in both indexes). On error, the caller drops `txn` and
/// nothing of the batch is applied.
pub(super) fn apply(
    txn: &WriteTransaction,
    batch: &WriteBatch,
    next_seq: &mut u64,
    origins_from: u64,
) -> Result<(Vec<Merged>, bool), StoreError> {
    if batch.clear_first {
        for (name, res) in [
            ("kv", txn.delete_table(KV)),
            ("by_origin", txn.delete_table(BY_ORIGIN)),
            ("hashed", txn.delete_table(HASHED)),
            ("pending", txn.delete_table(PENDING)),
            ("tombs", txn.delete_table(TOMBS)),
        ] {
            res.map_err(|e| StoreError(format!("redb: clearing table {name}: {e}")))?;
        }
        // Both indexes are read outside write transactions, which do not
        // create a table: they must exist, empty, after a clear.
        txn.open_table(HASHED)
            .map_err(ctx("recreating table hashed"))?;
        txn.open_table(BY_ORIGIN)
            .map_err(ctx("recreating table by_origin"))?;
    }
    let open = |name: &str| format!("opening table {name}");
    let (out, pending) = {
        let mut w = Writer {
            kv: txn.open_table(KV).map_err(ctx(&open("kv")))?,
            tombs: txn.open_table(TOMBS).map_err(ctx(&open("tombs")))?,
            pending: txn.open_table(PENDING).map_err(ctx(&open("pending")))?,
            rows: Rows::new(*next_seq),
            buf: Vec::with_capacity(256),
            old: Vec::new(),
        };
        let mut out = Vec::with_capacity(batch.entries.len());
        for e in &batch.entries {
            out.push(w.merge_one(e)?);
        }
        for (key, version) in &batch.collect {
            w.collect_one(key, *version)?;
        }
        let Writer {
            mut pending, rows, ..
        } = w;
        *next_seq = rows.finish(&mut pending)?;
        let waiting = waiting(&pending, *next_seq)?;
        (out, waiting)
    };
    let mut meta = txn.open_table(META).map_err(ctx(&open("meta")))?;
    for (name, value) in &batch.meta {
        meta.insert(name.as_str(), value.as_slice())
            .map_err(ctx("writing meta"))?;
    }
    drop(meta);
    let folded = hashed::fold_due(txn, pending)?;
    if folded {
        hashed::fold(txn, origins_from)?;
    }
    Ok((out, folded))
}
