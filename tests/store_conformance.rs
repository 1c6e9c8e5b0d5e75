//! One conformance suite for every [`Store`]: each case is a generic function
//! run against both [`MemoryStore`] (the reference) and [`RedbStore`], plus a
//! property test that random batches leave both stores identical, and a few
//! redb-only cases (durability across reopen, a commit failing midway).

use std::collections::BTreeMap;
use std::path::Path;

use proptest::prelude::*;
use ringsync::core::entry::{Entry, Version};
use ringsync::store::{bucket_of, MemoryStore, Merged, RedbStore, Store, WriteBatch};

fn v(ms: u64, counter: u32, origin: u32) -> Version {
    Version {
        ms,
        counter,
        origin,
    }
}

fn put(key: &str, value: &str, version: Version) -> Entry {
    Entry {
        key: key.to_string(),
        value: Some(value.as_bytes().to_vec()),
        version,
    }
}

fn del(key: &str, version: Version) -> Entry {
    Entry {
        key: key.to_string(),
        value: None,
        version,
    }
}

fn merge<S: Store>(s: &mut S, entries: Vec<Entry>) -> Vec<Merged> {
    s.commit(WriteBatch {
        entries,
        ..WriteBatch::default()
    })
    .expect("commit")
}

fn collect<S: Store>(s: &mut S, key: &str, version: Version) {
    s.commit(WriteBatch {
        collect: vec![(key.to_string(), version)],
        ..WriteBatch::default()
    })
    .expect("commit");
}

fn keys(entries: &[Entry]) -> Vec<&str> {
    entries.iter().map(|e| e.key.as_str()).collect()
}

fn all<S: Store>(s: &S) -> Vec<Entry> {
    let mut out = Vec::new();
    s.for_each(&mut |e| out.push(e.clone())).expect("for_each");
    out.sort_by(|a, b| a.key.cmp(&b.key));
    out
}

const APPLIED_NEW: Merged = Merged::Applied { replaced: None };

// ---------------------------------------------------------------------------
// The cases, generic over the store.

fn merge_lww<S: Store>(s: &mut S) {
    assert_eq!(
        merge(s, vec![put("a", "1", v(10, 0, 1))]),
        vec![APPLIED_NEW]
    );
    assert_eq!(
        merge(s, vec![put("a", "old", v(5, 9, 9))]),
        vec![Merged::Ignored]
    );
    assert_eq!(
        merge(s, vec![put("a", "2", v(10, 1, 0))]),
        vec![Merged::Applied {
            replaced: Some((v(10, 0, 1), false))
        }]
    );
    let got = s.get("a").expect("get").expect("stored");
    assert_eq!(got, put("a", "2", v(10, 1, 0)));
    // Within one batch, the same key merges in order.
    assert_eq!(
        merge(
            s,
            vec![
                put("b", "30", v(30, 0, 1)),
                put("b", "25", v(25, 0, 1)),
                del("b", v(40, 0, 2)),
                put("b", "35", v(35, 0, 1)),
            ]
        ),
        vec![
            APPLIED_NEW,
            Merged::Ignored,
            Merged::Applied {
                replaced: Some((v(30, 0, 1), false))
            },
            Merged::Ignored,
        ]
    );
    assert_eq!(s.get("b").expect("get"), Some(del("b", v(40, 0, 2))));
    assert_eq!(
        merge(s, vec![put("b", "50", v(50, 0, 1))]),
        vec![Merged::Applied {
            replaced: Some((v(40, 0, 2), true))
        }]
    );
    assert_eq!(s.get("missing").expect("get"), None);
    // Empty values and binary values are values, not tombstones.
    let bin = Entry {
        key: "bin".into(),
        value: Some(vec![0, 255, 1, 0]),
        version: v(1, 0, 0),
    };
    merge(s, vec![put("empty", "", v(1, 0, 0)), bin.clone()]);
    assert_eq!(
        s.get("empty").expect("get"),
        Some(put("empty", "", v(1, 0, 0)))
    );
    assert_eq!(s.get("bin").expect("get"), Some(bin));
}

