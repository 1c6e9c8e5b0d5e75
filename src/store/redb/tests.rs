//! Tests of the redb store's own layout: the hash index folded off the hot
//! path, and the migration of a store written by an older build.

use ::redb::{Database, ReadableDatabase, ReadableTableMetadata, TableDefinition};

use super::record::encode_into;
use super::*;
use crate::core::entry::{key_hash, Entry, Version};

fn entry(i: u64, tombstone: bool) -> Entry {
    Entry {
        key: format!("k{i:07}"),
        value: (!tombstone).then(|| vec![b'v'; 10]),
        version: Version {
            ms: 1000 + i,
            counter: 0,
            origin: 7,
        },
    }
}

fn stamps(store: &RedbStore) -> Vec<Stamp> {
    let mut out = Vec::new();
    store
        .for_each_stamp(&mut |s: &Stamp| out.push(*s))
        .expect("stamps");
    out.sort_by_key(|s| (s.key_hash, s.version));
    out
}

fn stamps_of(entries: &[Entry]) -> Vec<Stamp> {
    let mut out: Vec<Stamp> = entries.iter().map(Stamp::of).collect();
    out.sort_by_key(|s| (s.key_hash, s.version));
    out
}

fn pending_len(store: &RedbStore) -> u64 {
    let txn = store.db.begin_read().expect("read");
    let t = txn.open_table(PENDING).expect("pending");
    super::pending::waiting(&t, store.next_seq).expect("waiting")
}

#[test]
fn a_large_commit_folds_pending_and_stamps_follow_every_change() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut store = RedbStore::open(&dir.path().join("s.redb")).expect("open");
    let n = hashed::FOLD_MIN + 10;
    let mut all: Vec<Entry> = (0..n).map(|i| entry(i, false)).collect();
    store
        .commit(WriteBatch {
            entries: all.clone(),
            ..WriteBatch::default()
        })
        .expect("commit");
    assert_eq!(pending_len(&store), 0, "a commit past the threshold folds");
    // A few changes stay pending until something reads the index.
    let newer = Entry {
        version: Version {
            ms: 5_000_000,
            ..all[3].version
        },
        value: None,
        ..all[3].clone()
    };
    let collected = all[5].clone();
    let tomb = Entry {
        value: None,
        version: Version {
            ms: 5_000_000,
            ..collected.version
        },
        ..collected.clone()
    };
    store
        .commit(WriteBatch {
            entries: vec![newer.clone(), tomb.clone()],
            ..WriteBatch::default()
        })
        .expect("commit");
    store
        .commit(WriteBatch {
            collect: vec![(tomb.key.clone(), tomb.version)],
            ..WriteBatch::default()
        })
        .expect("collect");
    assert_eq!(pending_len(&store), 3);
    all[3] = newer;
    all.remove(5);
    assert_eq!(stamps(&store), stamps_of(&all));
    assert_eq!(pending_len(&store), 0, "reading stamps folds first");
    let b = crate::core::store::bucket_of(&all[3].key, 8);
    let bucket = store.bucket(b, 8).expect("bucket");
    assert!(bucket.iter().any(|e| e == &all[3]));
    assert!(bucket.iter().all(|e| e.key != collected.key));
}

/// Layout 1's tables, as the build before this one wrote them.
const BY_HASH_V1: TableDefinition<(u64, &str), ()> = TableDefinition::new("by_hash");

