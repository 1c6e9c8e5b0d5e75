//! The commit thread's tests, through a node: grouped commits, reads that
//! do not wait for a commit, and relays that do not wait for a sync.

use std::path::Path;
use std::time::Duration;

use std::sync::Arc;

use super::committer::AnyStore;
use super::handle::NodeHandle;
use crate::auth::Secrets;
use crate::core::entry::Entry;
use crate::service::transport::{Call, Hop, HopResult, NodeDigest, Offline, Reply, Transport};
use crate::store::{Gate, Gated, RedbStore, Store};
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

/// Records every message sent (to whom, what), and fails it, as to a peer
/// that is down.
#[derive(Default)]
struct Recording(std::sync::Mutex<Vec<(String, Vec<u8>)>>);

impl Recording {
    fn sent(&self) -> Vec<(String, Vec<u8>)> {
        self.0.lock().expect("the record").clone()
    }
}

impl Transport for Recording {
    fn message<'a>(&'a self, call: Call<'a>, payload: Vec<u8>) -> Reply<'a, Vec<u8>> {
        self.0
            .lock()
            .expect("the record")
            .push((call.addr.to_string(), payload));
        Offline.message(call, Vec::new())
    }

    fn digest<'a>(&'a self, call: Call<'a>) -> Reply<'a, NodeDigest> {
        Offline.digest(call)
    }

    fn hop<'a>(&'a self, call: Call<'a>, hop: Hop) -> Reply<'a, HopResult> {
        Offline.hop(call, hop)
    }
}

#[test]
fn a_merged_entry_is_passed_on_before_its_sync_and_its_sender_answered_after() {
    let topo = |name: &str| {
        let text = format!("[cluster]\nname = \"{name}\"\nrelay = true\n[[node]]\nid = \"a\"\naddr = \"127.0.0.1:1\"\n[[node]]\nid = \"b\"\naddr = \"127.0.0.1:2\"\n[[node]]\nid = \"c\"\naddr = \"127.0.0.1:3\"\n");
        Topology::parse(&text, "<text>", None).expect("topology")
    };
    // a writes; its relay to b is what b is handed.
    let to_b = Arc::new(Recording::default());
    let a = NodeHandle::new(
        topo("relay-sync"),
        "a",
        Box::new(crate::store::MemoryStore::new()),
        Secrets::default(),
        Arc::clone(&to_b) as Arc<dyn Transport>,
    )
    .expect("open a");
    async_std::task::block_on(a.write("k".into(), Some(b"v".to_vec()))).expect("write at a");
    wait("a's relay to b", || !to_b.sent().is_empty());
    let (addr, push) = to_b.sent().remove(0);
    assert_eq!(addr, "127.0.0.1:2");

    let dir = tempfile::tempdir().expect("a temp dir");
    let gate = Arc::new(Gate::default());
    let redb = RedbStore::open(&dir.path().join("s.redb")).expect("redb");
    let to_c = Arc::new(Recording::default());
    let b = NodeHandle::new(
        topo("relay-sync"),
        "b",
        Box::new(Gated::new(redb, Arc::clone(&gate))),
        Secrets::default(),
        Arc::clone(&to_c) as Arc<dyn Transport>,
    )
    .expect("open b");
    gate.close_syncs();
    let syncs = gate.syncs();
    let answered = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (b2, done) = (Arc::clone(&b), Arc::clone(&answered));
    let merge = async_std::task::spawn(async move {
        let reply = b2.peer_message(push, None).await;
        done.store(true, std::sync::atomic::Ordering::SeqCst);
        reply
    });
    wait("b's sync to begin", || gate.syncs() > syncs);
    // The sync is held: the entry left for c, and a has no answer yet.
    wait("b's relay to c", || {
        to_c.sent().iter().any(|(to, _)| to == "127.0.0.1:3")
    });
    assert!(b.get("k").expect("get").is_some(), "b serves it already");
    std::thread::sleep(Duration::from_millis(50));
    assert!(
        !answered.load(std::sync::atomic::Ordering::SeqCst),
        "a was answered before b's disk had the entry"
    );
    gate.open();
    let reply = async_std::task::block_on(merge);
    assert_eq!(reply.refused, None, "{reply:?}");
}

#[test]
fn writes_queued_around_a_call_share_one_commit() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let (node, gate) = gated_node(dir.path());
    gate.close();
    let begun = gate.begun();
    let first = put(&node, "first");
    assert!(
        gate.wait_begun(begun + 1, DEADLINE),
        "the first commit began"
    );
    // Queued while it is held: a write, a call, a write.
    let a = put(&node, "a");
    wait("a to queue", || node.committer.queued() >= 1);
    let call = {
        let node = Arc::clone(&node);
        async_std::task::spawn(async move { node.on_core(|_| ()).await })
    };
    wait("the call to queue", || node.committer.queued() >= 2);
    let b = put(&node, "b");
    wait("b to queue", || node.committer.queued() >= 3);
    gate.open();
    for w in [first, a, b] {
        async_std::task::block_on(w).expect("a write");
    }
    assert_eq!(async_std::task::block_on(call), Some(()));
    // The first alone, then a and b together: the call between them does
    // not split their commit (each commit is a sync).
    assert_eq!(gate.ended() - begun, 2);
}

#[test]
fn after_a_call_panics_deferred_its_merges_are_synced_and_commits_durable_again() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let (node, gate) = gated_node(dir.path());
    let syncs = gate.syncs();
    let panicked = async_std::task::block_on(node.on_core(|core| {
        core.write(crate::service::now_ms(), "before", Some(b"v".to_vec()))
            .expect("a write in the call");
        panic!("a call panics after its (deferred) commit");
    }));
    assert_eq!(panicked, None::<()>, "the caller is told it failed");
    // The caller's answer is dropped as the panic unwinds, before the
    // commit thread syncs.
    wait("a sync after the panic", || gate.syncs() > syncs);
    // A commit outside the commit thread is durable by itself again.
    node.with_node(|core| core.write(crate::service::now_ms(), "after", Some(b"v".to_vec())))
        .expect("a write");
    let copy = dir.path().join("crash.redb");
    std::fs::copy(dir.path().join("s.redb"), &copy).expect("a crash image");
    let image = RedbStore::open(&copy).expect("open the image");
    for key in ["before", "after"] {
        assert!(
            image.get(key).expect("get").is_some(),
            "{key} is not on disk"
        );
    }
}
