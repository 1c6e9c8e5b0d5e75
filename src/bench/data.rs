//! The benchmark's dataset, and a synchronous two-node harness that hands
//! each request straight to its peer (as `tests/digest_properties.rs`
//! does), counting the messages' encoded bytes: their payload, without the
//! HTTP heads a real node adds on the wire.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::core::entry::{Entry, Version};
use crate::core::message::{decode, Body};
use crate::core::{Config, Node, Schedule};
use crate::store::{Store, StoreError, WriteBatch};

/// Bytes of every benchmark value: the "100-byte values".
pub const VALUE_BYTES: usize = 100;

/// Entries per commit when loading a store: the core's batch limit
/// (`Config::batch_entries`), so that loading commits like merging does.
pub const LOAD_BATCH: usize = 4096;

/// HTTP head bytes per message (request or reply) that the in-process
/// figures leave out: measured by the idle_wire section on two signed
/// `ringsync node` processes (one idle cycle, 4 messages: 1.3 KiB on the
/// sockets for 154 bytes of payload). An estimate for other sections.
pub const HEAD_BYTES: u64 = 290;

/// The topology fingerprint of the in-process benchmark nodes.
pub const CLUSTER: u64 = 0xBE_4C_4B;

/// Cycle length of in-process nodes, ms: any value works, time is virtual.
pub const INTERVAL_MS: u64 = 1000;

/// The order in which the dataset's keys are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyOrder {
    /// Entry `i` has key `bench/{i:09}`: written in version order, the
    /// keys come in key order.
    Sorted,
    /// Entry `i` has key `bench/{p:010}`, p = i × [`SHUFFLE_FACTOR`] mod
    /// [`SHUFFLE_MODULUS`] (a bijection for i below the modulus): written
    /// in version order, the keys come in random key order, as real data's do.
    Shuffled,
}

/// The multiplier of [`KeyOrder::Shuffled`]'s keys (Knuth's golden-ratio
/// hash constant).
pub const SHUFFLE_FACTOR: u64 = 2_654_435_761;

/// The prime modulus of [`KeyOrder::Shuffled`]'s keys.
pub const SHUFFLE_MODULUS: u64 = 1_000_000_007;

impl KeyOrder {
    /// "sorted" or "shuffled".
    pub fn name(self) -> &'static str {
        match self {
            KeyOrder::Sorted => "sorted",
            KeyOrder::Shuffled => "shuffled",
        }
    }

    /// The key of entry `i`.
    pub fn key(self, i: u64) -> String {
        match self {
            KeyOrder::Sorted => format!("bench/{i:09}"),
            KeyOrder::Shuffled => format!("bench/{:010}", shuffled(i)),
        }
    }

    /// Entry `i` of the dataset written by `origin`: [`KeyOrder::key`], a
    /// 100-byte value, and versions increasing with `i`, all from
    /// `base_ms` on (1024 per millisecond).
    pub fn entry(self, i: u64, origin: u32, base_ms: u64) -> Entry {
        let value: Vec<u8> = (0..VALUE_BYTES as u64)
            .map(|j| b'a' + ((i + j) % 26) as u8)
            .collect();
        Entry {
            key: self.key(i),
            value: Some(value),
            version: Version {
                ms: base_ms + i / 1024,
                counter: (i % 1024) as u32,
                origin,
            },
        }
    }

    /// Bytes of entries `0..count`, encoded.
    pub fn dataset_bytes(self, count: u64, origin: u32, base_ms: u64) -> u64 {
        (0..count)
            .map(|i| encoded_len(&self.entry(i, origin, base_ms)))
            .sum()
    }

    /// The indices `0..count` in their keys' order: the order a store
    /// holds the entries in.
    pub fn by_key(self, count: u64) -> Vec<u64> {
        let mut v: Vec<u64> = (0..count).collect();
        if self == KeyOrder::Shuffled {
            // Fixed-width digits: the numbers' order is the keys'.
            v.sort_unstable_by_key(|&i| shuffled(i));
        }
        v
    }

    /// Commits entries `0..count` into `store` in version order,
    /// [`LOAD_BATCH`] at a time, behind the protocol's back (no node is
    /// open over it), marked as written by this build: a node opening it
    /// reads stamps, as it would any store of this size, rather than
    /// migrating every entry in memory.
    pub fn load<S: Store>(
        self,
        store: &mut S,
        count: u64,
        origin: u32,
        base_ms: u64,
    ) -> Result<(), String> {
        let mut i = 0;
        while i < count {
            let end = (i + LOAD_BATCH as u64).min(count);
            let entries = (i..end).map(|k| self.entry(k, origin, base_ms)).collect();
            let meta = if i == 0 {
                vec![crate::core::node::origins_meta()]
            } else {
                Vec::new()
            };
            store
                .commit(WriteBatch {
                    entries,
                    meta,
                    ..WriteBatch::default()
                })
                .map_err(|e| format!("loading the dataset: {e}"))?;
            i = end;
        }
        Ok(())
    }
}

