//! The handle through which everything else drives one node's core: typed
//! operations that lock the core, call it, and send what it asked to send
//! through the node's [`Transport`].

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard, TryLockError};
use std::time::Duration;

use async_std::channel::{bounded, Sender};

use super::committer::{drain, Committer, Host};
use super::now_ms;
use super::reload::{RingChange, Settings};
use super::report::SyncReports;
use super::snapshot::Snapshot;
use super::transport::{max_peer_body, Call, NodeDigest, PeerError, Reply, ReplyKeys, Transport};
use super::watch::{WaitFailed, Watchers};
use crate::auth::{Guard, RefusalLog, Secrets};
use crate::core::entry::{Entry, Origin, Version};
use crate::core::node::Mode;
use crate::core::{Config, Event, Node, Transmit, WriteError};
use crate::store::{Closed, Reads, Store, StoreError};
use crate::topology::Topology;

pub use super::committer::AnyStore;

/// What an exchange with a peer moved, once it ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExchangeResult {
    /// False if any request failed, timed out or was refused.
    pub ok: bool,
    /// Entries moved, both ways.
    pub entries: u64,
    /// Bytes of its messages, both ways.
    pub bytes: u64,
}

/// Why a client's write was not made.
#[derive(Debug)]
pub enum WriteFailed {
    /// The node is stopping and takes no more writes.
    ShuttingDown,
    /// The core refused the entry, or the store failed.
    Core(WriteError),
}

/// The core's answer to a peer message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerReply {
    /// The encoded reply, a refusal included.
    pub bytes: Vec<u8>,
    /// The refusal's reason, if the protocol refused the message.
    pub refused: Option<&'static str>,
}

/// One page of a key listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    /// Live entries (no tombstones), in key order.
    pub entries: Vec<Entry>,
    /// The key to list after for the next page, when the page is full.
    pub next_after: Option<String>,
}

/// One node: its core, the ring it stands on, and how it reaches peers.
/// Shared by the listener's handlers, the timer and the delivery tasks.
pub struct NodeHandle {
    node: Mutex<Node<AnyStore>>,
    /// The commit thread's queue: writes, peer messages, replies and
    /// cycles run there, off the executor.
    pub(super) committer: Committer,
    /// Reads of the store beside its commits, if it has them (redb);
    /// without, reads take the core's lock.
    reads: RwLock<Option<Box<dyn Reads>>>,
    /// The core's state after the last call that held its lock, shown
    /// when a commit holds it.
    shown: Mutex<Snapshot>,
    transport: Arc<dyn Transport>,
    /// The topology in force: the ring of its epoch, with the cluster
    /// settings this process started with (see [`NodeHandle::topology`]).
    topology: RwLock<Arc<Topology>>,
    /// This node's position in that ring.
    me: AtomicU32,
    /// This node's id: the same in every epoch.
    id: String,
    /// True once the store is open, the topology loaded and the listener bound.
    pub ready: AtomicBool,
    /// True once a stop was asked for: writes are refused from then on.
    pub stopping: AtomicBool,
    waiters: Mutex<HashMap<u64, Sender<ExchangeResult>>>,
    /// Client reads waiting for a key to change (`watch.rs`).
    pub(super) watchers: Watchers,
    /// Manual sync reports, newest last.
    pub(super) syncs: Mutex<SyncReports>,
    /// Settings a SIGHUP may change while the node runs.
    settings: RwLock<Settings>,
    /// Who may call and how we sign: the keyring and the client tokens
    /// (SIGHUP re-reads them).
    pub guard: Guard,
    /// When we last warned that a peer refused our requests' credentials,
    /// by ring position: once a minute is enough to be seen.
    refused_warned: Mutex<HashMap<u32, u64>>,
    /// The protocol's refusals, ours and our peers', logged at most once a
    /// second per reason: a flood of bad messages must not flood the log
    /// (the core's `Stats` count every one of them).
    refused_by_us: RefusalLog,
    refused_by_peers: RefusalLog,
    /// Peers' replies we refused before using them (a bad reply signature),
    /// counted and logged at most once a second per reason.
    refused_replies: RefusalLog,
    /// Each peer's last failed request: when (ms) and why, by peer id, for
    /// `/v1/status` (the log has it only once a minute, or at debug).
    last_failures: Mutex<HashMap<String, (u64, String)>>,
}

