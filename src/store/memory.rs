//! An in-memory [`Store`], for the simulator and tests. It can be told to
//! fail, once or by a seeded chance, to show that a failed commit changes
//! nothing.

use std::collections::{BTreeMap, BTreeSet};

use super::{merge_decision, Merged, Store, StoreError, WriteBatch};
use crate::core::entry::{key_hash, Entry, Origin, Version};
use crate::core::rng::Rng;

/// A [`Store`] held in memory.
#[derive(Debug, Default, Clone)]
pub struct MemoryStore {
    kv: BTreeMap<String, (Version, Option<Vec<u8>>)>,
    origin: BTreeSet<(Origin, Version, String)>,
    tombs: BTreeSet<(u64, Version, String)>,
    /// Every stored key by its hash, so that a bucket (a range of hashes)
    /// is read without scanning the store: tree comparisons run while
    /// writes go on, and the simulator's stores grow large under load.
    hashed: BTreeSet<(u64, String)>,
    meta: BTreeMap<String, Vec<u8>>,
    /// When set, the next commit fails with this message and changes nothing.
    pub fail_next_commit: Option<String>,
    /// When set, each commit fails with this chance, drawn from this
    /// generator so that a seed replays the same failures.
    commit_faults: Option<(f64, Rng)>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// From now on each commit fails (changing nothing) with chance `p`,
    /// drawn from a generator seeded with `seed`; `p` = 0 turns it off.
    pub fn set_commit_faults(&mut self, p: f64, seed: u64) {
        self.commit_faults = (p > 0.0).then(|| (p, Rng::new(seed)));
    }

    /// Takes the commit faults away (to be put back with
    /// [`MemoryStore::restore_commit_faults`]), so that, say, a simulated
    /// restart can open the store without them.
    pub fn take_commit_faults(&mut self) -> Option<(f64, Rng)> {
        self.commit_faults.take()
    }

    /// Puts back what [`MemoryStore::take_commit_faults`] took.
    pub fn restore_commit_faults(&mut self, faults: Option<(f64, Rng)>) {
        self.commit_faults = faults;
    }

    /// Number of stored entries, tombstones included.
    pub fn len(&self) -> usize {
        self.kv.len()
    }

    /// True when nothing is stored.
    pub fn is_empty(&self) -> bool {
        self.kv.is_empty()
    }

    /// Removes a key behind the protocol's back, as a damaged disk would:
    /// used to test that the digest notices.
    pub fn lose(&mut self, key: &str) -> Option<Entry> {
        let (version, value) = self.kv.remove(key)?;
        self.hashed.remove(&(key_hash(key), key.to_string()));
        self.origin
            .remove(&(version.origin, version, key.to_string()));
        self.tombs.remove(&(version.ms, version, key.to_string()));
        Some(Entry {
            key: key.to_string(),
            value,
            version,
        })
    }

    fn unindex(&mut self, key: &str, version: Version, tombstone: bool) {
        self.origin
            .remove(&(version.origin, version, key.to_string()));
        if tombstone {
            self.tombs.remove(&(version.ms, version, key.to_string()));
        }
    }

    fn merge_one(&mut self, e: &Entry) -> Merged {
        let stored = self.kv.get(&e.key).map(|(v, val)| (*v, val.is_none()));
        let Merged::Applied { replaced } = merge_decision(e, stored) else {
            return Merged::Ignored;
        };
        if let Some((v, tomb)) = replaced {
            self.unindex(&e.key, v, tomb);
        }
        if self
            .kv
            .insert(e.key.clone(), (e.version, e.value.clone()))
            .is_none()
        {
            self.hashed.insert((key_hash(&e.key), e.key.clone()));
        }
        self.origin
            .insert((e.version.origin, e.version, e.key.clone()));
        if e.is_tombstone() {
            self.tombs.insert((e.version.ms, e.version, e.key.clone()));
        }
        Merged::Applied { replaced }
    }
}

