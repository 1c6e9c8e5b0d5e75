//! Test support for the node's unit tests: a store on the core's own trait,
//! kept as plain as can be, and a synchronous network between a few nodes.

use std::collections::BTreeMap;

use super::{Event, Node, Transmit};
use crate::core::config::Config;
use crate::core::digest_diff::{Coded, Form};
use crate::core::entry::{Entry, Origin, Version};
use crate::core::message::{decode, encode, Body, Digest, Message, PushKind};
use crate::core::schedule::Schedule;
use crate::core::store::{bucket_of, merge_decision, Merged, Store, StoreError, WriteBatch};

/// The cluster fingerprint every test node shares.
pub(super) const CLUSTER: u64 = 7;
/// The cycle length of test nodes, in ms.
pub(super) const INTERVAL: u64 = 1000;

/// A [`Store`] of linear scans over one map, independent of the real stores.
#[derive(Debug, Default, Clone)]
pub(super) struct TestStore {
    entries: BTreeMap<String, Entry>,
    meta: BTreeMap<String, Vec<u8>>,
    /// When set, the next commit fails and changes nothing.
    pub(super) fail_next_commit: bool,
    /// Commits made.
    pub(super) commits: u64,
    /// Reads by origin made.
    pub(super) by_origin_reads: std::cell::Cell<u64>,
}

impl TestStore {
    /// Removes a key behind the node's back, as a damaged disk would.
    pub(super) fn lose(&mut self, key: &str) {
        self.entries.remove(key);
    }

    /// Removes a meta value, as a store written by an older build lacks it.
    pub(super) fn drop_meta(&mut self, name: &str) {
        self.meta.remove(name);
    }
}

impl Store for TestStore {
    fn get(&self, key: &str) -> Result<Option<Entry>, StoreError> {
        Ok(self.entries.get(key).cloned())
    }

    fn commit(&mut self, batch: WriteBatch) -> Result<Vec<Merged>, StoreError> {
        if std::mem::take(&mut self.fail_next_commit) {
            return Err(StoreError("told to fail".into()));
        }
        self.commits += 1;
        if batch.clear_first {
            self.entries.clear();
        }
        let mut out = Vec::new();
        for e in batch.entries {
            let stored = self
                .entries
                .get(&e.key)
                .map(|s| (s.version, s.is_tombstone()));
            let merged = merge_decision(&e, stored);
            if merged != Merged::Ignored {
                self.entries.insert(e.key.clone(), e);
            }
            out.push(merged);
        }
        for (key, version) in batch.collect {
            if self
                .entries
                .get(&key)
                .is_some_and(|e| e.version == version && e.is_tombstone())
            {
                self.entries.remove(&key);
            }
        }
        self.meta.extend(batch.meta);
        Ok(out)
    }

    fn range(
        &self,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Entry>, StoreError> {
        Ok(self
            .entries
            .values()
            .filter(|e| e.key.starts_with(prefix) && after.is_none_or(|a| e.key.as_str() > a))
            .take(limit)
            .cloned()
            .collect())
    }

    fn by_origin(
        &self,
        origin: Origin,
        after: Version,
        limit: usize,
    ) -> Result<Vec<Entry>, StoreError> {
        self.by_origin_reads.set(self.by_origin_reads.get() + 1);
        let mut out: Vec<Entry> = self
            .entries
            .values()
            .filter(|e| e.version.origin == origin && e.version > after)
            .cloned()
            .collect();
        out.sort_by_key(|e| e.version);
        out.truncate(limit);
        Ok(out)
    }

    fn bucket(&self, bucket: u32, bits: u32) -> Result<Vec<Entry>, StoreError> {
        Ok(self
            .entries
            .values()
            .filter(|e| bucket_of(&e.key, bits) == bucket)
            .cloned()
            .collect())
    }

    fn old_tombstones(
        &self,
        before_ms: u64,
        limit: usize,
    ) -> Result<Vec<(String, Version)>, StoreError> {
        let mut out: Vec<(String, Version)> = self
            .entries
            .values()
            .filter(|e| e.is_tombstone() && e.version.ms < before_ms)
            .map(|e| (e.key.clone(), e.version))
            .collect();
        out.sort_by_key(|(_, v)| *v);
        out.truncate(limit);
        Ok(out)
    }

    fn for_each(&self, f: &mut dyn FnMut(&Entry)) -> Result<(), StoreError> {
        self.entries.values().for_each(f);
        Ok(())
    }

    fn meta(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.meta.get(name).cloned())
    }
}