impl NodeHandle {
    /// Opens node `id` of `topology` over `store`, guarded by `secrets`,
    /// reaching its peers through `transport`. Fails if `id` is not in the
    /// topology or the store cannot be read.
    pub fn new(
        topology: Topology,
        id: &str,
        store: AnyStore,
        secrets: Secrets,
        transport: Arc<dyn Transport>,
    ) -> Result<Arc<NodeHandle>, String> {
        let (me, _) = topology.node(id).map_err(|e| e.to_string())?;
        let members = topology.nodes.iter().map(|n| n.id.clone()).collect();
        let guard = Guard::new(id, members, secrets);
        let node = Node::open(
            config_of(&topology, me),
            store,
            now_ms() ^ u64::from(std::process::id()),
        )
        .map_err(|e| e.to_string())?;
        let (committer, queue) = Committer::new();
        let handle = Arc::new(NodeHandle {
            reads: RwLock::new(node.store().reads()),
            shown: Mutex::new(Snapshot::of(&node)),
            node: Mutex::new(node),
            committer,
            transport,
            me: AtomicU32::new(me),
            id: id.to_string(),
            ready: AtomicBool::new(false),
            stopping: AtomicBool::new(false),
            waiters: Mutex::new(HashMap::new()),
            watchers: Watchers::default(),
            syncs: Mutex::new(SyncReports::default()),
            settings: RwLock::new(Settings::of(&topology)),
            guard,
            refused_warned: Mutex::new(HashMap::new()),
            refused_by_us: RefusalLog::default(),
            refused_by_peers: RefusalLog::default(),
            refused_replies: RefusalLog::default(),
            last_failures: Mutex::new(HashMap::new()),
            topology: RwLock::new(Arc::new(topology)),
        });
        Committer::start(queue, Arc::downgrade(&handle))?;
        Ok(handle)
    }

    /// The core, locked. Held only for plain computation and one commit.
    /// Closes the store for good, under the core's lock (so after the
    /// commit in progress, if any): redb writes its clean-shutdown state
    /// only when its database is dropped, and a process that exits without
    /// it makes the next start repair the whole file. From here on every
    /// store call fails with "the store is closed".
    pub fn close_store(&self) {
        // The reads hold the file open too; reads in progress end first.
        *self.reads.write().unwrap_or_else(|p| p.into_inner()) = None;
        let mut node = self.lock();
        drop(std::mem::replace(node.store_mut(), Box::new(Closed)));
    }

    fn reads(&self) -> RwLockReadGuard<'_, Option<Box<dyn Reads>>> {
        self.reads.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Keeps what status pages show of `core`, for when a commit holds it.
    pub(super) fn keep_snapshot(&self, core: &Node<AnyStore>) {
        *self.shown.lock().unwrap_or_else(|p| p.into_inner()) = Snapshot::of(core);
    }

    pub(super) fn lock(&self) -> MutexGuard<'_, Node<AnyStore>> {
        // A panic while holding the lock leaves the core as it was before
        // the panicking call's commit (commits are atomic), so go on.
        self.node.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// This node's id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The topology in force: the ring of the epoch this node runs, and the
    /// cluster settings it started with. A reload to a new epoch replaces
    /// it (see [`NodeHandle::change_ring`]), so take it once per use.
    pub fn topology(&self) -> Arc<Topology> {
        Arc::clone(&self.topology.read().unwrap_or_else(|p| p.into_inner()))
    }

    /// This node's ring position in the topology in force.
    pub fn me(&self) -> u32 {
        self.me.load(Ordering::SeqCst)
    }

    /// The address of the node at ring position `pos`, if there is one.
    pub fn addr(&self, pos: u32) -> String {
        self.topology()
            .nodes
            .get(pos as usize)
            .map_or_else(String::new, |n| n.addr.clone())
    }

    /// The id of the node at ring position `pos`, or "?".
    pub fn id_of(&self, pos: u32) -> String {
        self.topology()
            .nodes
            .get(pos as usize)
            .map_or_else(|| "?".to_string(), |n| n.id.clone())
    }