fn entry(key: &str, v: &(Version, Option<Vec<u8>>)) -> Entry {
    Entry {
        key: key.to_string(),
        value: v.1.clone(),
        version: v.0,
    }
}

impl Store for MemoryStore {
    fn get(&self, key: &str) -> Result<Option<Entry>, StoreError> {
        Ok(self.kv.get(key).map(|v| entry(key, v)))
    }

    fn commit(&mut self, batch: WriteBatch) -> Result<Vec<Merged>, StoreError> {
        if let Some(msg) = self.fail_next_commit.take() {
            return Err(StoreError(msg));
        }
        if let Some((p, rng)) = &mut self.commit_faults {
            if rng.chance(*p) {
                return Err(StoreError("injected commit failure".into()));
            }
        }
        if batch.clear_first {
            self.kv.clear();
            self.hashed.clear();
            self.origin.clear();
            self.tombs.clear();
        }
        let out = batch.entries.iter().map(|e| self.merge_one(e)).collect();
        for (key, version) in &batch.collect {
            if matches!(self.kv.get(key), Some((v, None)) if v == version) {
                self.kv.remove(key);
                self.hashed.remove(&(key_hash(key), key.clone()));
                self.unindex(key, *version, true);
            }
        }
        for (k, v) in batch.meta {
            self.meta.insert(k, v);
        }
        Ok(out)
    }

    fn range(
        &self,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Entry>, StoreError> {
        use std::ops::Bound;
        let start = match after {
            Some(a) if a >= prefix => Bound::Excluded(a.to_string()),
            _ => Bound::Included(prefix.to_string()),
        };
        Ok(self
            .kv
            .range((start, Bound::Unbounded))
            .take_while(|(k, _)| k.starts_with(prefix))
            .take(limit)
            .map(|(k, v)| entry(k, v))
            .collect())
    }

    fn by_origin(
        &self,
        origin: Origin,
        after: Version,
        limit: usize,
    ) -> Result<Vec<Entry>, StoreError> {
        use std::ops::Bound;
        let start = Bound::Included((origin, after, String::new()));
        Ok(self
            .origin
            .range((start, Bound::Unbounded))
            .take_while(|(o, _, _)| *o == origin)
            .filter(|(_, v, _)| *v > after)
            .take(limit)
            .filter_map(|(_, _, k)| self.kv.get(k).map(|v| entry(k, v)))
            .collect())
    }

    fn bucket(&self, bucket: u32, bits: u32) -> Result<Vec<Entry>, StoreError> {
        if bits == 0 {
            // One bucket, 0, holds every key.
            if bucket != 0 {
                return Ok(Vec::new());
            }
            return Ok(self.kv.iter().map(|(k, v)| entry(k, v)).collect());
        }
        let bits = bits.min(63);
        if u64::from(bucket) >> bits != 0 {
            return Ok(Vec::new());
        }
        let shift = 64 - bits;
        let lo = u64::from(bucket) << shift;
        let hi = lo.checked_add(1u64 << shift);
        let mut out: Vec<Entry> = self
            .hashed
            .range((lo, String::new())..)
            .take_while(|(h, _)| hi.is_none_or(|hi| *h < hi))
            .filter_map(|(_, k)| self.kv.get(k).map(|v| entry(k, v)))
            .collect();
        // In key order, as the trait promises.
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    fn old_tombstones(
        &self,
        before_ms: u64,
        limit: usize,
    ) -> Result<Vec<(String, Version)>, StoreError> {
        Ok(self
            .tombs
            .iter()
            .take_while(|(ms, _, _)| *ms < before_ms)
            .take(limit)
            .map(|(_, v, k)| (k.clone(), *v))
            .collect())
    }

    fn for_each(&self, f: &mut dyn FnMut(&Entry)) -> Result<(), StoreError> {
        for (k, v) in &self.kv {
            f(&entry(k, v));
        }
        Ok(())
    }

    fn meta(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.meta.get(name).cloned())
    }
}