#[test]
fn a_store_of_the_older_layout_is_migrated_once_on_open() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("old.redb");
    let entries: Vec<Entry> = (0..50).map(|i| entry(i, i % 7 == 0)).collect();
    {
        let db = Database::create(&path).expect("create");
        let txn = db.begin_write().expect("write");
        {
            let mut kv = txn.open_table(KV).expect("kv");
            let mut by_hash = txn.open_table(BY_HASH_V1).expect("by_hash");
            let mut by_origin = txn.open_table(layout::BY_ORIGIN_V4).expect("by_origin");
            let mut buf = Vec::new();
            for e in &entries {
                encode_into(&mut buf, &e.version, e.value.as_deref());
                kv.insert(e.key.as_str(), buf.as_slice()).expect("kv");
                // Any hash: layout 1's was another function.
                by_hash.insert((1, e.key.as_str()), ()).expect("by_hash");
                let v = e.version;
                by_origin
                    .insert((v.origin, v.ms, v.counter, e.key.as_str()), ())
                    .expect("by_origin");
            }
            txn.open_table(TOMBS).expect("tombs");
            txn.open_table(META).expect("meta");
        }
        txn.commit().expect("commit");
    }
    let store = RedbStore::open(&path).expect("open migrates");
    assert_eq!(stamps(&store), stamps_of(&entries));
    let e = &entries[1];
    let b = (key_hash(&e.key) >> 56) as u32;
    assert!(store.bucket(b, 8).expect("bucket").contains(e));
    assert_eq!(
        store.meta(layout::META_LAYOUT).expect("meta"),
        Some(vec![5])
    );
    drop(store);
    // Opened again: nothing left to migrate, and the data is the same.
    let store = RedbStore::open(&path).expect("reopen");
    assert_eq!(stamps(&store), stamps_of(&entries));
    let txn = store.db.begin_read().expect("read");
    assert!(
        txn.open_table(BY_HASH_V1).is_err(),
        "layout 1's bucket index is gone"
    );
}

#[test]
fn a_layout_from_a_newer_build_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("new.redb");
    let mut store = RedbStore::open(&path).expect("open");
    store
        .commit(WriteBatch {
            meta: vec![(layout::META_LAYOUT.to_string(), vec![9])],
            ..WriteBatch::default()
        })
        .expect("commit");
    drop(store);
    let err = RedbStore::open(&path).expect_err("refused");
    assert!(err.0.contains("layout [9]"), "{err}");
}

/// Layouts 2 and 3's hash index: a row per key.
const HASHED_V3: TableDefinition<(u64, &str), &[u8]> = TableDefinition::new("hashed");

/// Layout 2's change list: keys only, their headers read from `kv` at fold.
const PENDING_V2: TableDefinition<u64, &str> = TableDefinition::new("pending");

#[test]
fn a_layout_2_store_keeps_its_pending_changes_through_the_migration() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("v2.redb");
    let entries: Vec<Entry> = (0..40).map(|i| entry(i, i % 9 == 0)).collect();
    {
        let db = Database::create(&path).expect("create");
        let txn = db.begin_write().expect("write");
        {
            let mut kv = txn.open_table(KV).expect("kv");
            let mut by_origin = txn.open_table(layout::BY_ORIGIN_V4).expect("by_origin");
            let mut hashed = txn.open_table(HASHED_V3).expect("hashed");
            let mut pending = txn.open_table(PENDING_V2).expect("pending");
            let mut meta = txn.open_table(META).expect("meta");
            txn.open_table(TOMBS).expect("tombs");
            let mut buf = Vec::new();
            for (i, e) in entries.iter().enumerate() {
                encode_into(&mut buf, &e.version, e.value.as_deref());
                kv.insert(e.key.as_str(), buf.as_slice()).expect("kv");
                let v = e.version;
                by_origin
                    .insert((v.origin, v.ms, v.counter, e.key.as_str()), ())
                    .expect("by_origin");
                // The first half folded, the rest still pending, and one
                // pending key gone from `kv` since (a collected tombstone).
                if i < 20 {
                    hashed
                        .insert((key_hash(&e.key), e.key.as_str()), &buf[..17])
                        .expect("hashed");
                } else {
                    pending.insert(i as u64, e.key.as_str()).expect("pending");
                }
            }
            hashed
                .insert((key_hash("gone"), "gone"), &buf[..17])
                .expect("hashed");
            pending.insert(100, "gone").expect("pending");
            meta.insert(layout::META_LAYOUT, [2u8].as_slice())
                .expect("meta");
        }
        txn.commit().expect("commit");
    }
    let mut store = RedbStore::open(&path).expect("open migrates");
    assert_eq!(pending_len(&store), 21, "layout 2's rows carried over");
    assert_eq!(stamps(&store), stamps_of(&entries), "and folded right");
    assert_eq!(
        store.meta(layout::META_LAYOUT).expect("meta"),
        Some(vec![5])
    );
    {
        let txn = store.db.begin_read().expect("read");
        assert!(
            txn.open_table(PENDING_V2).is_err(),
            "layout 2's table is gone"
        );
    }
    // Later commits append after the carried rows.
    let newer = Entry {
        version: Version {
            ms: 9_000_000,
            ..entries[5].version
        },
        ..entries[5].clone()
    };
    store
        .commit(WriteBatch {
            entries: vec![newer.clone()],
            ..WriteBatch::default()
        })
        .expect("commit");
    let mut expected = entries.clone();
    expected[5] = newer;
    assert_eq!(stamps(&store), stamps_of(&expected));
}

