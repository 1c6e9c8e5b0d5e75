//! The most items of each list a peer message may hold, checked while it
//! is decoded: a count read from the wire never sizes an allocation, nor
//! lets a small message grow into a large one in memory.
//!
//! Postcard prefixes each list with its length and refuses one longer than
//! the bytes left; within them, a list grows with what arrives, so the
//! message's size bounds memory, but loosely: a hash of 0 is 1 byte on the
//! wire and 8 in memory, an empty bucket 2 and 32, so a 64 MiB body could
//! take 1 GiB. Each cap below is well above what an honest node sends, and
//! a list that claims more is refused at its length, before any item.

use std::cell::Cell;
use std::collections::BTreeMap;
use std::fmt;
use std::marker::PhantomData;

use serde::de::{Deserialize, Deserializer, Error, MapAccess, SeqAccess, Visitor};

/// Entries in one message. A node sends at most `batch_entries` (4096) per
/// batch; 16 times that leaves room for larger configured batches.
pub const MAX_ENTRIES: usize = 1 << 16;

/// Origins in a digest's hints or GC floors, and membership news: one per
/// ring member at most. No ring is near 65,536 nodes.
pub const MAX_ORIGINS: usize = 1 << 16;

/// Tree nodes named in a tree query, and answered in a tree reply: the
/// asker asks at most this many at once.
pub const MAX_TREE_NODES: usize = 4096;

/// Bytes of a tree reply: a 2-byte mask and 16 folds of 4 bytes for each
/// of [`MAX_TREE_NODES`] nodes.
pub const MAX_TREE_REPLY_BYTES: usize = MAX_TREE_NODES * (2 + 16 * 4);

/// Runs of tree nodes a sketch query covers: the asker merges adjacent
/// nodes into runs and asks at most this many at once.
pub const MAX_RANGES: usize = 4096;

/// Cells of a sketch in one reply (2.2 MB): the asker asks at most this
/// many at once.
pub const MAX_SKETCH_CELLS: usize = 1 << 16;

/// The end of the cells a sketch query may ask for: a difference this
/// far past what one exchange moves is reconciled a part at a time.
pub const MAX_SKETCH_END: u64 = 1 << 20;

/// Key hashes in one fetch: the asker sends at most `batch_entries`;
/// capped as [`MAX_ENTRIES`].
pub const MAX_FETCH: usize = MAX_ENTRIES;

/// Items preallocated for a list, whatever its length prefix says: the
/// rest grows with what really arrives.
const PREALLOC: usize = 1024;

thread_local! {
    /// The cap the message being decoded on this thread broke: postcard
    /// keeps no text of a custom error, so `decode` reads it from here.
    static BROKEN: Cell<Option<(&'static str, usize, usize)>> = const { Cell::new(None) };
}

/// Forgets any cap broken before (at the start of a decode).
pub(super) fn reset() {
    BROKEN.with(|b| b.set(None));
}

/// The cap the last decode on this thread broke, as a sentence.
pub(super) fn broken() -> Option<String> {
    BROKEN
        .with(Cell::take)
        .map(|(what, n, cap)| format!("{what}: {n} claimed, at most {cap} are accepted"))
}

fn refuse<E: Error>(what: &'static str, n: usize, cap: usize) -> E {
    BROKEN.with(|b| b.set(Some((what, n, cap))));
    E::custom(format_args!(
        "{what}: {n} claimed, at most {cap} are accepted"
    ))
}

/// A list of at most `cap` items, refused as soon as its length prefix
/// or its items go past it.
struct Capped<T> {
    what: &'static str,
    cap: usize,
    items: PhantomData<T>,
}

impl<'de, T: Deserialize<'de>> Visitor<'de> for Capped<T> {
    type Value = Vec<T>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "a list of at most {} {}", self.cap, self.what)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<T>, A::Error> {
        let claimed = seq.size_hint().unwrap_or(0);
        if claimed > self.cap {
            return Err(refuse(self.what, claimed, self.cap));
        }
        let mut out = Vec::with_capacity(claimed.min(PREALLOC));
        while let Some(item) = seq.next_element()? {
            if out.len() == self.cap {
                return Err(refuse(self.what, out.len() + 1, self.cap));
            }
            out.push(item);
        }
        Ok(out)
    }
}

fn capped<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
    what: &'static str,
    cap: usize,
) -> Result<Vec<T>, D::Error> {
    d.deserialize_seq(Capped {
        what,
        cap,
        items: PhantomData,
    })
}

/// A map of at most `cap` entries.
struct CappedMap<K, V> {
    what: &'static str,
    cap: usize,
    items: PhantomData<(K, V)>,
}

