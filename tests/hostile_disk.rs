//! A hostile disk: store files that are empty or truncated stop the node
//! with a message naming the file and what to do (they never open as an
//! empty store), and a clean stop leaves the store closed cleanly, so the
//! next start has nothing to repair.

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{wait_until, Cluster, BIN};
use ringsync::core::{Entry, Schedule, Version};
use ringsync::store::{RedbStore, Store, WriteBatch};

/// Cycles short enough that the cluster settles in moments.
const INTERVAL: &str = "300ms";

/// Runs `ringsync node` for node `a` of `topology/local-3.toml` with its
/// data in `dir`; returns its exit status and what it printed. The store is
/// opened before the listener binds, so a refused store never takes a port.
fn run_node(dir: &Path) -> (Option<i32>, String) {
    let topology = Path::new(env!("CARGO_MANIFEST_DIR")).join("topology/local-3.toml");
    let child = Command::new(BIN)
        .args(["node", "--id", "a", "--topology"])
        .arg(&topology)
        .arg("--data-dir")
        .arg(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start ringsync node");
    let mut guard = KillOnDrop(Some(child));
    // It must stop by itself; a node that opened the store would serve on
    // (and is killed by the guard when the wait fails).
    let mut status = None;
    wait_until(Duration::from_secs(20), "the node stops by itself", || {
        status = guard.0.as_mut().and_then(|c| c.try_wait().ok().flatten());
        status.is_some()
    });
    let out = guard
        .0
        .take()
        .expect("the child is still held")
        .wait_with_output()
        .expect("the node's output");
    (
        status.and_then(|s| s.code()),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// Kills the node it holds when dropped, panics included.
struct KillOnDrop(Option<Child>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A store file with a few entries in it, closed cleanly.
fn written_store(path: &Path) {
    let mut s = RedbStore::open(path).expect("a new store");
    let entries = (0..50)
        .map(|i| Entry {
            key: format!("k{i}"),
            value: Some(vec![b'v'; 100]),
            version: Version {
                ms: 1_000 + i,
                counter: 0,
                origin: 0,
            },
        })
        .collect();
    s.commit(WriteBatch {
        entries,
        ..WriteBatch::default()
    })
    .expect("commit");
}

#[test]
fn a_zero_byte_store_file_stops_the_node_naming_the_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("ringsync.redb");
    std::fs::write(&file, b"").expect("an empty store file");
    let (code, said) = run_node(dir.path());
    assert_ne!(
        code,
        Some(0),
        "the node ran on an empty store file:\n{said}"
    );
    assert!(
        said.contains(&file.display().to_string()) && said.contains("empty"),
        "the message does not name the file and the problem:\n{said}"
    );
    assert!(
        said.contains("backup"),
        "the message says nothing to do:\n{said}"
    );
    // Nothing was written into it: still 0 bytes for the operator to see.
    assert_eq!(std::fs::metadata(&file).expect("the file").len(), 0);
}

#[test]
fn a_truncated_store_file_stops_the_node_naming_the_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("ringsync.redb");
    written_store(&file);
    let len = std::fs::metadata(&file).expect("the file").len();
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&file)
        .expect("open the store file");
    f.set_len(len / 3).expect("truncate");
    drop(f);
    let (code, said) = run_node(dir.path());
    assert_ne!(code, Some(0), "the node ran on a truncated store:\n{said}");
    assert!(
        said.contains(&file.display().to_string()),
        "the message does not name the file:\n{said}"
    );
}

#[test]
fn after_sigterm_the_next_start_does_not_repair_the_store() {
    let mut c = Cluster::start(2, Schedule::Successor, INTERVAL, "");
    for i in 0..20 {
        c.put(1, &format!("k{i}"), "v");
    }
    let st = c.stop(1);
    assert_eq!(st.code(), Some(0), "SIGTERM gave {st}");
    let store = RedbStore::open(&c.store_path(1)).expect("the store opens");
    assert!(
        !store.was_repaired(),
        "the store was left needing repair after a clean stop"
    );
    assert_eq!(
        store.get("k19").expect("read").map(|e| e.key),
        Some("k19".into())
    );
    drop(store);
    // The check can fail: after a kill -9 the same file does need repair.
    c.restart(1);
    c.put(1, "after", "restart");
    c.kill(1);
    let store = RedbStore::open(&c.store_path(1)).expect("the store opens");
    assert!(
        store.was_repaired(),
        "a killed node's store was not repaired: the check sees nothing"
    );
}