#[test]
fn an_entry_that_loses_leaves_the_stored_record_and_its_indexes_as_they_were() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut store = RedbStore::open(&dir.path().join("s.redb")).expect("open");
    let held = entry(1, false);
    let older = Entry {
        value: Some(b"older".to_vec()),
        version: Version {
            ms: held.version.ms - 1,
            ..held.version
        },
        ..held.clone()
    };
    let out = store
        .commit(WriteBatch {
            entries: vec![held.clone(), older.clone()],
            ..WriteBatch::default()
        })
        .expect("commit");
    assert_eq!(out[1], Merged::Ignored);
    assert_eq!(store.get(&held.key).expect("get"), Some(held.clone()));
    let listed = store
        .by_origin(held.version.origin, Version::zero(held.version.origin), 10)
        .expect("by_origin");
    assert_eq!(listed, vec![held.clone()]);
    assert_eq!(stamps(&store), stamps_of(&[held]));
}

#[test]
fn by_origin_follows_every_change_across_folds_and_reopening() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("s.redb");
    let mut store = RedbStore::open(&path).expect("open");
    let origin = 7;
    let listed = |store: &RedbStore| -> Vec<Entry> {
        store
            .by_origin(origin, Version::zero(origin), 100)
            .expect("by_origin")
    };
    let commit = |store: &mut RedbStore, entries: Vec<Entry>, collect: Vec<(String, Version)>| {
        store
            .commit(WriteBatch {
                entries,
                collect,
                ..WriteBatch::default()
            })
            .expect("commit");
    };
    let (a, b, t) = (entry(1, false), entry(2, false), entry(3, true));
    commit(&mut store, vec![a.clone(), b.clone(), t.clone()], vec![]);
    assert_eq!(listed(&store), vec![a.clone(), b.clone(), t.clone()]);
    // Replaced after a fold of by_origin: the old row goes.
    let a2 = Entry {
        version: Version {
            ms: 9_000,
            ..a.version
        },
        ..a.clone()
    };
    commit(
        &mut store,
        vec![a2.clone()],
        vec![(t.key.clone(), t.version)],
    );
    assert_eq!(listed(&store), vec![b.clone(), a2.clone()]);
    // Replaced again before any read, then every row folded again from the
    // first, as after a crash lost the unsynced folds: the index says the
    // same.
    let a3 = Entry {
        version: Version {
            ms: 9_500,
            ..a.version
        },
        ..a.clone()
    };
    commit(&mut store, vec![a3.clone()], vec![]);
    assert!(pending_len(&store) > 0, "the rows are still to be folded");
    store.origins_folded.store(0, Ordering::Release);
    assert_eq!(listed(&store), vec![b.clone(), a3.clone()]);
    // Closing folds the list; the reopened store finds it empty.
    drop(store);
    let store = RedbStore::open(&path).expect("reopen");
    assert_eq!(pending_len(&store), 0, "closing folded the rows");
    assert_eq!(listed(&store), vec![b, a3]);
}

/// Layout 3's change list: one row per row number.
const PENDING_V3: TableDefinition<u64, &[u8]> = TableDefinition::new("pending_rows");