/// The configuration of node `me` in a test ring of `n`.
pub(super) fn config(n: u32, me: u32, schedule: Schedule) -> Config {
    Config::new(CLUSTER, n, me, schedule, INTERVAL)
}

/// A node over an empty test store.
pub(super) fn node(cfg: Config) -> Node<TestStore> {
    reopen(cfg, TestStore::default())
}

/// A node over `store`, as after a restart.
pub(super) fn reopen(cfg: Config, store: TestStore) -> Node<TestStore> {
    let seed = u64::from(cfg.me) + 1;
    match Node::open(cfg, store, seed) {
        Ok(node) => node,
        Err(e) => panic!("a test store opens: {e}"),
    }
}

/// Node 0 of a successor ring of 3 that relays new entries at once, with
/// the relay of a first write `a` in flight.
pub(super) fn relaying_node() -> (Node<TestStore>, Transmit) {
    let mut cfg = config(3, 0, Schedule::Successor);
    cfg.relay = true;
    let mut n0 = node(cfg);
    if let Err(e) = n0.write(10, "a", Some(b"1".to_vec())) {
        panic!("a test store writes: {e}");
    }
    let mut sent = transmits(&mut n0);
    assert_eq!(sent.len(), 1, "one relay, to the successor");
    (n0, sent.remove(0))
}

/// A peer's acknowledgement, with an empty digest.
pub(super) fn ack_from(peer: u32) -> Vec<u8> {
    from_peer(
        peer,
        Body::Ack {
            digest: Digest::default(),
        },
    )
}

/// A ring of `n` nodes, each configuration adjusted by `tune`.
pub(super) fn ring(n: u32, schedule: Schedule, tune: impl Fn(&mut Config)) -> Vec<Node<TestStore>> {
    (0..n)
        .map(|me| {
            let mut cfg = config(n, me, schedule);
            tune(&mut cfg);
            node(cfg)
        })
        .collect()
}

/// Delivers every request queued at any node, and its reply, at `now_ms`,
/// until none are left. Returns how many were delivered.
pub(super) fn deliver_all(nodes: &mut [Node<TestStore>], now_ms: u64) -> usize {
    deliver(nodes, now_ms, 0, &mut Vec::new()).0
}

/// Replies on their way: (cycle due, requester's index, request id,
/// reply).
pub(super) type Late = Vec<(u64, usize, u64, Vec<u8>)>;

/// One cycle of `nodes` at `c`: each request is served at once, and its
/// reply delivered at once (`delay` 0) or at the first cycle `delay`
/// cycles on (kept in `late` meanwhile), until none are left to deliver
/// now. Returns the bytes of the requests and replies.
pub(super) fn run_cycle_late(
    nodes: &mut [Node<TestStore>],
    c: u64,
    delay: u64,
    late: &mut Late,
) -> usize {
    let now = c * INTERVAL;
    for n in nodes.iter_mut() {
        n.handle_timeout(now);
    }
    deliver(nodes, now, delay, late).1
}

