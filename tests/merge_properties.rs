//! Merge is a join: commutative, associative and idempotent, tombstones
//! included. Shown twice: through the protocol (peer pushes to real nodes,
//! in any order, grouping and batching, with duplicates) and at the store
//! (`WriteBatch` commits). Equal data must also give equal digest roots.

use std::collections::BTreeMap;

use proptest::prelude::*;
use ringsync::core::entry::{Entry, Version};
use ringsync::core::message::{decode, encode, Body, Digest, Message, PushKind};
use ringsync::core::{Config, Node, Schedule};
use ringsync::store::{MemoryStore, Store, WriteBatch};

const CLUSTER: u64 = 0xC0FFEE;
/// Ring size: positions 0..3 receive, all four may be origins and senders.
const N: u32 = 4;
/// Virtual time at which pushes arrive: every generated version is older,
/// so the drift check never refuses one.
const NOW_MS: u64 = 1_700_000_000_000;

fn node(me: u32) -> Node<MemoryStore> {
    let cfg = Config::new(CLUSTER, N, me, Schedule::Successor, 1000);
    Node::open(cfg, MemoryStore::new(), u64::from(me)).expect("memory store opens")
}

/// A version from a small space, so that equal (ms, counter) pairs from
/// different origins (ties broken by origin) are common.
fn arb_version() -> impl Strategy<Value = Version> {
    (0u64..4, 0u32..2, 0u32..N).prop_map(|(ms, counter, origin)| Version {
        ms: NOW_MS - 10_000 + ms,
        counter,
        origin,
    })
}

/// Few keys, so that most entries collide; one in three is a tombstone.
fn arb_entry() -> impl Strategy<Value = Entry> {
    (
        0u8..4,
        arb_version(),
        prop::option::weighted(0.67, prop::collection::vec(any::<u8>(), 0..6)),
    )
        .prop_map(|(k, version, value)| Entry {
            key: format!("k{k}"),
            value,
            version,
        })
}

/// A set of writes: one entry per (key, version), because a version names
/// one write and two different payloads under it cannot exist.
fn arb_writes() -> impl Strategy<Value = Vec<Entry>> {
    prop::collection::vec(arb_entry(), 1..24).prop_map(|es| {
        let mut seen = BTreeMap::new();
        for e in es {
            seen.entry((e.key.clone(), e.version)).or_insert(e);
        }
        seen.into_values().collect()
    })
}

/// What every replica must end with: per key, the entry of highest version.
fn model(writes: &[Entry]) -> Vec<Entry> {
    let mut best: BTreeMap<String, Entry> = BTreeMap::new();
    for e in writes {
        match best.get(&e.key) {
            Some(b) if b.version >= e.version => {}
            _ => {
                best.insert(e.key.clone(), e.clone());
            }
        }
    }
    best.into_values().collect()
}

fn contents<S: Store>(s: &S) -> Vec<Entry> {
    let mut out = Vec::new();
    s.for_each(&mut |e| out.push(e.clone())).expect("for_each");
    out.sort_by(|a, b| a.key.cmp(&b.key));
    out
}

/// Delivers `entries` to `to` as one peer push from `from`; the push must be
/// acknowledged.
fn push(to: &mut Node<MemoryStore>, from: u32, entries: Vec<Entry>) {
    let msg = Message {
        cluster: CLUSTER,
        name: CLUSTER,
        epoch: 0,
        from,
        body: Body::Push {
            kind: PushKind::Repair,
            digest: Digest::default(),
            entries,
            complete: false,
        },
    };
    let reply = decode(&to.handle_request(NOW_MS, &encode(&msg))).expect("reply decodes");
    assert!(
        matches!(reply.body, Body::Ack { .. }),
        "push refused: {:?}",
        reply.body
    );
}