fn equal_version_ignored<S: Store>(s: &mut S) {
    merge(s, vec![put("k", "first", v(7, 1, 2))]);
    assert_eq!(
        merge(
            s,
            vec![put("k", "second", v(7, 1, 2)), del("k", v(7, 1, 2))]
        ),
        vec![Merged::Ignored, Merged::Ignored]
    );
    assert_eq!(
        s.get("k").expect("get"),
        Some(put("k", "first", v(7, 1, 2)))
    );
    assert_eq!(
        s.by_origin(2, Version::zero(2), 10)
            .expect("by_origin")
            .len(),
        1
    );
}

fn tombstones<S: Store>(s: &mut S) {
    merge(
        s,
        vec![
            del("t3", v(300, 0, 1)),
            del("t1", v(100, 0, 2)),
            del("t2", v(100, 1, 0)),
            put("live", "x", v(50, 0, 1)),
        ],
    );
    let old = s.old_tombstones(u64::MAX, 10).expect("old");
    assert_eq!(
        old,
        vec![
            ("t1".to_string(), v(100, 0, 2)),
            ("t2".to_string(), v(100, 1, 0)),
            ("t3".to_string(), v(300, 0, 1)),
        ]
    );
    // `before_ms` is exclusive; `limit` caps.
    assert_eq!(s.old_tombstones(100, 10).expect("old"), vec![]);
    assert_eq!(s.old_tombstones(101, 10).expect("old").len(), 2);
    assert_eq!(
        s.old_tombstones(u64::MAX, 1).expect("old"),
        old[..1].to_vec()
    );
    assert_eq!(s.old_tombstones(u64::MAX, 0).expect("old"), vec![]);

    // Collected only at the exact version, and only if still a tombstone.
    collect(s, "t1", v(100, 0, 1));
    collect(s, "t1", v(99, 0, 2));
    collect(s, "live", v(50, 0, 1));
    collect(s, "nothing", v(1, 0, 0));
    assert!(s.get("t1").expect("get").is_some());
    assert!(s.get("live").expect("get").is_some());
    collect(s, "t1", v(100, 0, 2));
    assert_eq!(s.get("t1").expect("get"), None);
    assert_eq!(
        s.old_tombstones(u64::MAX, 10).expect("old"),
        old[1..].to_vec()
    );
    assert!(s
        .by_origin(2, Version::zero(2), 10)
        .expect("by_origin")
        .is_empty());
    let n = 1 << 4;
    for b in 0..n {
        assert!(!keys(&s.bucket(b, 4).expect("bucket")).contains(&"t1"));
    }

    // A tombstone replaced by a value, or by a newer tombstone, leaves the
    // tombstone index.
    merge(
        s,
        vec![put("t2", "back", v(200, 0, 0)), del("t3", v(400, 0, 1))],
    );
    assert_eq!(
        s.old_tombstones(u64::MAX, 10).expect("old"),
        vec![("t3".to_string(), v(400, 0, 1))]
    );
    collect(s, "t3", v(300, 0, 1));
    assert!(s.get("t3").expect("get").is_some());
    collect(s, "t2", v(200, 0, 0));
    assert!(s.get("t2").expect("get").is_some());
    // Collected and written again in one batch: merge runs first, then collect.
    let out = s
        .commit(WriteBatch {
            entries: vec![del("t4", v(10, 0, 0))],
            collect: vec![("t4".into(), v(10, 0, 0))],
            ..WriteBatch::default()
        })
        .expect("commit");
    assert_eq!(out, vec![APPLIED_NEW]);
    assert_eq!(s.get("t4").expect("get"), None);
}

