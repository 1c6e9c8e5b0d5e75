//! Tests of the packed `by_origin`: blocks against a plain set of rows
//! under random changes, and the migration of layout 4's rows.

use std::collections::BTreeSet;

use ::redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata};
use proptest::prelude::*;

use super::super::hashed::{fold_run, Change as Hashed};
use super::super::layout::{BY_ORIGIN_V4, META_LAYOUT};
use super::super::pending::Rows;
use super::super::record::encode_into;
use super::super::{RedbStore, HASHED, KV, META, PENDING, TOMBS};
use super::*;
use crate::core::entry::{key_hash, Entry};
use crate::core::store::Store;

type Model = BTreeSet<(Origin, u64, u32, String)>;

/// Every row of the table, block by block, checking that each block is
/// non-empty, of one origin, sorted, and starts at its key, and that the
/// blocks follow each other in order.
fn all_rows(table: &impl ReadableTable<&'static [u8], &'static [u8]>) -> Model {
    let mut out = Model::new();
    let mut last: Option<(Origin, u64, u32, String)> = None;
    for item in table.iter().expect("iter") {
        let (k, v) = item.expect("item");
        let first = parse_key(k.value()).expect("key");
        let rows: Vec<Row<'_>> = rows(first.origin, v.value())
            .map(|r| r.expect("row").1)
            .collect();
        assert_eq!(rows.first(), Some(&first), "a block starts at its key");
        for r in rows {
            let t = (r.origin, r.ms, r.counter, r.key.to_string());
            assert!(last.as_ref() < Some(&t), "rows in order: {t:?}");
            last = Some(t.clone());
            out.insert(t);
        }
    }
    out
}

/// What `scan` finds of `origin` above `after`, at most `limit`.
fn scanned(
    table: &impl ReadableTable<&'static [u8], &'static [u8]>,
    origin: Origin,
    after: Version,
    limit: usize,
) -> Vec<String> {
    let mut out = Vec::new();
    scan(table, origin, after, |k| {
        out.push(k.to_string());
        Ok(out.len() < limit)
    })
    .expect("scan");
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Random puts and removes, applied in batches with small blocks (so
    /// that blocks split and take in their neighbours), leave the rows a
    /// plain set says, and every scan finds what the set holds.
    #[test]
    fn blocks_hold_what_a_set_of_rows_holds(
        batches in prop::collection::vec(
            prop::collection::vec((0u32..3, 0u64..40, 0u32..3, 0u8..30, any::<bool>()), 0..120),
            1..8,
        ),
        block in 40usize..200,
    ) {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = Database::create(dir.path().join("o.redb")).expect("create");
        let mut model = Model::new();
        for batch in &batches {
            let keys: Vec<String> = batch.iter().map(|b| format!("key{}", b.3)).collect();
            let changes: Vec<Change<'_>> = batch
                .iter()
                .zip(&keys)
                .map(|(&(origin, ms, counter, _, set), key)| {
                    let v = Version { ms, counter, origin };
                    if set { (key.as_str(), None, Some(v)) } else { (key.as_str(), Some(v), None) }
                })
                .collect();
            for &(key, was, now) in &changes {
                if let Some(v) = was {
                    model.remove(&(v.origin, v.ms, v.counter, key.to_string()));
                }
                if let Some(v) = now {
                    model.insert((v.origin, v.ms, v.counter, key.to_string()));
                }
            }
            let txn = db.begin_write().expect("write");
            {
                let mut table = txn.open_table(BY_ORIGIN).expect("table");
                apply_sized(&mut table, changes.into_iter(), block).expect("apply");
                prop_assert_eq!(&all_rows(&table), &model);
            }
            txn.commit().expect("commit");
        }
        let txn = db.begin_read().expect("read");
        let table = txn.open_table(BY_ORIGIN).expect("table");
        for origin in 0..4 {
            for (ms, counter, limit) in [(0, 0, 1000), (10, 1, 1000), (20, 0, 3), (39, 2, 1000)] {
                let after = Version { ms, counter, origin };
                let want: Vec<String> = model
                    .iter()
                    .filter(|(o, m, c, _)| {
                        *o == origin && Version { ms: *m, counter: *c, origin } > after
                    })
                    .map(|r| r.3.clone())
                    .take(limit)
                    .collect();
                prop_assert_eq!(scanned(&table, origin, after, limit), want);
            }
        }
    }
}

#[test]
fn appends_fill_blocks_and_a_corrupt_block_is_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = Database::create(dir.path().join("o.redb")).expect("create");
    let keys: Vec<String> = (0..5000).map(|i| format!("bench/{i:09}")).collect();
    let txn = db.begin_write().expect("write");
    {
        let mut table = txn.open_table(BY_ORIGIN).expect("table");
        for run in keys.chunks(700) {
            let changes = run.iter().map(|k| {
                let i: u64 = k[6..].parse().expect("number");
                (
                    k.as_str(),
                    None,
                    Some(Version {
                        ms: i + 1,
                        counter: 0,
                        origin: 3,
                    }),
                )
            });
            apply(&mut table, changes).expect("apply");
        }
        let blocks = table.len().expect("len");
        // 29 bytes a row: some 70 rows a block, none under half full.
        assert!(
            (5000 * 29 / BLOCK) as u64 <= blocks && blocks <= (5000 * 29 * 2 / BLOCK) as u64,
            "{blocks} blocks"
        );
        assert_eq!(scanned(&table, 3, Version::zero(3), 10_000), keys);
        table
            .insert([0u8, 0, 0, 9].as_slice(), [1u8, 2, 3].as_slice())
            .expect("insert");
        let err = scan(&table, 9, Version::zero(9), |_| Ok(true)).expect_err("corrupt");
        assert!(err.0.contains("corrupt by_origin"), "{err}");
    }
}