/// Delivers `entries` to `to` in batches cut at `cuts` (positions taken
/// modulo the length), each from a sender other than `to`.
fn deliver(to: &mut Node<MemoryStore>, entries: &[Entry], cuts: &[usize]) {
    let me = to.config().me;
    let mut bounds: Vec<usize> = cuts
        .iter()
        .map(|c| c % (entries.len() + 1))
        .chain([0, entries.len()])
        .collect();
    bounds.sort_unstable();
    bounds.dedup();
    for (i, w) in bounds.windows(2).enumerate() {
        let from = (me + 1 + i as u32 % (N - 1)) % N;
        push(to, from, entries[w[0]..w[1]].to_vec());
    }
}

/// A permutation of `xs` driven by `keys` (one sort key per element).
fn permute<T: Clone>(xs: &[T], keys: &[u64]) -> Vec<T> {
    let mut idx: Vec<usize> = (0..xs.len()).collect();
    idx.sort_by_key(|&i| (keys.get(i).copied().unwrap_or(0), i));
    idx.into_iter().map(|i| xs[i].clone()).collect()
}

fn assert_same_replicas(nodes: &[&Node<MemoryStore>], writes: &[Entry]) {
    let want = model(writes);
    let tombstones = want.iter().filter(|e| e.is_tombstone()).count() as u64;
    for (i, n) in nodes.iter().enumerate() {
        assert_eq!(
            contents(n.store()),
            want,
            "replica {i} differs from the model"
        );
        assert_eq!(
            n.root(),
            nodes[0].root(),
            "replica {i}: digest roots differ"
        );
        assert_eq!(
            n.counts(),
            (want.len() as u64 - tombstones, tombstones),
            "replica {i}: counts"
        );
    }
    // The root is a function of the data: a fresh node given exactly the
    // model's entries has the same one.
    let mut fresh = node(3);
    push(&mut fresh, 0, want);
    assert_eq!(
        fresh.root(),
        nodes[0].root(),
        "root is not a function of the data"
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(if cfg!(debug_assertions) { 256 } else { 1024 }))]

    /// Commutative and idempotent: any order, any batching, any number of
    /// copies of each write gives the same replica.
    #[test]
    fn order_batching_and_duplicates_do_not_matter(
        writes in arb_writes(),
        order_b in prop::collection::vec(any::<u64>(), 24),
        order_c in prop::collection::vec(any::<u64>(), 48),
        dups in prop::collection::vec(0usize..24, 0..12),
        cuts_a in prop::collection::vec(0usize..64, 0..4),
        cuts_b in prop::collection::vec(0usize..64, 0..6),
        cuts_c in prop::collection::vec(0usize..64, 0..10),
    ) {
        // a: in generation order, one batch per cut.
        let mut a = node(0);
        deliver(&mut a, &writes, &cuts_a);
        // b: another order, other cuts.
        let mut b = node(1);
        deliver(&mut b, &permute(&writes, &order_b), &cuts_b);
        // c: with duplicates mixed in, in a third order and batching.
        let mut c = node(2);
        let mut with_dups = writes.clone();
        with_dups.extend(dups.iter().map(|&i| writes[i % writes.len()].clone()));
        deliver(&mut c, &permute(&with_dups, &order_c), &cuts_c);
        assert_same_replicas(&[&a, &b, &c], &writes);

        // Idempotent: delivering everything again changes nothing.
        let (root, before) = (a.root(), contents(a.store()));
        deliver(&mut a, &permute(&writes, &order_c), &cuts_b);
        prop_assert_eq!(a.root(), root);
        prop_assert_eq!(contents(a.store()), before);
    }

    /// Associative: merging x, y and z as (x + y) + z or x + (y + z), where
    /// the inner merge happens at another node whose whole store is then
    /// pushed on, gives the same replica.
    #[test]
    fn grouping_does_not_matter(
        writes in arb_writes(),
        split in (0usize..24, 0usize..24),
    ) {
        let (i, j) = (split.0 % (writes.len() + 1), split.1 % (writes.len() + 1));
        let (i, j) = (i.min(j), i.max(j));
        let (x, y, z) = (&writes[..i], &writes[i..j], &writes[j..]);

        // (x + y) + z: merge x and y at node 1, push its store to node 0,
        // then z.
        let mut inner = node(1);
        push(&mut inner, 2, x.to_vec());
        push(&mut inner, 3, y.to_vec());
        let mut left = node(0);
        push(&mut left, 1, contents(inner.store()));
        push(&mut left, 3, z.to_vec());

        // x + (y + z): merge y and z at node 3, then x then it at node 2.
        let mut inner = node(3);
        push(&mut inner, 0, z.to_vec());
        push(&mut inner, 1, y.to_vec());
        let mut right = node(2);
        push(&mut right, 0, x.to_vec());
        push(&mut right, 3, contents(inner.store()));

        assert_same_replicas(&[&left, &right], &writes);
    }

    /// The same three laws at the store itself: batches of `WriteBatch`
    /// entries, in any order and grouping, with duplicates.
    #[test]
    fn store_merge_is_a_join(
        writes in arb_writes(),
        order in prop::collection::vec(any::<u64>(), 36),
        dups in prop::collection::vec(0usize..24, 0..12),
        cut in 0usize..37,
    ) {
        let commit = |s: &mut MemoryStore, entries: Vec<Entry>| {
            s.commit(WriteBatch { entries, ..WriteBatch::default() }).expect("commit");
        };
        let mut a = MemoryStore::new();
        commit(&mut a, writes.clone());

        let mut shuffled = writes.clone();
        shuffled.extend(dups.iter().map(|&i| writes[i % writes.len()].clone()));
        let shuffled = permute(&shuffled, &order);
        let cut = cut % (shuffled.len() + 1);
        let mut b = MemoryStore::new();
        commit(&mut b, shuffled[cut..].to_vec());
        commit(&mut b, shuffled[..cut].to_vec());

        // One entry per batch, in reverse, then all again (idempotence).
        let mut c = MemoryStore::new();
        for e in shuffled.iter().rev() {
            commit(&mut c, vec![e.clone()]);
        }
        commit(&mut c, writes.clone());

        let want = model(&writes);
        prop_assert_eq!(contents(&a), want.clone());
        prop_assert_eq!(contents(&b), want.clone());
        prop_assert_eq!(contents(&c), want);
    }
}

