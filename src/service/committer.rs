//! The commit thread: every core call that may commit runs on it, off the
//! async executor and one after another, and client writes that arrive
//! while a commit is in progress are made durable together in the next one
//! (group commit).
//!
//! Each group of jobs is what queued up while the last one ran: one hold of
//! the core's lock, consecutive writes in one [`Node::write_all`], every
//! other call in its turn; then the transmits and events go out, as from
//! [`NodeHandle::with_node`]. Reads do not come here (`NodeHandle::get`,
//! `list` and `snapshot` read beside it).

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Weak};

use async_std::channel::{bounded, Sender as Answer};

use super::handle::{drain, AnyStore, NodeHandle};
use super::now_ms;
use crate::core::entry::Entry;
use crate::core::{Node, WriteError};
use crate::store::StoreError;

/// Most jobs taken into one group: bounds a group's commit and the time
/// the calls queued behind its writes wait, however many writers wait.
const MAX_GROUP: usize = 1024;

/// A core call and where its answer goes.
type Call = Box<dyn FnOnce(&mut Node<AnyStore>) + Send>;

enum Job {
    Write {
        key: String,
        value: Option<Vec<u8>>,
        done: Answer<Result<Entry, WriteError>>,
    },
    Call(Call),
}

/// The queue to a node's commit thread.
pub(super) struct Committer {
    jobs: Sender<Job>,
    /// Jobs sent and not yet taken by the thread.
    queued: Arc<AtomicUsize>,
}

/// The receiving end, until the thread is started with it.
pub(super) struct Queue(Receiver<Job>, Arc<AtomicUsize>);

impl Committer {
    /// A queue whose thread is started by [`Committer::start`].
    pub(super) fn new() -> (Committer, Queue) {
        let (jobs, rx) = channel();
        let queued = Arc::new(AtomicUsize::new(0));
        let queue = Queue(rx, Arc::clone(&queued));
        (Committer { jobs, queued }, queue)
    }

    /// Jobs waiting for the thread.
    pub(super) fn queued(&self) -> usize {
        self.queued.load(Ordering::SeqCst)
    }

    fn send(&self, job: Job) -> bool {
        self.queued.fetch_add(1, Ordering::SeqCst);
        let sent = self.jobs.send(job).is_ok();
        if !sent {
            self.queued.fetch_sub(1, Ordering::SeqCst);
        }
        sent
    }

    /// Starts the thread that serves `queue` for `node`. It ends when the
    /// node is dropped, which drops the queue's sending end.
    pub(super) fn start(queue: Queue, node: Weak<NodeHandle>) -> Result<(), String> {
        std::thread::Builder::new()
            .name("ringsync-commit".into())
            .spawn(move || run(&queue, &node))
            .map(drop)
            .map_err(|e| format!("cannot start the commit thread: {e}"))
    }

    /// A client write, answered once it is durable.
    pub(super) async fn write(
        &self,
        key: String,
        value: Option<Vec<u8>>,
    ) -> Result<Entry, WriteError> {
        let (done, answer) = bounded(1);
        if !self.send(Job::Write { key, value, done }) {
            return Err(lost());
        }
        answer.recv().await.unwrap_or_else(|_| Err(lost()))
    }

    /// `f` on the core, in its turn; `None` if it never ran to its end
    /// (it panicked).
    pub(super) async fn call<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Node<AnyStore>) -> T + Send + 'static,
    ) -> Option<T> {
        let (done, answer) = bounded(1);
        let job = Job::Call(Box::new(move |core| {
            let _ = done.try_send(f(core));
        }));
        self.send(job).then_some(())?;
        answer.recv().await.ok()
    }
}

fn lost() -> WriteError {
    WriteError::Store(StoreError(
        "the write was not made: the commit thread failed while making it (see the log)".into(),
    ))
}

fn run(Queue(queue, queued): &Queue, node: &Weak<NodeHandle>) {
    while let Ok(first) = queue.recv() {
        let mut jobs = vec![first];
        jobs.extend(queue.try_iter().take(MAX_GROUP - 1));
        queued.fetch_sub(jobs.len(), Ordering::SeqCst);
        let Some(node) = node.upgrade() else {
            return;
        };
        // A panicking call loses its group's answers (their callers get an
        // error), not the thread: the core's state is what its last
        // atomic commit left, as after any failed call.
        if catch_unwind(AssertUnwindSafe(|| group(&node, jobs))).is_err() {
            log::error!("a core call panicked on the commit thread; its group's callers got an error, and the node goes on");
        }
    }
}

/// Runs `jobs` in order under one hold of the core's lock, each run of
/// consecutive writes in one commit, then sends what the core asked to.
fn group(node: &Arc<NodeHandle>, jobs: Vec<Job>) {
    let mut writes = Vec::new();
    let (transmits, events) = {
        let mut core = node.lock();
        for job in jobs {
            match job {
                Job::Write { key, value, done } => writes.push(((key, value), done)),
                Job::Call(f) => {
                    commit(node, &mut core, &mut writes);
                    f(&mut core);
                }
            }
        }
        commit(node, &mut core, &mut writes);
        node.keep_snapshot(&core);
        drain(&mut core)
    };
    node.dispatch(transmits, events);
}

/// Makes `writes` durable in one commit and answers each, once what
/// status pages show has caught up with them.
#[allow(clippy::type_complexity)]
fn commit(
    node: &NodeHandle,
    core: &mut Node<AnyStore>,
    writes: &mut Vec<((String, Option<Vec<u8>>), Answer<Result<Entry, WriteError>>)>,
) {
    if writes.is_empty() {
        return;
    }
    let (batch, done): (Vec<_>, Vec<_>) = writes.drain(..).unzip();
    let results = core.write_all(now_ms(), batch);
    node.keep_snapshot(core);
    for (result, done) in results.into_iter().zip(done) {
        let _ = done.try_send(result);
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::time::Duration;

    use super::*;
    use crate::auth::Secrets;
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

    fn put(
        node: &Arc<NodeHandle>,
        key: &str,
    ) -> async_std::task::JoinHandle<Result<Entry, String>> {
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
}
