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

use std::sync::MutexGuard;

use super::now_ms;
use crate::core::entry::Entry;
use crate::core::{Event, Node, Transmit, WriteError};
use crate::store::{Store, StoreError};

/// Any store: the service runs on redb, in-process tests may use memory.
pub type AnyStore = Box<dyn Store + Send>;

/// What the commit thread needs of the node it serves (`NodeHandle`):
/// the core under its lock, a place for the status snapshot, and a way to
/// send what the core asked to send.
pub(super) trait Host: Send + Sync + 'static {
    /// The core, locked.
    fn lock(&self) -> MutexGuard<'_, Node<AnyStore>>;
    /// Keeps what status pages show of the core as it is now.
    fn keep_snapshot(&self, core: &Node<AnyStore>);
    /// Sends the core's requests and acts on its events.
    fn dispatch(self: &Arc<Self>, transmits: Vec<Transmit>, events: Vec<Event>);
}

/// Everything the core asked to send, and its events, taken out of it.
pub(super) fn drain(node: &mut Node<AnyStore>) -> (Vec<Transmit>, Vec<Event>) {
    let t = transmits(node);
    let e = std::iter::from_fn(|| node.poll_event()).collect();
    (t, e)
}

/// Everything the core asked to send, taken out of it.
fn transmits(node: &mut Node<AnyStore>) -> Vec<Transmit> {
    std::iter::from_fn(|| node.poll_transmit()).collect()
}

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
    pub(super) fn start<H: Host>(queue: Queue, node: Weak<H>) -> Result<(), String> {
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

fn run<H: Host>(Queue(queue, queued): &Queue, node: &Weak<H>) {
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
/// consecutive writes in one commit, then sends what the core asked to,
/// and only then keeps what status pages show: an entry passed on along
/// the relay tree waits for its commit, not for the snapshot (which reads
/// the store for each peer's staleness).
fn group<H: Host>(node: &Arc<H>, jobs: Vec<Job>) {
    let mut writes = Vec::new();
    // Whether the snapshot kept shows the core as it is: a commit of
    // writes keeps one before answering them; a call may change anything.
    let mut shown = false;
    let (transmits, events) = {
        let mut core = node.lock();
        for job in jobs {
            match job {
                Job::Write { key, value, done } => writes.push(((key, value), done)),
                Job::Call(f) => {
                    commit(node, &mut core, &mut writes);
                    f(&mut core);
                    shown = false;
                }
            }
        }
        shown |= commit(node, &mut core, &mut writes);
        drain(&mut core)
    };
    node.dispatch(transmits, events);
    if !shown {
        node.keep_snapshot(&node.lock());
    }
}

/// Makes `writes` durable in one commit, sends their eager relays, and
/// answers each once what status pages show has caught up with them.
/// False if there were none.
#[allow(clippy::type_complexity)]
fn commit<H: Host>(
    node: &Arc<H>,
    core: &mut Node<AnyStore>,
    writes: &mut Vec<((String, Option<Vec<u8>>), Answer<Result<Entry, WriteError>>)>,
) -> bool {
    if writes.is_empty() {
        return false;
    }
    let (batch, done): (Vec<_>, Vec<_>) = writes.drain(..).unzip();
    let results = core.write_all(now_ms(), batch);
    // The relays leave before the snapshot is kept (see `group`); sending
    // only spawns their tasks, so it may be done under the lock.
    node.dispatch(transmits(core), Vec::new());
    node.keep_snapshot(core);
    for (result, done) in results.into_iter().zip(done) {
        let _ = done.try_send(result);
    }
    true
}
