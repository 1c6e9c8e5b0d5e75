//! The commit thread's tests, through a node: grouped commits, and reads
//! that do not wait for a commit.

use std::path::Path;
use std::time::Duration;

use std::sync::Arc;

use super::committer::AnyStore;
use super::handle::NodeHandle;
use crate::auth::Secrets;
use crate::core::entry::Entry;
use crate::service::transport::Offline;
use crate::store::{Gate, Gated, RedbStore};
use crate::topology::Topology;

/// Longest wait for what a test waits on: moments, unless it fails.
const DEADLINE: Duration = Duration::from_secs(20);

/// Node `a` of a two-node ring over redb in `dir`, its commits held
/// at the gate it returns.
fn gated_node(dir: &Path) -> (Arc<NodeHandle>, Arc<Gate>) {
    let topo = Topology::parse(
        "[cluster]\nname = \"commit-test\"\n[[node]]\nid = \"a\"\naddr = \"127.0.0.1:1\"\n[[node]]\nid = \"b\"\naddr = \"127.0.0.1:2\"\n",
        "<text>",
        None,
    )
    .expect("topology");
    let gate = Arc::new(Gate::default());
    let redb = RedbStore::open(&dir.join("s.redb")).expect("redb");
    let store: AnyStore = Box::new(Gated::new(redb, Arc::clone(&gate)));
    let node =
        NodeHandle::new(topo, "a", store, Secrets::default(), Arc::new(Offline)).expect("open");
    (node, gate)
}

fn put(node: &Arc<NodeHandle>, key: &str) -> async_std::task::JoinHandle<Result<Entry, String>> {
    let (node, key) = (Arc::clone(node), key.to_string());
    async_std::task::spawn(async move {
        node.write(key, Some(b"v".to_vec()))
            .await
            .map_err(|e| format!("{e:?}"))
    })
}

fn wait(what: &str, mut cond: impl FnMut() -> bool) {
    let until = std::time::Instant::now() + DEADLINE;
    while !cond() {
        assert!(
            std::time::Instant::now() < until,
            "waited {DEADLINE:?} for {what}"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[test]
fn reads_are_answered_while_a_commit_is_in_progress() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let (node, gate) = gated_node(dir.path());
    async_std::task::block_on(put(&node, "old")).expect("the first write");
    gate.close();
    let begun = gate.begun();
    let writing = put(&node, "new");
    assert!(
        gate.wait_begun(begun + 1, DEADLINE),
        "the write's commit began"
    );
    // That commit holds the core's lock at the gate; reads go on.
    let old = node.get("old").expect("get").expect("old is stored");
    assert_eq!(old.value.as_deref(), Some(&b"v"[..]));
    assert_eq!(node.get("new").expect("get"), None, "not durable yet");
    let page = node.list("", None, 10).expect("list");
    assert_eq!(page.entries.len(), 1);
    assert_eq!(node.snapshot().keys, 1);
    assert_eq!(node.digest().keys, 1);
    assert_eq!(gate.ended(), begun, "the reads did not wait for the commit");
    gate.open();
    async_std::task::block_on(writing).expect("the held write");
    assert!(node.get("new").expect("get").is_some());
    assert_eq!(node.snapshot().keys, 2);
}

#[test]
fn concurrent_writes_share_commits() {
    const N: usize = 64;
    let dir = tempfile::tempdir().expect("a temp dir");
    let (node, gate) = gated_node(dir.path());
    gate.close();
    let begun = gate.begun();
    let mut writes = vec![put(&node, "w0")];
    assert!(
        gate.wait_begun(begun + 1, DEADLINE),
        "the first commit began"
    );
    writes.extend((1..N).map(|i| put(&node, &format!("w{i}"))));
    wait("the other writes to queue", || {
        node.committer.queued() >= N - 1
    });
    gate.open();
    for w in writes {
        async_std::task::block_on(w).expect("a write");
    }
    let commits = gate.ended() - begun;
    // The first alone, the rest together (relay failures may add a
    // call between them, never a commit per write).
    assert!(commits <= 3, "{N} concurrent writes took {commits} commits");
    assert_eq!(node.snapshot().keys, N as u64);
    for i in 0..N {
        assert!(node.get(&format!("w{i}")).expect("get").is_some(), "w{i}");
    }
}
