//! What the core needs of storage: the [`Store`] trait, its atomic
//! [`WriteBatch`], and the last-writer-wins rule every store merges by.
//!
//! A [`WriteBatch`] is the unit of atomicity: it commits whole or not at all.
//! A store keeps the indexes the protocol reads (by origin, by bucket, and
//! tombstones by age) up to date inside the same transaction, so no cycle
//! ever needs a scan of the whole dataset.

use super::entry::{Entry, Origin, Version};

/// A failure of the storage engine. When a commit fails, nothing of its batch
/// is applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreError(pub String);

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "store: {}", self.0)
    }
}

impl std::error::Error for StoreError {}

/// Everything one atomic commit does, in this order: clear (if asked), merge
/// the entries, collect the tombstones, write the meta values.
#[derive(Debug, Default, Clone)]
pub struct WriteBatch {
    /// Delete every entry first (a resync from scratch).
    pub clear_first: bool,
    /// Entries to merge under last-writer-wins.
    pub entries: Vec<Entry>,
    /// Tombstones to collect: each is removed only if it is still the stored
    /// entry of its key with exactly this version.
    pub collect: Vec<(String, Version)>,
    /// Small named values kept beside the data (clock, watermarks, flags).
    pub meta: Vec<(String, Vec<u8>)>,
}

/// What the digest needs of one stored entry: no value, no key bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    /// [`key_hash`](super::entry::key_hash) of its key.
    pub key_hash: u64,
    /// Its version.
    pub version: Version,
    /// Whether it is a tombstone.
    pub tombstone: bool,
}

impl Stamp {
    /// The stamp of `e`.
    pub fn of(e: &Entry) -> Stamp {
        Stamp {
            key_hash: super::entry::key_hash(&e.key),
            version: e.version,
            tombstone: e.is_tombstone(),
        }
    }

    /// Its entry's hash in the digest tree
    /// ([`stamp_hash`](super::entry::stamp_hash)).
    pub fn hash(&self) -> u64 {
        super::entry::stamp_hash(self.key_hash, &self.version, self.tombstone)
    }
}

/// What a commit did to one entry of [`WriteBatch::entries`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Merged {
    /// The entry was stored. `replaced` is the entry it displaced, if any:
    /// its version and whether it was a tombstone.
    Applied {
        /// The displaced entry's version and tombstone flag.
        replaced: Option<(Version, bool)>,
    },
    /// The store already held this version or a newer one; nothing changed.
    Ignored,
}

/// The bucket of a key in the digest tree: the top `bits` bits of its hash.
pub fn bucket_of(key: &str, bits: u32) -> u32 {
    if bits == 0 {
        return 0;
    }
    (super::entry::key_hash(key) >> (64 - bits)) as u32
}

/// Last-writer-wins, decided once for every store: what merging `incoming`
/// over the stored entry of its key (`stored`: that entry's version and
/// tombstone flag, if the key is stored) must do. A store writes `incoming`
/// only on [`Merged::Applied`].
pub fn merge_decision(incoming: &Entry, stored: Option<(Version, bool)>) -> Merged {
    match stored {
        Some((v, _)) if !incoming.wins_over(&v) => Merged::Ignored,
        replaced => Merged::Applied { replaced },
    }
}

/// Reads that may run beside the store's commits, with no access to the
/// node that owns the store: each call sees every batch committed before it
/// began, whole, and nothing of a commit still in progress.
pub trait Reads: Send + Sync {
    /// As [`Store::get`].
    fn get(&self, key: &str) -> Result<Option<Entry>, StoreError>;

    /// As [`Store::range`].
    fn range(
        &self,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Entry>, StoreError>;
}

/// A node's storage.
pub trait Store {
    /// The stored entry of `key`, tombstones included.
    fn get(&self, key: &str) -> Result<Option<Entry>, StoreError>;

    /// Commits a batch atomically, returning one [`Merged`] per entry of
    /// `batch.entries`, in order. Entries with the same key within one batch
    /// are merged in order, so the highest version wins.
    fn commit(&mut self, batch: WriteBatch) -> Result<Vec<Merged>, StoreError>;