fn by_origin<S: Store>(s: &mut S) {
    merge(
        s,
        vec![
            put("c", "1", v(30, 0, 1)),
            put("a", "1", v(10, 0, 1)),
            del("b", v(20, 0, 1)),
            put("d", "1", v(20, 0, 1)),
            put("x", "2", v(15, 0, 2)),
            put("y", "0", v(15, 0, 0)),
        ],
    );
    let from = |s: &S, after: Version, limit| {
        keys(&s.by_origin(1, after, limit).expect("by_origin"))
            .into_iter()
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    assert_eq!(from(s, Version::zero(1), 100), ["a", "b", "d", "c"]);
    assert_eq!(from(s, Version::zero(1), 2), ["a", "b"]);
    assert_eq!(from(s, Version::zero(1), 0), Vec::<String>::new());
    // `after` is exclusive.
    assert_eq!(from(s, v(10, 0, 1), 100), ["b", "d", "c"]);
    assert_eq!(from(s, v(20, 0, 1), 100), ["c"]);
    assert_eq!(from(s, v(30, 0, 1), 100), Vec::<String>::new());
    // `after` from another origin: equal (ms, counter) counts as above it
    // only when our origin is higher.
    assert_eq!(from(s, v(10, 0, 0), 100), ["a", "b", "d", "c"]);
    assert_eq!(from(s, v(10, 0, 5), 100), ["b", "d", "c"]);
    let full = s.by_origin(1, Version::zero(1), 100).expect("by_origin");
    assert_eq!(full[1], del("b", v(20, 0, 1)));
    assert_eq!(
        keys(&s.by_origin(2, Version::zero(2), 10).expect("o")),
        ["x"]
    );
    assert_eq!(
        keys(&s.by_origin(0, Version::zero(0), 10).expect("o")),
        ["y"]
    );
    assert!(s.by_origin(9, Version::zero(9), 10).expect("o").is_empty());
    // A key overwritten by another origin moves to that origin's list.
    merge(s, vec![put("a", "2", v(40, 0, 2))]);
    assert_eq!(from(s, Version::zero(1), 100), ["b", "d", "c"]);
    assert_eq!(
        keys(&s.by_origin(2, Version::zero(2), 10).expect("o")),
        ["x", "a"]
    );
}

fn buckets<S: Store>(s: &mut S) {
    let entries: Vec<Entry> = (0..300)
        .map(|i| {
            let key = format!("key-{i}");
            if i % 7 == 0 {
                del(&key, v(i, 0, 1))
            } else {
                put(&key, "v", v(i, 0, 1))
            }
        })
        .collect();
    merge(s, entries.clone());
    let mut sorted = entries.clone();
    sorted.sort_by(|a, b| a.key.cmp(&b.key));

    for bits in [0u32, 4, 20] {
        let mut expected: BTreeMap<u32, Vec<Entry>> = BTreeMap::new();
        for e in &sorted {
            expected
                .entry(bucket_of(&e.key, bits))
                .or_default()
                .push(e.clone());
        }
        let mut probe: Vec<u32> = expected.keys().copied().collect();
        if bits <= 4 {
            probe.extend(0..1u32 << bits);
        }
        // The first and last buckets, and one past the last.
        probe.extend([0, (1u32 << bits) - 1, 1u32 << bits]);
        for b in probe {
            let got = s.bucket(b, bits).expect("bucket");
            let want = expected.get(&b).cloned().unwrap_or_default();
            assert_eq!(got, want, "bucket {b} of {bits} bits");
        }
    }
    assert_eq!(s.bucket(0, 0).expect("bucket"), sorted);
}

fn ranges<S: Store>(s: &mut S) {
    merge(
        s,
        vec![
            put("a/2", "2", v(1, 0, 0)),
            put("a/1", "1", v(1, 0, 0)),
            del("a/3", v(1, 0, 0)),
            put("a", "root", v(1, 0, 0)),
            put("ab", "x", v(1, 0, 0)),
            put("b/1", "1", v(1, 0, 0)),
            put("0", "0", v(1, 0, 0)),
        ],
    );
    let r = |s: &S, prefix: &str, after: Option<&str>, limit| {
        keys(&s.range(prefix, after, limit).expect("range"))
            .into_iter()
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    assert_eq!(r(s, "a/", None, 10), ["a/1", "a/2", "a/3"]);
    assert_eq!(r(s, "a/", Some("a/1"), 10), ["a/2", "a/3"]);
    assert_eq!(r(s, "a/", Some("a/15"), 10), ["a/2", "a/3"]);
    assert_eq!(r(s, "a/", None, 2), ["a/1", "a/2"]);
    assert_eq!(r(s, "a/", None, 0), Vec::<String>::new());
    assert_eq!(r(s, "a/", Some("0"), 10), ["a/1", "a/2", "a/3"]);
    assert_eq!(r(s, "a/", Some("a/3"), 10), Vec::<String>::new());
    assert_eq!(r(s, "a/", Some("zzz"), 10), Vec::<String>::new());
    assert_eq!(r(s, "a", None, 10), ["a", "a/1", "a/2", "a/3", "ab"]);
    assert_eq!(
        r(s, "", None, 100),
        ["0", "a", "a/1", "a/2", "a/3", "ab", "b/1"]
    );
    assert_eq!(r(s, "", Some("a/3"), 100), ["ab", "b/1"]);
    assert_eq!(r(s, "c", None, 10), Vec::<String>::new());
    let got = s.range("a/3", None, 1).expect("range");
    assert_eq!(got, vec![del("a/3", v(1, 0, 0))]);
}

fn clear_first<S: Store>(s: &mut S) {
    s.commit(WriteBatch {
        entries: vec![put("old", "x", v(5, 0, 1)), del("gone", v(5, 0, 1))],
        meta: vec![("clock".into(), b"5".to_vec())],
        ..WriteBatch::default()
    })
    .expect("commit");
    let out = s
        .commit(WriteBatch {
            clear_first: true,
            // An older version than the cleared one still applies, as new.
            entries: vec![put("new", "y", v(1, 0, 2)), put("old", "z", v(1, 0, 2))],
            ..WriteBatch::default()
        })
        .expect("commit");
    assert_eq!(out, vec![APPLIED_NEW, APPLIED_NEW]);
    assert_eq!(
        all(s),
        vec![put("new", "y", v(1, 0, 2)), put("old", "z", v(1, 0, 2))]
    );
    assert!(s.by_origin(1, Version::zero(1), 10).expect("o").is_empty());
    assert_eq!(s.by_origin(2, Version::zero(2), 10).expect("o").len(), 2);
    assert!(s.old_tombstones(u64::MAX, 10).expect("old").is_empty());
    assert_eq!(s.bucket(0, 0).expect("bucket").len(), 2);
    // Meta values are not data: a clear keeps them.
    assert_eq!(s.meta("clock").expect("meta"), Some(b"5".to_vec()));
    // Clearing with nothing to merge empties the store.
    s.commit(WriteBatch {
        clear_first: true,
        ..WriteBatch::default()
    })
    .expect("commit");
    assert!(all(s).is_empty());
    assert!(s.bucket(0, 0).expect("bucket").is_empty());
    // Every index reads as empty after it, not as missing.
    assert!(s
        .by_origin(2, Version::zero(2), 10)
        .expect("by_origin after a clear")
        .is_empty());
    assert!(s.old_tombstones(u64::MAX, 10).expect("old").is_empty());
    let mut stamps = 0;
    s.for_each_stamp(&mut |_| stamps += 1).expect("stamps");
    assert_eq!(stamps, 0);
}

fn meta_round_trip<S: Store>(s: &mut S) {
    assert_eq!(s.meta("clock").expect("meta"), None);
    s.commit(WriteBatch {
        entries: vec![put("k", "v", v(1, 0, 0))],
        meta: vec![
            ("clock".into(), vec![1, 2, 3]),
            ("empty".into(), vec![]),
            ("clock".into(), vec![4]),
        ],
        ..WriteBatch::default()
    })
    .expect("commit");
    assert_eq!(s.meta("clock").expect("meta"), Some(vec![4]));
    assert_eq!(s.meta("empty").expect("meta"), Some(vec![]));
    assert_eq!(s.meta("k").expect("meta"), None);
    s.commit(WriteBatch {
        meta: vec![("clock".into(), vec![9; 1000])],
        ..WriteBatch::default()
    })
    .expect("commit");
    assert_eq!(s.meta("clock").expect("meta"), Some(vec![9; 1000]));
}

// ---------------------------------------------------------------------------
// Each case against each store.

fn open_redb(dir: &Path) -> RedbStore {
    RedbStore::open(&dir.join("ringsync.redb")).expect("open")
}

macro_rules! conformance {
    ($($case:ident),* $(,)?) => {
        mod memory {
            use ringsync::store::MemoryStore;
            $(
                #[test]
                fn $case() {
                    super::$case(&mut MemoryStore::new());
                }
            )*
        }
        mod redb {
            $(
                #[test]
                fn $case() {
                    let dir = tempfile::tempdir().expect("tempdir");
                    super::$case(&mut super::open_redb(dir.path()));
                }
            )*
        }
    };
}

conformance!(
    merge_lww,
    equal_version_ignored,
    tombstones,
    by_origin,
    buckets,
    ranges,
    clear_first,
    meta_round_trip,
);

// ---------------------------------------------------------------------------
// Random batches: both stores must agree on everything.

fn arb_version() -> impl Strategy<Value = Version> {
    (0u64..6, 0u32..2, 0u32..3).prop_map(|(ms, counter, origin)| v(ms, counter, origin))
}

fn arb_key() -> impl Strategy<Value = String> {
    (0u8..10).prop_map(|i| format!("k{i}"))
}

fn arb_entry() -> impl Strategy<Value = Entry> {
    (
        arb_key(),
        arb_version(),
        prop::option::of(prop::collection::vec(any::<u8>(), 0..4)),
    )
        .prop_map(|(key, version, value)| Entry {
            key,
            value,
            version,
        })
}

fn arb_batch() -> impl Strategy<Value = WriteBatch> {
    (
        prop::bool::weighted(0.05),
        prop::collection::vec(arb_entry(), 0..12),
        prop::collection::vec((arb_key(), arb_version()), 0..4),
        prop::collection::vec(((0u8..3).prop_map(|i| format!("m{i}")), any::<u8>()), 0..2),
    )
        .prop_map(|(clear_first, entries, collect, meta)| WriteBatch {
            clear_first,
            entries,
            collect,
            meta: meta.into_iter().map(|(k, b)| (k, vec![b])).collect(),
        })
}

fn assert_same<A: Store, B: Store>(a: &A, b: &B) {
    assert_eq!(all(a), all(b), "for_each");
    for origin in 0..4 {
        for after in [Version::zero(origin), v(2, 0, 0), v(2, 1, 2), v(4, 0, 1)] {
            for limit in [0, 2, 100] {
                assert_eq!(
                    a.by_origin(origin, after, limit).expect("a"),
                    b.by_origin(origin, after, limit).expect("b"),
                    "by_origin({origin}, {after}, {limit})"
                );
            }
        }
    }
    for before in 0..7 {
        for limit in [1, 100] {
            assert_eq!(
                a.old_tombstones(before, limit).expect("a"),
                b.old_tombstones(before, limit).expect("b"),
                "old_tombstones({before}, {limit})"
            );
        }
    }
    for bucket in 0..4 {
        assert_eq!(
            a.bucket(bucket, 2).expect("a"),
            b.bucket(bucket, 2).expect("b")
        );
    }
    assert_eq!(
        a.range("k", Some("k3"), 4).expect("a"),
        b.range("k", Some("k3"), 4).expect("b")
    );
    for i in 0..3 {
        let name = format!("m{i}");
        assert_eq!(a.meta(&name).expect("a"), b.meta(&name).expect("b"));
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn random_batches_agree(batches in prop::collection::vec(arb_batch(), 1..8)) {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut redb = open_redb(dir.path());
        let mut memory = MemoryStore::new();
        for batch in batches {
            let m = memory.commit(batch.clone()).expect("memory commit");
            let r = redb.commit(batch).expect("redb commit");
            prop_assert_eq!(m, r);
        }
        assert_same(&memory, &redb);
        prop_assert_eq!(redb.len().expect("len"), memory.len() as u64);
    }
}

// ---------------------------------------------------------------------------
// redb only.

#[test]
fn redb_survives_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Nested directories that do not exist yet are created.
    let path = dir.path().join("data").join("node1").join("ringsync.redb");
    let mut memory = MemoryStore::new();
    {
        let mut s = RedbStore::open(&path).expect("open");
        assert!(s.is_empty().expect("is_empty"));
        for batch in [
            WriteBatch {
                entries: vec![
                    put("a", "1", v(10, 0, 1)),
                    del("b", v(11, 0, 2)),
                    put("c", "3", v(12, 0, 1)),
                ],
                meta: vec![("clock".into(), b"12".to_vec())],
                ..WriteBatch::default()
            },
            WriteBatch {
                entries: vec![put("c", "4", v(13, 0, 3))],
                collect: vec![],
                ..WriteBatch::default()
            },
        ] {
            memory.commit(batch.clone()).expect("memory");
            s.commit(batch).expect("redb");
        }
        assert_eq!(s.len().expect("len"), 3);
    }
    let s = RedbStore::open(&path).expect("reopen");
    assert_eq!(s.len().expect("len"), 3);
    assert_eq!(s.meta("clock").expect("meta"), Some(b"12".to_vec()));
    assert_same(&memory, &s);
    assert_eq!(s.old_tombstones(u64::MAX, 10).expect("old").len(), 1);
}

#[test]
fn redb_file_is_locked_while_open() {
    let dir = tempfile::tempdir().expect("tempdir");
    let _s = open_redb(dir.path());
    let err = RedbStore::open(&dir.path().join("ringsync.redb")).expect_err("second open");
    assert!(err.0.contains("ringsync.redb"), "{err}");
}

#[test]
fn redb_commit_failing_midway_applies_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("ringsync.redb");
    let mut memory = MemoryStore::new();
    let base = WriteBatch {
        entries: vec![put("a", "1", v(1, 0, 1)), del("t", v(1, 0, 1))],
        meta: vec![("clock".into(), vec![1])],
        ..WriteBatch::default()
    };
    {
        let mut s = RedbStore::open(&path).expect("open");
        s.commit(base.clone()).expect("commit");
        memory.commit(base).expect("commit");
    }
    // Damage one record behind the store's back, as a bad disk would.
    {
        let db = ::redb::Database::create(&path).expect("raw open");
        let kv: ::redb::TableDefinition<&str, &[u8]> = ::redb::TableDefinition::new("kv");
        let txn = db.begin_write().expect("begin");
        txn.open_table(kv)
            .expect("table")
            .insert("bad", &[1u8, 2, 3][..])
            .expect("insert");
        txn.commit().expect("commit");
    }
    let mut s = RedbStore::open(&path).expect("reopen");
    let err = s.get("bad").expect_err("corrupt record");
    assert!(err.0.contains("\"bad\""), "{err}");
    // The merge of "bad" reads the damaged record and fails after "good" and
    // "a" were already written in the transaction; the collect of "t" and the
    // meta write come later and must not happen either.
    let err = s
        .commit(WriteBatch {
            entries: vec![
                put("good", "g", v(2, 0, 1)),
                put("a", "2", v(2, 0, 1)),
                put("bad", "b", v(2, 0, 1)),
            ],
            collect: vec![("t".into(), v(1, 0, 1))],
            meta: vec![("clock".into(), vec![2])],
            ..WriteBatch::default()
        })
        .expect_err("commit over a corrupt record");
    assert!(err.0.contains("\"bad\""), "{err}");
    assert_eq!(s.get("good").expect("get"), None);
    assert_eq!(s.get("a").expect("get"), Some(put("a", "1", v(1, 0, 1))));
    assert_eq!(s.get("t").expect("get"), Some(del("t", v(1, 0, 1))));
    assert_eq!(s.meta("clock").expect("meta"), Some(vec![1]));
    assert_eq!(
        s.by_origin(1, Version::zero(1), 10).expect("by_origin"),
        memory
            .by_origin(1, Version::zero(1), 10)
            .expect("by_origin")
    );
    assert_eq!(s.old_tombstones(u64::MAX, 10).expect("old").len(), 1);
    // The store still works; a clear drops the damaged record.
    s.commit(WriteBatch {
        clear_first: true,
        entries: vec![put("x", "1", v(3, 0, 0))],
        ..WriteBatch::default()
    })
    .expect("commit after a failed one");
    assert_eq!(s.len().expect("len"), 1);
    assert_eq!(all(&s), vec![put("x", "1", v(3, 0, 0))]);
}

#[test]
fn memory_failed_commit_changes_nothing() {
    let mut s = MemoryStore::new();
    merge(
        &mut s,
        vec![put("a", "1", v(1, 0, 1)), del("t", v(1, 0, 1))],
    );
    let before = s.clone();
    s.fail_next_commit = Some("disk on fire".into());
    let err = s
        .commit(WriteBatch {
            clear_first: true,
            entries: vec![put("b", "2", v(2, 0, 1))],
            collect: vec![("t".into(), v(1, 0, 1))],
            meta: vec![("clock".into(), vec![2])],
        })
        .expect_err("told to fail");
    assert_eq!(err.0, "disk on fire");
    assert_same(&before, &s);
    // Only the next commit fails.
    merge(&mut s, vec![put("b", "2", v(2, 0, 1))]);
    assert_eq!(s.len(), 3);
}