impl<'de, K: Deserialize<'de> + Ord, V: Deserialize<'de>> Visitor<'de> for CappedMap<K, V> {
    type Value = BTreeMap<K, V>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "a map of at most {} {}", self.cap, self.what)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<BTreeMap<K, V>, A::Error> {
        let claimed = map.size_hint().unwrap_or(0);
        if claimed > self.cap {
            return Err(refuse(self.what, claimed, self.cap));
        }
        let mut out = BTreeMap::new();
        while let Some((k, v)) = map.next_entry()? {
            if out.len() == self.cap {
                return Err(refuse(self.what, out.len() + 1, self.cap));
            }
            out.insert(k, v);
        }
        Ok(out)
    }
}

/// A digest's per-origin map (hints, GC floors).
pub(super) fn origins<'de, D, K, V>(d: D) -> Result<BTreeMap<K, V>, D::Error>
where
    D: Deserializer<'de>,
    K: Deserialize<'de> + Ord,
    V: Deserialize<'de>,
{
    d.deserialize_map(CappedMap {
        what: "origins in a digest",
        cap: MAX_ORIGINS,
        items: PhantomData,
    })
}

/// Membership news.
pub(super) fn news<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Vec<T>, D::Error> {
    capped(d, "membership news", MAX_ORIGINS)
}

/// The per-origin changes of a digest delta (`digest_diff`): one per
/// origin at most, as the maps they change.
pub(super) fn changes<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Vec<T>, D::Error> {
    capped(d, "origins in a digest", MAX_ORIGINS)
}

/// Membership news, when present at all (a digest delta's).
pub(super) fn some_news<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<Vec<T>>, D::Error> {
    struct News<T>(Vec<T>);

    impl<'de, T: Deserialize<'de>> Deserialize<'de> for News<T> {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            news(d).map(News)
        }
    }

    Option::<News<T>>::deserialize(d).map(|o| o.map(|n| n.0))
}

/// A message's entries.
pub(super) fn entries<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Vec<T>, D::Error> {
    capped(d, "entries in a message", MAX_ENTRIES)
}

/// The tree nodes a tree query names.
pub(super) fn tree_nodes<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Vec<T>, D::Error> {
    capped(d, "tree nodes in a query", MAX_TREE_NODES)
}

/// A list of `(first, count)` runs of tree nodes in a sketch query.
pub(super) fn ranges<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Vec<T>, D::Error> {
    capped(d, "node runs in a sketch query", MAX_RANGES)
}

/// Writes a byte string as one length and the bytes (as postcard writes
/// a list of bytes, only faster).
pub(super) fn put_bytes<S: serde::Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
    s.serialize_bytes(v)
}

/// A byte string of at most `cap` bytes, whole `unit`s of bytes.
struct CappedBytes {
    what: &'static str,
    unit: usize,
    cap: usize,
}

impl CappedBytes {
    fn take<E: Error>(&self, v: &[u8]) -> Result<Vec<u8>, E> {
        if v.len() > self.cap {
            return Err(refuse(self.what, v.len(), self.cap));
        }
        if !v.len().is_multiple_of(self.unit) {
            return Err(E::custom(format_args!(
                "{}: {} bytes are not whole items of {}",
                self.what,
                v.len(),
                self.unit
            )));
        }
        Ok(v.to_vec())
    }
}

impl<'de> Visitor<'de> for CappedBytes {
    type Value = Vec<u8>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "at most {} bytes of {}", self.cap, self.what)
    }

    fn visit_bytes<E: Error>(self, v: &[u8]) -> Result<Vec<u8>, E> {
        self.take(v)
    }

    fn visit_borrowed_bytes<E: Error>(self, v: &'de [u8]) -> Result<Vec<u8>, E> {
        self.take(v)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<u8>, A::Error> {
        let claimed = seq.size_hint().unwrap_or(0);
        if claimed > self.cap {
            return Err(refuse(self.what, claimed, self.cap));
        }
        let mut out = Vec::with_capacity(claimed.min(PREALLOC));
        while let Some(b) = seq.next_element::<u8>()? {
            if out.len() == self.cap {
                return Err(refuse(self.what, out.len() + 1, self.cap));
            }
            out.push(b);
        }
        self.take(&out)
    }
}

fn capped_bytes<'de, D: Deserializer<'de>>(
    d: D,
    what: &'static str,
    unit: usize,
    cap: usize,
) -> Result<Vec<u8>, D::Error> {
    d.deserialize_byte_buf(CappedBytes { what, unit, cap })
}

/// A tree reply's masks and folds.
pub(super) fn tree_children<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
    capped_bytes(d, "bytes of a tree reply", 1, MAX_TREE_REPLY_BYTES)
}

/// A sketch reply's cells.
pub(super) fn sketch_cells<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
    use super::sketch::CELL_BYTES;
    capped_bytes(
        d,
        "bytes of sketch cells",
        CELL_BYTES,
        MAX_SKETCH_CELLS * CELL_BYTES,
    )
}

/// A fetch's key hashes.
pub(super) fn fetch_keys<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
    capped_bytes(d, "bytes of key hashes in a fetch", 8, MAX_FETCH * 8)
}