/// Serves every request queued at any node at `now_ms`, and delivers its
/// reply at once (`delay` 0) or keeps it in `late`, due `delay` cycles
/// on; delivers the replies due by now; until nothing is left to do now.
/// Returns the requests served and the bytes of them and their replies.
fn deliver(
    nodes: &mut [Node<TestStore>],
    now_ms: u64,
    delay: u64,
    late: &mut Late,
) -> (usize, usize) {
    let c = now_ms / INTERVAL;
    let (mut served, mut bytes) = (0, 0);
    loop {
        let mut any = false;
        for i in 0..nodes.len() {
            while let Some(t) = nodes[i].poll_transmit() {
                any = true;
                served += 1;
                let reply = nodes[t.to as usize].handle_request(now_ms, &t.payload);
                bytes += t.payload.len() + reply.len();
                if delay == 0 {
                    nodes[i].handle_reply(now_ms, t.id, &reply);
                } else {
                    late.push((c + delay, i, t.id, reply));
                }
            }
        }
        let (due, later): (Late, Late) = late.drain(..).partition(|r| r.0 <= c);
        *late = later;
        for (_, i, id, reply) in due {
            any = true;
            nodes[i].handle_reply(now_ms, id, &reply);
        }
        if !any {
            return (served, bytes);
        }
    }
}

/// Every request `node` has queued.
pub(super) fn transmits<S: Store>(node: &mut Node<S>) -> Vec<Transmit> {
    std::iter::from_fn(|| node.poll_transmit()).collect()
}

/// Every event `node` has queued.
pub(super) fn events<S: Store>(node: &mut Node<S>) -> Vec<Event> {
    std::iter::from_fn(|| node.poll_event()).collect()
}

/// The body of a request or reply; a partner push or ack whose digest
/// went whole, as the push or ack it stands for.
pub(super) fn body(bytes: &[u8]) -> Body {
    match decode(bytes) {
        Ok(msg) => match msg.body {
            Body::PartnerPush {
                kind,
                digest:
                    Coded {
                        digest: Form::Full(digest),
                        ..
                    },
                entries,
                complete,
            } => Body::Push {
                kind,
                digest,
                entries,
                complete,
            },
            Body::PartnerAck {
                digest:
                    Coded {
                        digest: Form::Full(digest),
                        ..
                    },
            } => Body::Ack { digest },
            body => body,
        },
        Err(e) => panic!("a node encodes what it decodes: {e}"),
    }
}

/// A message from `from` in the test cluster, encoded.
pub(super) fn from_peer(from: u32, body: Body) -> Vec<u8> {
    encode(&Message {
        cluster: CLUSTER,
        name: CLUSTER,
        epoch: 0,
        from,
        body,
    })
}

/// An entry of `key` written by `origin` at `ms`.
pub(super) fn entry(key: &str, value: Option<&str>, ms: u64, origin: Origin) -> Entry {
    Entry {
        key: key.to_string(),
        value: value.map(|v| v.as_bytes().to_vec()),
        version: Version {
            ms,
            counter: 0,
            origin,
        },
    }
}

/// The keys a push carries, or None when `bytes` is not a push.
pub(super) fn pushed_keys(bytes: &[u8]) -> Option<Vec<String>> {
    match body(bytes) {
        Body::Push { entries, .. } | Body::PartnerPush { entries, .. } => {
            Some(entries.into_iter().map(|e| e.key).collect())
        }
        _ => None,
    }
}

/// `node` takes the single entry `e` from peer `from` at `now_ms`, as a
/// push of it would deliver it.
pub(super) fn take_one(node: &mut Node<TestStore>, now_ms: u64, from: u32, e: &Entry) {
    node.accept(
        now_ms,
        from,
        vec![e.clone()],
        false,
        &Digest::default(),
        false,
    )
    .expect("accept");
}

/// Node 0 of two (random schedule) holding 20 keys, whose tree repair
/// with node 1 has started: the node, and the tree query it sent.
pub(super) fn in_repair() -> (Node<TestStore>, Transmit) {
    let mut n0 = node(config(2, 0, Schedule::Random));
    for i in 0..20 {
        n0.write(100, &format!("k{i}"), Some(b"v".to_vec()))
            .expect("write");
    }
    let ex = n0.new_exchange(1, PushKind::PushPull);
    n0.start_repair(ex, 1, 20);
    let t = n0.poll_transmit().expect("a tree query");
    (n0, t)
}
