//! The data model: keys, values, tombstones and their versions.

use serde::{Deserialize, Serialize};
use twox_hash::XxHash3_64;

/// The ring position of the node that made a write, when it made it.
///
/// It is part of every [`Version`] as the last tie-break, and it lets a
/// relaying node know how far along the ring an entry has travelled.
pub type Origin = u32;

/// Longest key accepted, in bytes of UTF-8 (the brief: "at most 1 KiB").
pub const MAX_KEY_BYTES: usize = 1024;

/// A hybrid logical clock timestamp (Kulkarni et al. 2014) with the origin as
/// tie-break. Versions are totally ordered: the field order is the order.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct Version {
    /// Physical milliseconds since the Unix epoch, as the writer's clock saw them.
    pub ms: u64,
    /// Logical counter, for writes within the same millisecond.
    pub counter: u32,
    /// Ring position of the writer.
    pub origin: Origin,
}

impl Version {
    /// The smallest version from `origin`: every real write is above it.
    pub fn zero(origin: Origin) -> Self {
        Version {
            ms: 0,
            counter: 0,
            origin,
        }
    }
}

impl std::fmt::Display for Version {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}@{}", self.ms, self.counter, self.origin)
    }
}

impl std::str::FromStr for Version {
    type Err = String;

    /// The form [`Version`]'s `Display` writes: `ms.counter@origin`.
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || {
            format!("{s:?} is not a version: a version reads ms.counter@origin, as a write's answer gives it")
        };
        let (rest, origin) = s.rsplit_once('@').ok_or_else(bad)?;
        let (ms, counter) = rest.split_once('.').ok_or_else(bad)?;
        Ok(Version {
            ms: ms.parse().map_err(|_| bad())?,
            counter: counter.parse().map_err(|_| bad())?,
            origin: origin.parse().map_err(|_| bad())?,
        })
    }
}

/// One key's state: a value or a tombstone, and the version that wrote it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// The key, UTF-8, at most [`MAX_KEY_BYTES`].
    pub key: String,
    /// The value, or `None` for a tombstone (a delete).
    #[serde(with = "super::value_serde")]
    pub value: Option<Vec<u8>>,
    /// Who wrote it and when.
    pub version: Version,
}

impl Entry {
    /// True when this entry records a delete.
    pub fn is_tombstone(&self) -> bool {
        self.value.is_none()
    }

    /// Whether `self` should replace `stored` under last-writer-wins.
    /// Equal versions are the same write, so they never replace each other.
    pub fn wins_over(&self, stored: &Version) -> bool {
        self.version > *stored
    }

    /// A 64-bit hash of the key and version, the unit of the digest's tree.
    /// Values are not hashed: two entries with the same version are the same
    /// write, and hashing values would cost a pass over every byte merged.
    pub fn hash64(&self) -> u64 {
        entry_hash(&self.key, &self.version, self.is_tombstone())
    }

    /// Bytes this entry takes in a message, roughly: used for byte budgets.
    pub fn wire_len(&self) -> usize {
        self.key.len() + self.value.as_ref().map_or(0, Vec::len) + 24
    }
}

/// Hash of one entry's identity (key, version, tombstone or not).
pub fn entry_hash(key: &str, version: &Version, tombstone: bool) -> u64 {
    stamp_hash(key_hash(key), version, tombstone)
}

/// [`entry_hash`] from the key's [`key_hash`], so that an entry costs one
/// hash of its key: XXH3-64 of the 25 bytes key hash, ms, counter, origin
/// (little-endian) and the tombstone flag (0 or 1).
///
/// These hashes are XORed into the digest tree and compared between nodes:
/// they are part of the wire protocol. Nothing here needs a cryptographic
/// hash: the tree only detects differences between honest replicas (a
/// writer with a token can corrupt data more simply than by crafting
/// collisions), and a 64-bit prefix of a public hash can be steered into
/// a bucket as easily as this one.
pub fn stamp_hash(key_hash: u64, version: &Version, tombstone: bool) -> u64 {
    let mut b = [0u8; 25];
    b[0..8].copy_from_slice(&key_hash.to_le_bytes());
    b[8..16].copy_from_slice(&version.ms.to_le_bytes());
    b[16..20].copy_from_slice(&version.counter.to_le_bytes());
    b[20..24].copy_from_slice(&version.origin.to_le_bytes());
    b[24] = u8::from(tombstone);
    XxHash3_64::oneshot(&b)
}

/// A 64-bit hash of a key alone (XXH3-64 of its UTF-8 bytes): it places
/// the key in a bucket of the tree.
pub fn key_hash(key: &str) -> u64 {
    XxHash3_64::oneshot(key.as_bytes())
}

/// Why a key or value was refused. Nothing was changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InvalidEntry {
    /// The key is empty.
    EmptyKey,
    /// The key is longer than [`MAX_KEY_BYTES`].
    KeyTooLong(usize),
    /// The value is longer than the configured limit.
    ValueTooLarge {
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
}

impl std::fmt::Display for InvalidEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            InvalidEntry::EmptyKey => write!(f, "the key is empty"),
            InvalidEntry::KeyTooLong(n) => {
                write!(f, "the key is {n} bytes long, the limit is {MAX_KEY_BYTES}")
            }
            InvalidEntry::ValueTooLarge { len, max } => {
                write!(f, "the value is {len} bytes long, the limit is {max}")
            }
        }
    }
}

/// Checks a key and value against the limits.
pub fn validate(key: &str, value: Option<&[u8]>, max_value: usize) -> Result<(), InvalidEntry> {
    if key.is_empty() {
        return Err(InvalidEntry::EmptyKey);
    }
    if key.len() > MAX_KEY_BYTES {
        return Err(InvalidEntry::KeyTooLong(key.len()));
    }
    if let Some(v) = value {
        if v.len() > max_value {
            return Err(InvalidEntry::ValueTooLarge {
                len: v.len(),
                max: max_value,
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod version_text_tests {
    use super::Version;

    #[test]
    fn a_version_reads_back_what_it_writes_and_nothing_else() {
        let v = Version {
            ms: 1_764_600_000_123,
            counter: 7,
            origin: 31,
        };
        assert_eq!(v.to_string().parse::<Version>(), Ok(v));
        for bad in [
            "", "1.2", "1@3", "a.2@3", "1.b@3", "1.2@c", "1.2@3@4", "-1.2@3",
        ] {
            let e = bad.parse::<Version>().expect_err(bad);
            assert!(e.contains("is not a version"), "{bad}: {e}");
        }
    }
}