    /// True once the node serves.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::SeqCst)
    }

    /// True once a stop was asked for.
    pub fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }

    /// How long to wait for a peer's reply.
    pub fn peer_timeout(&self) -> Duration {
        self.settings().peer_timeout
    }

    /// The reloadable settings in force.
    pub fn settings(&self) -> Settings {
        self.settings
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Puts a new epoch's ring in force (a reload): the core's ring, the
    /// addresses requests go to, and the members whose signatures are
    /// taken. Requests in flight to the old ring end as failed.
    pub(super) fn change_ring(self: &Arc<Self>, change: Box<RingChange>) -> Result<(), String> {
        let RingChange { topology, me, .. } = *change;
        let members = topology.nodes.iter().map(|n| n.id.clone()).collect();
        self.with_node(|n| {
            n.add_names(names(&topology));
            n.change_ring(
                topology.fingerprint(),
                topology.cluster.epoch,
                topology.origins(),
                me,
            )
        })
        .map_err(|e| e.to_string())?;
        self.guard.set_members(members);
        self.me.store(me, Ordering::SeqCst);
        *self.topology.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(topology);
        Ok(())
    }

    /// Puts reloaded settings in force.
    pub(super) fn set_settings(&self, settings: Settings) {
        *self.settings.write().unwrap_or_else(|p| p.into_inner()) = settings;
    }

    /// Runs `f` on the core here and now, then sends what it asked to
    /// send. For tests and the start: the service's loops use
    /// [`NodeHandle::on_core`], the edge the typed methods.
    pub fn with_node<T>(self: &Arc<Self>, f: impl FnOnce(&mut Node<AnyStore>) -> T) -> T {
        let (out, transmits, events) = {
            let mut node = self.lock();
            let out = f(&mut node);
            self.keep_snapshot(&node);
            let (t, e) = drain(&mut node);
            (out, t, e)
        };
        self.dispatch(transmits, events);
        out
    }

    /// Runs `f` on the core on the commit thread, in its turn, sends what
    /// it asked to send, and answers once what it committed is durable;
    /// `None` if `f` panicked or the store could not make that durable.
    pub async fn on_core<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Node<AnyStore>) -> T + Send + 'static,
    ) -> Option<T> {
        self.committer.call(f).await
    }

    /// The stored value of `key`: `None` if absent or deleted. Read beside
    /// any commit in progress.
    pub fn get(&self, key: &str) -> Result<Option<Entry>, StoreError> {
        Ok(self.stored(key)?.filter(|e| !e.is_tombstone()))
    }

    /// What [`NodeHandle::get`] answers, once `key` holds a value (with
    /// `newer_than`, once its version, a delete's included, is newer than
    /// that), or once `wait` (at most [`super::watch::MAX_WAIT`]) has
    /// passed, or the node stops.
    pub async fn get_when(
        &self,
        key: &str,
        newer_than: Option<Version>,
        wait: Duration,
    ) -> Result<Option<Entry>, WaitFailed> {
        let look = || self.stored(key);
        let stopping = || self.is_stopping();
        self.watchers
            .wait_for(look, newer_than, wait, stopping)
            .await
    }

    /// What the store holds for `key`, a tombstone included.
    pub(super) fn stored(&self, key: &str) -> Result<Option<Entry>, StoreError> {
        match &*self.reads() {
            Some(r) => r.get(key),
            None => self.lock().get(key),
        }
    }

    /// Up to `limit` live entries whose key starts with `prefix`, after
    /// `after`, in key order.
    pub fn list(
        &self,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Page, StoreError> {
        // Tombstones are skipped, so read on until the page is full.
        let mut entries = Vec::new();
        let mut after = after.map(str::to_string);
        loop {
            let chunk = match &*self.reads() {
                Some(r) => r.range(prefix, after.as_deref(), limit)?,
                None => self.lock().store_range(prefix, after.as_deref(), limit)?,
            };
            let short = chunk.len() < limit;
            after = chunk.last().map(|e| e.key.clone());
            entries.extend(chunk.into_iter().filter(|e| !e.is_tombstone()));
            if short || entries.len() >= limit {
                break;
            }
        }
        entries.truncate(limit);
        let next_after = if entries.len() == limit {
            entries.last().map(|e| e.key.clone())
        } else {
            None
        };
        Ok(Page {
            entries,
            next_after,
        })
    }

    /// Writes `value` under `key` (`None` deletes it) and returns the
    /// entry stored, once it is durable. The commit runs on the commit
    /// thread, shared with the writes that queued beside it.
    pub async fn write(
        self: &Arc<Self>,
        key: String,
        value: Option<Vec<u8>>,
    ) -> Result<Entry, WriteFailed> {
        if self.is_stopping() {
            return Err(WriteFailed::ShuttingDown);
        }
        self.committer
            .write(key, value)
            .await
            .map_err(WriteFailed::Core)
    }

    /// Hands a peer's encoded message to the core and returns its reply.
    pub async fn peer_message(self: &Arc<Self>, body: Vec<u8>, signer: Option<&str>) -> PeerReply {
        // A signer the ring does not hold was refused at the gate already.
        let signer = signer.map(crate::topology::origin_of);
        let answer = self.on_core(move |n| {
            // The core counts its refusals by reason: the one that moved
            // is this request's.
            let before = n.stats().refused.clone();
            let bytes = n.handle_request_signed(now_ms(), signer, &body);
            let refused = n
                .stats()
                .refused
                .iter()
                .find(|(k, v)| before.get(*k) != Some(*v))
                .map(|(k, _)| *k);
            PeerReply { bytes, refused }
        });
        answer.await.unwrap_or(PeerReply {
            bytes: Vec::new(),
            refused: Some("internal_error"),
        })
    }

    /// This node's digest (as of the last commit, if one is in progress).
    pub fn digest(&self) -> NodeDigest {
        let snap = self.snapshot();
        NodeDigest {
            id: self.id().to_string(),
            root: format!("{:016x}", snap.root),
            keys: snap.keys,
            tombstones: snap.tombstones,
            epoch: Some(self.topology().cluster.epoch),
        }
    }

    /// Ring or fallback, as the core is now.
    pub fn mode(&self) -> Mode {
        self.snapshot().mode
    }

    /// The core's counters and state, for status pages and metrics: as
    /// the core is now, or, while a commit holds it, as the last call
    /// that held it left it.
    pub fn snapshot(&self) -> Snapshot {
        let mut snap = match self.node.try_lock() {
            Ok(core) => Snapshot::of(&core),
            Err(TryLockError::Poisoned(p)) => Snapshot::of(&p.into_inner()),
            Err(TryLockError::WouldBlock) => {
                self.shown.lock().unwrap_or_else(|p| p.into_inner()).clone()
            }
        };
        snap.replies_refused = self.refused_replies.counts();
        snap.commit_queue = self.committer.queued() as u64;
        snap.waiting_reads = self.watchers.waiting() as u64;
        snap
    }

    /// A call to the node at ring position `pos`, signed if we sign.
    pub(super) async fn call<T>(
        &self,
        pos: u32,
        timeout: Duration,
        send: impl for<'a> FnOnce(&'a dyn Transport, Call<'a>) -> Reply<'a, T>,
    ) -> Result<T, PeerError> {
        let signer = self.guard.signer();
        let (addr, to) = (self.addr(pos), self.id_of(pos));
        // A reply is checked against the keyring in force when it comes: a
        // node given another secret while its request was out took an
        // answer signed with the old one.
        let now = || self.guard.signer();
        let call = Call {
            addr: &addr,
            to: &to,
            timeout,
            signer: signer.as_ref(),
            max_reply: max_peer_body(self.topology().cluster.max_value_size),
            reply_keys: ReplyKeys(Some(&now)),
        };
        let result = send(self.transport.as_ref(), call).await;
        if let Err(e) = &result {
            self.failed(&to, &e.message);
            if e.refused_credentials {
                self.warn_refused_by(pos, &e.message);
            }
            if let Some(reason) = e.refused_reply {
                let what = format!("a reply of node {}: {}", self.id_of(pos), e.message);
                self.refused_replies.note(reason, &what, now_ms());
            }
        }
        result
    }

    /// Keeps why the last request to peer `id` failed.
    fn failed(&self, id: &str, why: &str) {
        let mut all = self.last_failures.lock().unwrap_or_else(|p| p.into_inner());
        all.insert(id.to_string(), (now_ms(), why.to_string()));
    }

    /// When (ms since the epoch) and why the last request to peer `id`
    /// failed, if one has.
    pub fn last_failure(&self, id: &str) -> Option<(u64, String)> {
        let all = self.last_failures.lock().unwrap_or_else(|p| p.into_inner());
        all.get(id).cloned()
    }

    /// Warns, at most once a minute per peer, that a peer refused our
    /// request before its core saw it (a different secret, most likely).
    fn warn_refused_by(&self, pos: u32, what: &str) {
        let now = now_ms();
        let mut w = self
            .refused_warned
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let last = w.entry(pos).or_insert(0);
        if now.saturating_sub(*last) >= 60_000 {
            *last = now;
            log::warn!(
                "node {} refused our request: {what} (check that every node has the same secret; repeated refusals are logged once a minute)",
                self.id_of(pos)
            );
        }
    }

    /// Starts an exchange with `f` and waits until it ends (or the deadline).
    pub(super) async fn exchange(
        self: &Arc<Self>,
        f: impl FnOnce(&mut Node<AnyStore>) -> u64 + Send + 'static,
        deadline: Duration,
    ) -> ExchangeResult {
        let (tx, rx) = bounded(1);
        let this = Arc::clone(self);
        // Waiting on before its transmits go out, so its end is not missed.
        self.on_core(move |node| {
            let ex = f(node);
            this.waiters_lock().insert(ex, tx);
        })
        .await;
        let failed = ExchangeResult {
            ok: false,
            entries: 0,
            bytes: 0,
        };
        async_std::future::timeout(deadline, rx.recv())
            .await
            .ok()
            .and_then(Result::ok)
            .unwrap_or(failed)
    }

    fn waiters_lock(&self) -> MutexGuard<'_, HashMap<u64, Sender<ExchangeResult>>> {
        self.waiters.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) fn dispatch(self: &Arc<Self>, transmits: Vec<Transmit>, events: Vec<Event>) {
        // Every call that dispatches may have changed the store.
        self.watchers.wake_all();
        for t in transmits {
            let this = Arc::clone(self);
            async_std::task::spawn(async move { this.deliver(t).await });
        }
        for e in events {
            match e {
                Event::ExchangeDone {
                    exchange,
                    ok,
                    entries,
                    bytes,
                    ..
                } => {
                    if let Some(tx) = self.waiters_lock().remove(&exchange) {
                        let _ = tx.try_send(ExchangeResult { ok, entries, bytes });
                    }
                }
                Event::Refused {
                    peer,
                    reason,
                    by_us,
                } => {
                    let topology = self.topology();
                    let who = topology
                        .nodes
                        .get(peer as usize)
                        .map_or("an unknown sender", |n| n.id.as_str());
                    if by_us {
                        let what = format!("a request from {who}: {reason}");
                        self.refused_by_us.note(reason.name(), &what, now_ms());
                    } else {
                        self.failed(who, &format!("it refused our request: {reason}"));
                        let what = format!("{who} refused our request: {reason}");
                        self.refused_by_peers.note(reason.name(), &what, now_ms());
                    }
                }
                // Back to the ring is the good news: not a warning.
                Event::ModeChanged {
                    mode: Mode::Ring,
                    reason,
                } => log::info!("mode is now ring: {reason}"),
                Event::ModeChanged { mode, reason } => {
                    log::warn!("mode is now {}: {reason}", mode.name());
                }
                Event::Wiped { peer } => {
                    log::warn!(
                        "wiped local data to resync from scratch (stale beyond the tombstone lifetime, seen from {})",
                        self.id_of(peer)
                    );
                }
            }
        }
    }

    /// Delivers one request and feeds its outcome back to the core. The
    /// peer is found by its origin in the ring in force: a request the core
    /// made for a ring a reload has since replaced fails unsent.
    async fn deliver(self: Arc<Self>, t: Transmit) {
        let timeout = self.peer_timeout();
        let result = match self.topology().position_of_origin(t.peer) {
            Some(pos) => {
                self.call(pos, timeout, |tr, call| tr.message(call, t.payload))
                    .await
            }
            None => Err(PeerError {
                message: "the peer left the ring in force".into(),
                refused_credentials: false,
                refused_reply: None,
            }),
        };
        let to = self.id_of(t.to);
        self.on_core(move |node| match result {
            Ok(reply) => node.handle_reply(now_ms(), t.id, &reply),
            Err(e) => {
                log::debug!("request to node {to} failed: {}", e.message);
                node.handle_failure(t.id);
            }
        })
        .await;
    }
}