#[test]
fn a_layout_4_store_has_its_by_origin_rows_packed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("v4.redb");
    let entries: Vec<Entry> = (0..3000u64)
        .map(|i| Entry {
            key: format!("k{i:07}"),
            value: (i % 13 != 0).then(|| vec![b'v'; 10]),
            version: Version {
                ms: 1000 + i,
                counter: 0,
                origin: 7 + (i % 2) as u32,
            },
        })
        .collect();
    {
        let db = Database::create(&path).expect("create");
        let txn = db.begin_write().expect("write");
        {
            let mut kv = txn.open_table(KV).expect("kv");
            let mut old = txn.open_table(BY_ORIGIN_V4).expect("by_origin");
            let mut hashed = txn.open_table(HASHED).expect("hashed");
            let mut pending = txn.open_table(PENDING).expect("pending");
            let mut meta = txn.open_table(META).expect("meta");
            txn.open_table(TOMBS).expect("tombs");
            let (mut buf, mut run, mut rows) = (Vec::new(), Vec::<Hashed>::new(), Rows::new(0));
            for (i, e) in entries.iter().enumerate() {
                encode_into(&mut buf, &e.version, e.value.as_deref());
                kv.insert(e.key.as_str(), buf.as_slice()).expect("kv");
                let mut header = [0u8; 17];
                header.copy_from_slice(&buf[..17]);
                // Two thirds folded into both indexes, the rest only in
                // the change list, as layout 4 left them.
                if i < 2000 {
                    let v = e.version;
                    old.insert((v.origin, v.ms, v.counter, e.key.as_str()), ())
                        .expect("by_origin");
                    run.push((key_hash(&e.key), e.key.clone(), 0, Some(header)));
                } else {
                    rows.push(&mut pending, &e.key, Some(&header), None)
                        .expect("row");
                }
            }
            fold_run(&mut hashed, &mut run).expect("hashed");
            rows.finish(&mut pending).expect("rows");
            meta.insert(META_LAYOUT, [4u8].as_slice()).expect("meta");
        }
        txn.commit().expect("commit");
    }
    let store = RedbStore::open(&path).expect("open migrates");
    assert_eq!(store.meta(META_LAYOUT).expect("meta"), Some(vec![5]));
    for origin in [7, 8] {
        let want: Vec<Entry> = entries
            .iter()
            .filter(|e| e.version.origin == origin)
            .cloned()
            .collect();
        let got = store
            .by_origin(origin, Version::zero(origin), 10_000)
            .expect("by_origin");
        assert_eq!(got, want, "origin {origin}: packed rows and folded ones");
    }
    let mut stamps = 0;
    store.for_each_stamp(&mut |_| stamps += 1).expect("stamps");
    assert_eq!(stamps, entries.len());
    let txn = store.db.begin_read().expect("read");
    assert!(
        txn.open_table(BY_ORIGIN_V4).is_err(),
        "layout 4's by_origin is gone"
    );
}