/// The number in [`KeyOrder::Shuffled`]'s key of entry `i`.
fn shuffled(i: u64) -> u64 {
    // In u128: i × the factor overflows u64 from i = 2^32 on.
    ((u128::from(i) * u128::from(SHUFFLE_FACTOR)) % u128::from(SHUFFLE_MODULUS)) as u64
}

/// Entry `i` of the dataset in key order ([`KeyOrder::Sorted`]): key
/// `bench/{i:09}`, a 100-byte value, and versions increasing with `i`,
/// all from `base_ms` on (1024 per millisecond).
pub fn entry(i: u64, origin: u32, base_ms: u64) -> Entry {
    KeyOrder::Sorted.entry(i, origin, base_ms)
}

/// Bytes of an entry as the peer protocol encodes it (postcard): the
/// denominator of every "per entry byte" figure.
pub fn encoded_len(e: &Entry) -> u64 {
    postcard::to_stdvec(e).map_or(0, |v| v.len() as u64)
}

/// Bytes of entries `0..count` of the dataset in key order, encoded.
pub fn dataset_bytes(count: u64, origin: u32, base_ms: u64) -> u64 {
    KeyOrder::Sorted.dataset_bytes(count, origin, base_ms)
}

/// [`KeyOrder::load`] of the dataset in key order.
pub fn load<S: Store>(store: &mut S, count: u64, origin: u32, base_ms: u64) -> Result<(), String> {
    KeyOrder::Sorted.load(store, count, origin, base_ms)
}

/// A node of a two-node ring at position `me`.
pub fn open_node<S: Store>(store: S, me: u32, schedule: Schedule) -> Result<Node<S>, String> {
    let cfg = Config::new(CLUSTER, 2, me, schedule, INTERVAL_MS);
    Node::open(cfg, store, 17 + u64::from(me)).map_err(|e: StoreError| e.to_string())
}

/// The messages the two nodes exchanged.
#[derive(Debug, Default, Clone)]
pub struct Wire {
    /// Requests and replies.
    pub messages: u64,
    /// Their encoded bytes: payload, without HTTP heads.
    pub bytes: u64,
    /// Entries they carried.
    pub entries: u64,
    /// Time node b spent answering requests (decode, merge, commit, reply).
    pub b_busy: Duration,
    /// Messages and bytes by message type.
    pub by_type: BTreeMap<&'static str, (u64, u64)>,
}

impl Wire {
    /// Counts one message; returns the entries it carried.
    fn record(&mut self, payload: &[u8]) -> u64 {
        let (kind, n) = match decode(payload).map(|m| m.body) {
            Ok(Body::Push { entries, .. }) => ("Push", entries.len()),
            Ok(Body::SynAck { entries, .. }) => ("SynAck", entries.len()),
            Ok(Body::Fetched { entries }) => ("Fetched", entries.len()),
            Ok(Body::Ack { .. }) => ("Ack", 0),
            Ok(Body::Syn { .. }) => ("Syn", 0),
            Ok(Body::TreeQuery { .. }) => ("TreeQuery", 0),
            Ok(Body::TreeReply { .. }) => ("TreeReply", 0),
            Ok(Body::SketchQuery { .. }) => ("SketchQuery", 0),
            Ok(Body::SketchReply { .. }) => ("SketchReply", 0),
            Ok(Body::Fetch { .. }) => ("Fetch", 0),
            Ok(Body::Refused { .. }) => ("Refused", 0),
            Ok(Body::ProbeReq { .. }) => ("ProbeReq", 0),
            Ok(Body::Reached { .. }) => ("Reached", 0),
            Ok(Body::PartnerPush { entries, .. }) => ("PartnerPush", entries.len()),
            Ok(Body::PartnerAck { .. }) => ("PartnerAck", 0),
            Err(_) => ("undecodable", 0),
        };
        let t = self.by_type.entry(kind).or_default();
        t.0 += 1;
        t.1 += payload.len() as u64;
        self.messages += 1;
        self.bytes += payload.len() as u64;
        self.entries += n as u64;
        n as u64
    }
}

