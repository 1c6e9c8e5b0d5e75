//! The commit thread: every core call that may commit runs on it, off the
//! async executor and one after another, and client writes that arrive
//! while a commit is in progress are made durable together in the next one
//! (group commit).
//!
//! Each group of jobs is what queued up while the last one ran: one hold of
//! the core's lock, every call in its turn with its commits deferred and
//! its transmits sent at once, then all the writes in one
//! [`Node::write_all`]; one sync makes the group durable, and only then
//! are the calls answered and the events acted on (see `group`). Reads do
//! not come here (`NodeHandle::get`, `list` and `snapshot` read beside it).

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

/// A core call; what it returns sends its answer, once the group's
/// commits are durable.
type Call = Box<dyn FnOnce(&mut Node<AnyStore>) -> Reply + Send>;

/// Sends a call's answer to its caller.
type Reply = Box<dyn FnOnce() + Send>;

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

    /// `f` on the core, in its turn, answered once what it committed is
    /// durable; `None` if it never ran to its end (it panicked) or the
    /// store could not make its commits durable.
    pub(super) async fn call<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Node<AnyStore>) -> T + Send + 'static,
    ) -> Option<T> {
        let (done, answer) = bounded(1);
        let job = Job::Call(Box::new(move |core| {
            let out = f(core);
            Box::new(move || {
                let _ = done.try_send(out);
            }) as Reply
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
            // The group's deferred commits are made durable, and later
            // commits durable again (a call may have panicked deferred).
            if let Err(e) = node.lock().store_mut().sync() {
                log::error!(
                    "after that panic, the store could not make the group's merges durable: {e}"
                );
            }
        }
    }
}

/// Runs `jobs` under one hold of the core's lock: the calls in order,
/// each followed at once by what it asked to send, then every write in one
/// commit; then makes the group durable with one sync (the writes' commit
/// is it, when there are writes), only then answers the calls, and keeps
/// what status pages show. Writes and calls queued together are
/// concurrent: no caller has had an answer that orders them.
///
/// A call's commits (a peer's push merged, a cycle's) are deferred: an
/// entry passed on along the relay tree leaves before this node's disk
/// has it, and the peer that sent it is answered after. A crash between
/// the two loses nothing: the sender, unanswered, still holds the entry
/// and sends it again, and a restarted node pulls what it lacks. Client
/// writes are durable before their relays leave (`commit`), so a write
/// whose commit failed is never passed on.
fn group<H: Host>(node: &Arc<H>, jobs: Vec<Job>) {
    let mut writes = Vec::new();
    let mut replies: Vec<Reply> = Vec::new();
    // `shown`: whether the snapshot kept shows the core as it is: a commit
    // of writes, made after every call, keeps one before answering them.
    let (shown, events, synced) = {
        let mut core = node.lock();
        for job in jobs {
            match job {
                Job::Write { key, value, done } => writes.push(((key, value), done)),
                Job::Call(f) => {
                    core.store_mut().set_deferred(true);
                    replies.push(f(&mut core));
                    core.store_mut().set_deferred(false);
                    // Its relays leave now, not after the rest of the turn.
                    // Sending only spawns the deliveries: it may be done
                    // under the lock.
                    node.dispatch(transmits(&mut core), Vec::new());
                }
            }
        }
        // The writes last, all in one commit, whose sync makes the calls'
        // commits durable too: a turn costs one sync, however its writes
        // and calls interleaved.
        let shown = commit(node, &mut core, &mut writes);
        let (transmits, events) = drain(&mut core);
        node.dispatch(transmits, Vec::new());
        (shown, events, core.store_mut().sync())
    };
    match synced {
        Ok(()) => replies.into_iter().for_each(|reply| reply()),
        // Unanswered, the callers see the call fail: a peer sends again.
        Err(e) => log::error!("the store could not make this node's last merges durable, so their senders are told they failed and will send them again: {e}"),
    }
    node.dispatch(Vec::new(), events);
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
    // Durable before they are passed on or answered (see `group`).
    core.store_mut().set_deferred(false);
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
