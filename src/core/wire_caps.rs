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

/// Tree nodes named in a tree query or answered in a tree reply: the
/// asker truncates to 4096 (`repair::MAX_TREE_NODES`).
pub const MAX_TREE_NODES: usize = 4096;

/// Buckets in a bucket query: the asker truncates to 1024
/// (`repair::MAX_BUCKETS`).
pub const MAX_BUCKETS: usize = 1024;

/// Hashes the asker lists for one bucket: one per entry it holds there. At
/// the default tree depth a bucket holds about one entry in 65,536, so this
/// is reached at billions of keys; the asker truncates to it.
pub const MAX_BUCKET_HASHES: usize = 1 << 16;

/// Hashes in a whole bucket query, all buckets together: 8 MiB of hashes,
/// which the asker stops adding buckets at.
pub const MAX_QUERY_HASHES: usize = 1 << 20;

/// Hashes in a bucket reply's `want` list: the replier truncates it to
/// `batch_entries`; capped as [`MAX_ENTRIES`].
pub const MAX_WANT: usize = MAX_ENTRIES;

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

/// The child hashes a tree reply holds, one array per node.
pub(super) fn tree_children<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Vec<T>, D::Error> {
    capped(d, "tree nodes in a reply", MAX_TREE_NODES)
}

/// A bucket reply's `want` list.
pub(super) fn want<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Vec<T>, D::Error> {
    capped(d, "hashes in a want list", MAX_WANT)
}

/// One bucket's hash list in a bucket query.
struct BucketHashes(Vec<u64>);

impl<'de> Deserialize<'de> for BucketHashes {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        capped(d, "hashes in one bucket", MAX_BUCKET_HASHES).map(BucketHashes)
    }
}

/// A bucket query's buckets, each with its hashes: at most [`MAX_BUCKETS`]
/// buckets, [`MAX_BUCKET_HASHES`] hashes in one, [`MAX_QUERY_HASHES`] in
/// all.
pub(super) fn buckets<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<(u32, Vec<u64>)>, D::Error> {
    struct Buckets;

    impl<'de> Visitor<'de> for Buckets {
        type Value = Vec<(u32, Vec<u64>)>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "a list of at most {MAX_BUCKETS} buckets")
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            let claimed = seq.size_hint().unwrap_or(0);
            if claimed > MAX_BUCKETS {
                return Err(refuse("buckets in a query", claimed, MAX_BUCKETS));
            }
            let mut out = Vec::with_capacity(claimed.min(PREALLOC));
            let mut hashes = 0usize;
            while let Some((b, BucketHashes(hs))) = seq.next_element::<(u32, BucketHashes)>()? {
                if out.len() == MAX_BUCKETS {
                    return Err(refuse("buckets in a query", out.len() + 1, MAX_BUCKETS));
                }
                hashes += hs.len();
                if hashes > MAX_QUERY_HASHES {
                    return Err(refuse("hashes in a query", hashes, MAX_QUERY_HASHES));
                }
                out.push((b, hs));
            }
            Ok(out)
        }
    }

    d.deserialize_seq(Buckets)
}