/// The core's settings for node `me` of `topology`.
/// Each member's origin with its id: what the core calls it in logs.
fn names(topology: &Topology) -> impl Iterator<Item = (Origin, String)> + '_ {
    topology.nodes.iter().map(|n| (n.origin(), n.id.clone()))
}

fn config_of(topology: &Topology, me: u32) -> Config {
    let c = &topology.cluster;
    let mut cfg = Config::new(
        topology.fingerprint(),
        topology.nodes.len() as u32,
        me,
        c.schedule,
        c.interval.as_millis() as u64,
    );
    cfg.name = topology.name_fingerprint();
    cfg.set_ring(topology.fingerprint(), c.epoch, topology.origins(), me);
    cfg.names = names(topology).collect();
    cfg.max_value = c.max_value_size;
    cfg.max_drift_ms = c.max_clock_drift.as_millis() as u64;
    cfg.tombstone_lifetime_ms = c.tombstone_lifetime.as_millis() as u64;
    cfg.failure_threshold = c.failure_threshold;
    cfg.catch_up_on_start = true;
    cfg.relay = c.relay;
    cfg
}

impl Host for NodeHandle {
    fn lock(&self) -> MutexGuard<'_, Node<AnyStore>> {
        NodeHandle::lock(self)
    }

    fn keep_snapshot(&self, core: &Node<AnyStore>) {
        NodeHandle::keep_snapshot(self, core)
    }

    fn dispatch(self: &Arc<Self>, transmits: Vec<Transmit>, events: Vec<Event>) {
        NodeHandle::dispatch(self, transmits, events)
    }
}

#[cfg(test)]
#[path = "handle_tests.rs"]
mod tests;
