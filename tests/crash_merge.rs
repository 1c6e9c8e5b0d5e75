//! A node killed with SIGKILL in the middle of a large merge reopens with
//! a digest equal to one recomputed from every stored entry: each commit,
//! hash index included, is whole or absent (issue 14). The joining node
//! merges `RINGSYNC_CRASH_KEYS` entries (default 10^5, so that a debug
//! build runs it in seconds; 10^6 in a release run).

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{BIN, READY_DEADLINE};
use ringsync::bench::data;
use ringsync::core::entry::{key_hash, Entry};
use ringsync::core::tree::Tree;
use ringsync::core::{Config, Schedule};
use ringsync::proc_cluster::{ProcCluster, Spec};
use ringsync::store::{RedbStore, Store};

/// How long the joiner may take to hold part of the dataset.
const MERGE_DEADLINE: Duration = Duration::from_secs(120);

fn keys() -> u64 {
    std::env::var("RINGSYNC_CRASH_KEYS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000)
}

/// The root recomputed from every stored entry, values read.
fn recomputed_root(store: &RedbStore, depth: u32) -> u64 {
    let mut tree = Tree::new(depth);
    store
        .for_each(&mut |e: &Entry| tree.toggle(key_hash(&e.key), e.hash64()))
        .expect("scan the store");
    tree.root()
}

#[test]
fn a_node_killed_during_a_large_merge_reopens_with_a_true_digest() {
    let n = keys();
    let spec = Spec {
        ready_deadline: READY_DEADLINE * 3,
        log_filter: Some("warn".into()),
        ..Spec::new(
            Path::new(BIN),
            "crash-merge",
            2,
            Schedule::Successor,
            "300ms",
        )
    };
    let mut c = ProcCluster::new(&spec).expect("cluster");
    let base_ms = ringsync::service::now_ms() - 3_600_000;
    {
        let mut holder = RedbStore::open(&c.store_path(0)).expect("holder store");
        data::load(&mut holder, n, 0, base_ms).expect("load");
    }
    c.spawn(0).expect("spawn n0");
    c.wait_ready(0).expect("n0 ready");
    c.spawn(1).expect("spawn n1");
    c.wait_ready(1).expect("n1 ready");
    // Killed once it holds a part: mid-merge, with commits behind it and
    // more on the way.
    let started = Instant::now();
    let held = loop {
        let k = c.status_u64(1, "keys").unwrap_or(0);
        if k >= n / 8 {
            break k;
        }
        assert!(
            started.elapsed() < MERGE_DEADLINE,
            "n1 holds {k} of {n} keys after {MERGE_DEADLINE:?}:\n{}",
            c.log_tail(1)
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    c.kill(1).expect("kill -9 n1");
    assert!(held < n, "the merge ended before the kill: make it larger");

    let path = c.store_path(1);
    let store = RedbStore::open(&path).expect("reopen after the kill");
    let depth = Config::new(data::CLUSTER, 2, 1, Schedule::Successor, 300).tree_depth;
    let expected = recomputed_root(&store, depth);
    let stored = store.len().expect("len");
    let node = data::open_node(store, 1, Schedule::Successor).expect("open the node");
    assert!(stored > 0 && stored < n, "{stored} of {n} stored");
    assert_eq!(
        node.root(),
        expected,
        "the digest rebuilt on open differs from the stored entries'"
    );
    assert_eq!(node.counts().0, stored);
}