/// Delivers every request of `a` (position 0) and `b` (position 1), and
/// what they cause, until none is left. `sizes`, if given, gets the entry
/// count of every request `a` sends.
pub fn pump<SA: Store, SB: Store>(
    a: &mut Node<SA>,
    b: &mut Node<SB>,
    now: u64,
    wire: &mut Wire,
    mut sizes: Option<&mut Vec<u64>>,
) {
    loop {
        let mut moved = false;
        while let Some(t) = a.poll_transmit() {
            moved = true;
            let n = wire.record(&t.payload);
            if let Some(s) = sizes.as_deref_mut() {
                s.push(n);
            }
            let started = Instant::now();
            let reply = b.handle_request(now, &t.payload);
            wire.b_busy += started.elapsed();
            wire.record(&reply);
            a.handle_reply(now, t.id, &reply);
        }
        while let Some(t) = b.poll_transmit() {
            moved = true;
            wire.record(&t.payload);
            let reply = a.handle_request(now, &t.payload);
            wire.record(&reply);
            b.handle_reply(now, t.id, &reply);
        }
        while a.poll_event().is_some() {}
        while b.poll_event().is_some() {}
        if !moved {
            return;
        }
    }
}

/// A scratch directory removed when dropped.
pub struct Scratch {
    path: PathBuf,
}

impl Scratch {
    /// Creates `$TMPDIR/ringsync-bench-{pid}-{name}`.
    pub fn new(name: &str) -> Result<Scratch, String> {
        let path =
            std::env::temp_dir().join(format!("ringsync-bench-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path)
            .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
        Ok(Scratch { path })
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sorted_keys_are_in_write_order_and_shuffled_ones_are_not() {
        assert_eq!(entry(7, 0, 100), KeyOrder::Sorted.entry(7, 0, 100));
        assert_eq!(entry(7, 0, 100).key, "bench/000000007");
        let e = KeyOrder::Shuffled.entry(7, 0, 100);
        assert_eq!(e.key, "bench/0581050201");
        assert_eq!(e.version, entry(7, 0, 100).version);
        assert_eq!(e.value, entry(7, 0, 100).value);
        // 2^40 > 2^32: past the u64 product's range.
        assert_eq!(
            KeyOrder::Shuffled.key(1 << 40),
            format!(
                "bench/{:010}",
                ((1u128 << 40) * 2_654_435_761 % 1_000_000_007) as u64
            )
        );

        let n = 5000;
        let keys: Vec<String> = (0..n).map(|i| KeyOrder::Shuffled.key(i)).collect();
        let distinct: std::collections::BTreeSet<&String> = keys.iter().collect();
        assert_eq!(distinct.len(), n as usize);
        let ascending = keys.windows(2).filter(|w| w[0] < w[1]).count();
        assert!(ascending < 3 * n as usize / 4, "{ascending} of {n} ascend");

        let by_key = KeyOrder::Shuffled.by_key(n);
        let sorted: Vec<&String> = by_key.iter().map(|&i| &keys[i as usize]).collect();
        assert!(sorted.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(KeyOrder::Sorted.by_key(3), vec![0, 1, 2]);
        assert_eq!(
            KeyOrder::Shuffled.dataset_bytes(10, 0, 100),
            KeyOrder::Sorted.dataset_bytes(10, 0, 100) + 10
        );
    }
}