#[test]
fn a_layout_3_store_keeps_its_change_rows_through_the_migration() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("v3.redb");
    let entries: Vec<Entry> = (0..3000).map(|i| entry(i, i % 11 == 0)).collect();
    {
        let db = Database::create(&path).expect("create");
        let txn = db.begin_write().expect("write");
        {
            let mut kv = txn.open_table(KV).expect("kv");
            let mut by_origin = txn.open_table(layout::BY_ORIGIN_V4).expect("by_origin");
            let mut hashed = txn.open_table(HASHED_V3).expect("hashed");
            let mut rows = txn.open_table(PENDING_V3).expect("pending_rows");
            let mut meta = txn.open_table(META).expect("meta");
            txn.open_table(TOMBS).expect("tombs");
            let (mut buf, mut row) = (Vec::new(), Vec::new());
            for (i, e) in entries.iter().enumerate() {
                encode_into(&mut buf, &e.version, e.value.as_deref());
                kv.insert(e.key.as_str(), buf.as_slice()).expect("kv");
                // The first third folded into both indexes; the rest only
                // in the change list, as layout 3 left them.
                if i < 1000 {
                    let v = e.version;
                    by_origin
                        .insert((v.origin, v.ms, v.counter, e.key.as_str()), ())
                        .expect("by_origin");
                    hashed
                        .insert((key_hash(&e.key), e.key.as_str()), &buf[..17])
                        .expect("hashed");
                } else {
                    super::pending::encode_row(&mut row, &e.key, Some(&buf[..17]), None);
                    rows.insert(i as u64, row.as_slice()).expect("row");
                }
            }
            meta.insert(layout::META_LAYOUT, [3u8].as_slice())
                .expect("meta");
        }
        txn.commit().expect("commit");
    }
    let store = RedbStore::open(&path).expect("open migrates");
    assert_eq!(pending_len(&store), 2000, "layout 3's rows carried over");
    assert_eq!(
        store.meta(layout::META_LAYOUT).expect("meta"),
        Some(vec![5])
    );
    let by_origin = store
        .by_origin(7, Version::zero(7), 10_000)
        .expect("by_origin");
    assert_eq!(by_origin, entries, "by_origin folded from the carried rows");
    assert_eq!(stamps(&store), stamps_of(&entries), "and hashed");
    let txn = store.db.begin_read().expect("read");
    assert!(
        txn.open_table(PENDING_V3).is_err(),
        "layout 3's table is gone"
    );
}

#[test]
fn the_change_list_goes_in_chunks_and_is_read_from_any_row() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut store = RedbStore::open(&dir.path().join("chunks.redb")).expect("open");
    let n = u64::from(super::pending::CHUNK) * 2 + 5;
    let entries: Vec<Entry> = (0..n).map(|i| entry(i, false)).collect();
    for batch in [entries, vec![entry(n, false)]] {
        store
            .commit(WriteBatch {
                entries: batch,
                ..WriteBatch::default()
            })
            .expect("commit");
    }
    let txn = store.db.begin_read().expect("read");
    let t = txn.open_table(PENDING).expect("pending");
    assert_eq!(t.len().expect("len"), 4, "three chunks, then one");
    assert_eq!(store.next_seq, n + 1);
    assert_eq!(super::pending::next_row(&t).expect("next"), n + 1);
    for from in [0, 1, 1023, 1024, 1025, n - 1, n, n + 1] {
        let mut seen = Vec::new();
        super::pending::for_each_row(&t, from, |seq, row| {
            seen.push((seq, row.key));
            Ok(())
        })
        .expect("rows");
        let want: Vec<(u64, String)> = (from..=n).map(|i| (i, entry(i, false).key)).collect();
        assert_eq!(seen, want, "from row {from}");
    }
}

/// What a crash would leave: a copy of the file as it is now, opened.
fn crash_image(store: &RedbStore, dir: &std::path::Path, name: &str) -> RedbStore {
    let copy = dir.join(name);
    std::fs::copy(store.path(), &copy).expect("copy the file");
    RedbStore::open(&copy).expect("open the copy")
}

#[test]
fn a_deferred_commit_is_read_at_once_and_on_disk_only_after_sync() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut store = RedbStore::open(&dir.path().join("s.redb")).expect("open");
    let batch = |i| WriteBatch {
        entries: vec![entry(i, false)],
        ..WriteBatch::default()
    };
    store.commit(batch(1)).expect("a durable commit");
    store.set_deferred(true);
    store.commit(batch(2)).expect("a deferred commit");
    assert!(
        store.get("k0000002").expect("get").is_some(),
        "read at once"
    );
    let image = crash_image(&store, dir.path(), "before.redb");
    assert!(image.get("k0000001").expect("get").is_some());
    assert_eq!(image.get("k0000002").expect("get"), None, "not on disk yet");
    drop(image);
    store.sync().expect("sync");
    let image = crash_image(&store, dir.path(), "after.redb");
    assert!(image.get("k0000002").expect("get").is_some(), "synced");
    drop(image);
    // Sync turned deferral off: the next commit is durable by itself.
    store.commit(batch(3)).expect("a durable commit");
    let image = crash_image(&store, dir.path(), "durable.redb");
    assert!(image.get("k0000003").expect("get").is_some());
}
