//! What a tree repair costs on the wire, on real nodes over memory stores
//! handed each other's requests at once: one repair moves every
//! difference without starting again from the root, a single difference
//! among many keys costs a few KiB, and the bytes stay within 1.5 times
//! the entries' own plus a fixed allowance for the walk.

use ringsync::core::entry::{Entry, Version};
use ringsync::core::message::{decode, Body};
use ringsync::core::{Config, Node, Schedule};
use ringsync::store::{MemoryStore, Store, WriteBatch};

const CLUSTER: u64 = 0x2E_FA_12;
const NOW: u64 = 1_700_000_000_000;
/// Keys both nodes hold.
const KEYS: u64 = 20_000;

fn entry(key: String, ms: u64, counter: u32) -> Entry {
    Entry {
        key,
        value: Some(vec![b'v'; 100]),
        version: Version {
            ms,
            counter,
            origin: 0,
        },
    }
}

fn encoded(e: &Entry) -> u64 {
    postcard::to_stdvec(e).map_or(0, |v| v.len() as u64)
}

/// What crossed the wire in one exchange.
#[derive(Debug, Default)]
struct Wire {
    bytes: u64,
    entries: u64,
    /// Tree queries of the root: one per pass from the top.
    from_root: u64,
}

impl Wire {
    fn record(&mut self, payload: &[u8]) {
        self.bytes += payload.len() as u64;
        match decode(payload).expect("decodes").body {
            Body::Push { entries, .. } | Body::Fetched { entries } => {
                self.entries += entries.len() as u64
            }
            Body::TreeQuery { level: 0, .. } => self.from_root += 1,
            _ => {}
        }
    }
}

/// Two nodes over the same `KEYS` keys; node `holder` also holds `d` more,
/// older than every hint, so that only the trees can find them.
fn apart(d: u64, holder: usize) -> (Vec<Node<MemoryStore>>, u64) {
    let base: Vec<Entry> = (0..KEYS)
        .map(|i| {
            entry(
                format!("key/{i:06}"),
                NOW - 10_000 + i / 1024,
                (i % 1024) as u32,
            )
        })
        .collect();
    let extra: Vec<Entry> = (0..d)
        .map(|i| entry(format!("hole/{i:06}"), NOW - 10_000, 5_000 + i as u32))
        .collect();
    let extra_bytes = extra.iter().map(encoded).sum();
    let nodes = (0..2u32)
        .map(|me| {
            let mut store = MemoryStore::new();
            let mut entries = base.clone();
            if me as usize == holder {
                entries.extend(extra.iter().cloned());
            }
            store
                .commit(WriteBatch {
                    entries,
                    ..WriteBatch::default()
                })
                .expect("load");
            let cfg = Config::new(CLUSTER, 2, me, Schedule::Random, 1000);
            Node::open(cfg, store, 3 + u64::from(me)).expect("open")
        })
        .collect();
    (nodes, extra_bytes)
}

/// Node `from` starts one sync exchange with the other; every request and
/// what it causes is delivered.
fn sync(nodes: &mut [Node<MemoryStore>], from: usize) -> Wire {
    let mut wire = Wire::default();
    nodes[from].sync_with(1 - from as u32);
    loop {
        let mut moved = false;
        for i in 0..2 {
            while let Some(t) = nodes[i].poll_transmit() {
                moved = true;
                wire.record(&t.payload);
                let reply = nodes[t.to as usize].handle_request(NOW, &t.payload);
                wire.record(&reply);
                nodes[i].handle_reply(NOW, t.id, &reply);
            }
        }
        if !moved {
            return wire;
        }
    }
}

#[test]
fn one_repair_moves_thousands_of_differences_without_a_second_pass() {
    // More differing buckets than one pass of the old walk took (1024):
    // it needed a pass from the root per 1024, one per exchange.
    for holder in [0, 1] {
        let (mut nodes, entry_bytes) = apart(3000, holder);
        assert_eq!(nodes[0].digest().hints, nodes[1].digest().hints);
        let wire = sync(&mut nodes, 0);
        assert_eq!(nodes[0].root(), nodes[1].root(), "holder {holder}");
        assert_eq!(wire.from_root, 1, "one walk from the root");
        assert_eq!(wire.entries, 3000, "each missing entry crossed once");
        let limit = 1.5 * entry_bytes as f64 + 64.0 * 1024.0;
        assert!(
            (wire.bytes as f64) <= limit,
            "holder {holder}: {} bytes for {entry_bytes} bytes of entries",
            wire.bytes
        );
    }
}

#[test]
fn one_difference_among_many_keys_costs_a_few_kib() {
    for holder in [0, 1] {
        let (mut nodes, _) = apart(1, holder);
        let wire = sync(&mut nodes, 0);
        assert_eq!(nodes[0].root(), nodes[1].root());
        assert_eq!(wire.entries, 1);
        assert!(wire.bytes <= 4096, "{} bytes", wire.bytes);
    }
}

#[test]
fn a_hundred_differences_cost_their_entries_and_a_walk() {
    let (mut nodes, entry_bytes) = apart(100, 1);
    let wire = sync(&mut nodes, 0);
    assert_eq!(nodes[0].root(), nodes[1].root());
    assert_eq!(wire.entries, 100);
    let limit = 1.5 * entry_bytes as f64 + 64.0 * 1024.0;
    assert!((wire.bytes as f64) <= limit, "{} bytes", wire.bytes);
}