    /// Entries in key order, after `after` (exclusive), whose key starts with
    /// `prefix`, at most `limit`. Tombstones are included; callers filter.
    fn range(
        &self,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Entry>, StoreError>;

    /// Entries written by `origin` with a version above `after`, in version
    /// order, at most `limit`.
    fn by_origin(
        &self,
        origin: Origin,
        after: Version,
        limit: usize,
    ) -> Result<Vec<Entry>, StoreError>;

    /// The entries of one bucket (see [`bucket_of`] with `bits`), in key order.
    fn bucket(&self, bucket: u32, bits: u32) -> Result<Vec<Entry>, StoreError>;

    /// Tombstones whose version's physical time is below `before_ms`, oldest
    /// first, at most `limit`.
    fn old_tombstones(
        &self,
        before_ms: u64,
        limit: usize,
    ) -> Result<Vec<(String, Version)>, StoreError>;

    /// Calls `f` on every stored entry, once, in any order.
    fn for_each(&self, f: &mut dyn FnMut(&Entry)) -> Result<(), StoreError>;

    /// Calls `f` on the [`Stamp`] of every stored entry, once, in any
    /// order: what opening needs to rebuild the digest. A store that keeps
    /// stamps apart from values answers without reading the values.
    fn for_each_stamp(&self, f: &mut dyn FnMut(&Stamp)) -> Result<(), StoreError> {
        self.for_each(&mut |e: &Entry| f(&Stamp::of(e)))
    }

    /// A meta value written by an earlier [`WriteBatch`].
    fn meta(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError>;

    /// A handle for reads outside the owner's lock, if the store can serve
    /// reads while it commits. A store that holds one open keeps its data
    /// open until the handle is dropped too.
    fn reads(&self) -> Option<Box<dyn Reads>> {
        None
    }

    /// While on, a commit that returns `Ok` is applied and read back but
    /// need not be durable until the next [`Store::sync`] (or the next
    /// commit made with it off). The core never turns it on: the service
    /// does, around merges whose relays may leave before the disk has
    /// them (`service/committer.rs`). A store that is always durable
    /// ignores it.
    fn set_deferred(&mut self, _on: bool) {}

    /// Makes every commit made while deferred durable, and turns deferral
    /// off. An error means they may be lost in a crash.
    fn sync(&mut self) -> Result<(), StoreError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(ms: u64, origin: Origin, value: Option<&[u8]>) -> Entry {
        Entry {
            key: "k".to_string(),
            value: value.map(<[u8]>::to_vec),
            version: Version {
                ms,
                counter: 0,
                origin,
            },
        }
    }

    #[test]
    fn a_new_key_is_applied_replacing_nothing() {
        let e = entry(5, 1, Some(b"v"));
        assert_eq!(merge_decision(&e, None), Merged::Applied { replaced: None });
    }

    #[test]
    fn a_newer_version_replaces_and_reports_what_it_displaced() {
        let old = entry(5, 1, None);
        let new = entry(6, 0, Some(b"v"));
        assert_eq!(
            merge_decision(&new, Some((old.version, true))),
            Merged::Applied {
                replaced: Some((old.version, true))
            }
        );
    }

    #[test]
    fn an_equal_or_older_version_is_ignored() {
        let stored = entry(5, 1, Some(b"a"));
        // The same version is the same write, even with another value.
        let same = entry(5, 1, Some(b"b"));
        assert_eq!(
            merge_decision(&same, Some((stored.version, false))),
            Merged::Ignored
        );
        let older = entry(4, 9, None);
        assert_eq!(
            merge_decision(&older, Some((stored.version, false))),
            Merged::Ignored
        );
    }

    #[test]
    fn the_origin_breaks_a_tie_of_time() {
        let stored = entry(5, 1, Some(b"a"));
        let higher = entry(5, 2, Some(b"b"));
        assert!(matches!(
            merge_decision(&higher, Some((stored.version, false))),
            Merged::Applied { .. }
        ));
    }

    #[test]
    fn buckets_are_the_top_bits_of_the_key_hash() {
        assert_eq!(bucket_of("anything", 0), 0);
        let h = crate::core::entry::key_hash("anything");
        assert_eq!(bucket_of("anything", 4), (h >> 60) as u32);
        assert!(bucket_of("anything", 20) < 1 << 20);
    }
}
