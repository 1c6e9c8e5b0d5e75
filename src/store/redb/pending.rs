//! The redb store's change list, `pending_chunks`: one row per change of
//! a key, saying what the key's index rows became, so that both indexes
//! derived from it are brought up to date in bulk, reading no record:
//! `by_origin` before anything reads it (`fold_origins`), `hashed` once
//! the list is long (`hashed.rs`, which then empties it).
//!
//! A row is a flag byte, the key's new 17-byte record header if it has a
//! record (flag `PRESENT`), the version its record replaced if one did
//! (flag `REPLACED`: ms u64, counter u32, origin u32, big-endian), then
//! the key. Applying a key's rows in order leaves its index rows as its
//! last row says whatever was applied before, so a fold may run any rows
//! again: after a crash, the rows are simply folded from the first.
//!
//! Rows are numbered in commit order, and stored in chunks: the rows of
//! one commit, at most [`CHUNK`] to a chunk, under the number of the
//! chunk's first row, each row led by its length (u16, little-endian).
//! One insert per chunk, not per row: a row per insert cost the hot path
//! nearly as much as writing the record itself (layout 3).

use ::redb::{ReadableTable, Table};

use super::ctx;
use super::record::{decode_header, put_version, read_version, HEADER, VERSION};
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

/// Most rows in one chunk: bounds a chunk's size (about 1 MiB with keys of
/// 1 KiB) whatever the size of a commit.
pub(super) const CHUNK: u32 = 1024;

/// The rows of one commit on their way into chunks.
pub(super) struct Rows {
    /// The number of the next row.
    next: u64,
    /// The rows of the chunk being filled, each led by its length.
    chunk: Vec<u8>,
    /// Rows in `chunk`.
    held: u32,
    /// The row being encoded.
    row: Vec<u8>,
}

impl Rows {
    /// Rows numbered from `next` on.
    pub(super) fn new(next: u64) -> Rows {
        Rows {
            next,
            chunk: Vec::new(),
            held: 0,
            row: Vec::with_capacity(256),
        }
    }

    /// Adds the row of a change of `key` (see [`encode_row`]), writing the
    /// chunk into `table` once it is full.
    pub(super) fn push(
        &mut self,
        table: &mut Table<'_, u64, &'static [u8]>,
        key: &str,
        header: Option<&[u8]>,
        replaced: Option<Version>,
    ) -> Result<(), StoreError> {
        encode_row(&mut self.row, key, header, replaced);
        // A key is at most 1 KiB (checked before any commit): a row
        // always fits its u16 length.
        let len = u16::try_from(self.row.len())
            .map_err(|_| StoreError(format!("a change row of {} bytes", self.row.len())))?;
        self.chunk.extend_from_slice(&len.to_le_bytes());
        self.chunk.extend_from_slice(&self.row);
        self.held += 1;
        self.next += 1;
        if self.held == CHUNK {
            self.flush(table)?;
        }
        Ok(())
    }

    /// Writes what is held as a chunk; returns the number of the next row.
    pub(super) fn finish(
        mut self,
        table: &mut Table<'_, u64, &'static [u8]>,
    ) -> Result<u64, StoreError> {
        self.flush(table)?;
        Ok(self.next)
    }

    fn flush(&mut self, table: &mut Table<'_, u64, &'static [u8]>) -> Result<(), StoreError> {
        if self.held == 0 {
            return Ok(());
        }
        let first = self.next - u64::from(self.held);
        table
            .insert(first, self.chunk.as_slice())
            .map_err(ctx("writing pending_chunks"))?;
        self.chunk.clear();
        self.held = 0;
        Ok(())
    }
}

/// The rows of `chunk`, in order, not yet decoded.
fn rows_of(chunk: &[u8]) -> impl Iterator<Item = Result<&[u8], StoreError>> + '_ {
    let mut rest = chunk;
    std::iter::from_fn(move || {
        let (len, tail) = rest.split_first_chunk::<2>()?;
        let len = usize::from(u16::from_le_bytes(*len));
        let Some((row, tail)) = tail.split_at_checked(len) else {
            rest = &[];
            return Some(Err(StoreError(format!(
                "corrupt pending chunk of {} bytes: a row cut short",
                chunk.len()
            ))));
        };
        rest = tail;
        Some(Ok(row))
    })
}

/// Rows in `chunk`, counted by their lengths only.
fn rows_in(chunk: &[u8]) -> u64 {
    let (mut rest, mut n) = (chunk, 0);
    while let Some((len, tail)) = rest.split_first_chunk::<2>() {
        let len = usize::from(u16::from_le_bytes(*len));
        rest = tail.get(len..).unwrap_or_default();
        n += 1;
    }
    n
}

/// Calls `f` with every row numbered `from` and up, and its number, in
/// order.
pub(super) fn for_each_row(
    table: &impl ReadableTable<u64, &'static [u8]>,
    from: u64,
    mut f: impl FnMut(u64, Row) -> Result<(), StoreError>,
) -> Result<(), StoreError> {
    // The chunk holding row `from`, if one starts before it.
    let start = match table
        .range(..=from)
        .map_err(ctx("scanning pending_chunks"))?
        .next_back()
    {
        Some(item) => item.map_err(ctx("scanning pending_chunks"))?.0.value(),
        None => from,
    };
    for item in table
        .range(start..)
        .map_err(ctx("scanning pending_chunks"))?
    {
        let (first, chunk) = item.map_err(ctx("scanning pending_chunks"))?;
        for (seq, row) in (first.value()..).zip(rows_of(chunk.value())) {
            let row = row?;
            if seq >= from {
                f(seq, decode_row(row)?)?;
            }
        }
    }
    Ok(())
}

/// Rows waiting in `table`, given the number of the next row to be
/// written.
pub(super) fn waiting(
    table: &impl ReadableTable<u64, &'static [u8]>,
    next: u64,
) -> Result<u64, StoreError> {
    let first = table.first().map_err(ctx("reading pending_chunks"))?;
    Ok(first.map_or(0, |(k, _)| next.saturating_sub(k.value())))
}

/// The number of the next row to be written into `table`.
pub(super) fn next_row(table: &impl ReadableTable<u64, &'static [u8]>) -> Result<u64, StoreError> {
    let last = table.last().map_err(ctx("reading pending_chunks"))?;
    Ok(last.map_or(0, |(k, chunk)| k.value() + rows_in(chunk.value())))
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