/// A hand-made case of every kind of collision, so that a failure here
/// reads without a shrinker: a tie on (ms, counter) broken by origin, a
/// tombstone beaten by a later value, a value beaten by a later tombstone.
#[test]
fn ties_and_tombstones_resolve_the_same_everywhere() {
    let v = |ms: u64, counter: u32, origin: u32| Version {
        ms: NOW_MS - 1000 + ms,
        counter,
        origin,
    };
    let e = |k: &str, val: Option<&str>, ver: Version| Entry {
        key: k.to_string(),
        value: val.map(|s| s.as_bytes().to_vec()),
        version: ver,
    };
    let writes = vec![
        e("tie", Some("from-1"), v(5, 0, 1)),
        e("tie", Some("from-3"), v(5, 0, 3)),
        e("tie", None, v(5, 0, 2)),
        e("revived", None, v(1, 0, 0)),
        e("revived", Some("back"), v(2, 0, 1)),
        e("deleted", Some("was"), v(3, 1, 2)),
        e("deleted", None, v(3, 2, 0)),
    ];
    let mut fwd = node(0);
    let mut rev = node(1);
    for w in &writes {
        push(&mut fwd, 2, vec![w.clone()]);
    }
    for w in writes.iter().rev() {
        push(&mut rev, 2, vec![w.clone()]);
    }
    assert_same_replicas(&[&fwd, &rev], &writes);
    let get = |k: &str| fwd.get(k).expect("get").expect("present");
    assert_eq!(get("tie").value.as_deref(), Some(&b"from-3"[..]));
    assert_eq!(get("revived").value.as_deref(), Some(&b"back"[..]));
    assert!(get("deleted").is_tombstone());
}
