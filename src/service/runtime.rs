//! Running one node: open, listen, drive cycles, deliver, stop cleanly.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::Duration;

use async_std::channel::{bounded, Sender};

use super::notify::{self, Notifier};
use super::now_ms;
use super::reload::{self, Plan, Settings};
use super::sync::SyncReports;
use crate::core::rng::Rng;
use crate::core::{Config, Event, Node, Transmit};
use crate::store::RedbStore;
use crate::topology::Topology;

/// The file inside a data dir that holds a node's store.
pub const STORE_FILE: &str = "ringsync.redb";

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

/// State shared by the HTTP handlers, the timer and the delivery tasks.
pub struct Shared {
    node: Mutex<Node<RedbStore>>,
    /// The topology in force.
    pub topology: Topology,
    /// This node's ring position.
    pub me: u32,
    /// True once the store is open, the topology loaded and the listener bound.
    pub ready: AtomicBool,
    /// True once a stop was asked for: writes are refused from then on.
    pub stopping: AtomicBool,
    waiters: Mutex<HashMap<u64, Sender<ExchangeResult>>>,
    /// Manual sync reports, newest last.
    pub syncs: Mutex<SyncReports>,
    /// Settings a SIGHUP may change while the node runs.
    settings: RwLock<Settings>,
}

impl Shared {
    /// Opens the node's store and core.
    pub fn open(topology: Topology, id: &str, data_dir: &Path) -> Result<Arc<Shared>, String> {
        let (me, _) = topology.node(id).map_err(|e| e.to_string())?;
        let store = RedbStore::open(&data_dir.join(STORE_FILE))
            .map_err(|e| format!("cannot open the store in {}: {e}", data_dir.display()))?;
        let c = &topology.cluster;
        let mut cfg = Config::new(
            topology.fingerprint(),
            topology.nodes.len() as u32,
            me,
            c.schedule,
            c.interval.as_millis() as u64,
        );
        cfg.max_value = c.max_value_size;
        cfg.max_drift_ms = c.max_clock_drift.as_millis() as u64;
        cfg.tombstone_lifetime_ms = c.tombstone_lifetime.as_millis() as u64;
        cfg.failure_threshold = c.failure_threshold;
        cfg.catch_up_on_start = true;
        cfg.relay = c.relay;
        let node = Node::open(cfg, store, now_ms() ^ u64::from(std::process::id()))
            .map_err(|e| format!("cannot read the store in {}: {e}", data_dir.display()))?;
        Ok(Arc::new(Shared {
            node: Mutex::new(node),
            me,
            ready: AtomicBool::new(false),
            stopping: AtomicBool::new(false),
            waiters: Mutex::new(HashMap::new()),
            syncs: Mutex::new(SyncReports::default()),
            settings: RwLock::new(Settings::of(&topology)),
            topology,
        }))
    }

    /// The core, locked. Held only for plain computation and one commit.
    pub fn lock(&self) -> MutexGuard<'_, Node<RedbStore>> {
        // A panic while holding the lock leaves the core as it was before
        // the panicking call's commit (commits are atomic), so go on.
        self.node.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// This node's id.
    pub fn id(&self) -> &str {
        &self.topology.nodes[self.me as usize].id
    }

    /// The address of the node at ring position `pos`.
    pub fn addr(&self, pos: u32) -> &str {
        &self.topology.nodes[pos as usize].addr
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

    /// Runs `f` on the core, then sends what it asked to send.
    pub fn with_node<T>(self: &Arc<Self>, f: impl FnOnce(&mut Node<RedbStore>) -> T) -> T {
        let (out, transmits, events) = {
            let mut node = self.lock();
            let out = f(&mut node);
            let (t, e) = drain(&mut node);
            (out, t, e)
        };
        self.dispatch(transmits, events);
        out
    }

    /// Starts an exchange with `f` and waits until it ends (or the deadline).
    pub async fn exchange(
        self: &Arc<Self>,
        f: impl FnOnce(&mut Node<RedbStore>) -> u64,
        deadline: Duration,
    ) -> ExchangeResult {
        let (tx, rx) = bounded(1);
        let (transmits, events) = {
            let mut node = self.lock();
            let ex = f(&mut node);
            self.waiters_lock().insert(ex, tx);
            drain(&mut node)
        };
        self.dispatch(transmits, events);
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

    fn dispatch(self: &Arc<Self>, transmits: Vec<Transmit>, events: Vec<Event>) {
        for t in transmits {
            let shared = Arc::clone(self);
            async_std::task::spawn(deliver(shared, t));
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
                    let who = self
                        .topology
                        .nodes
                        .get(peer as usize)
                        .map_or("an unknown sender", |n| n.id.as_str());
                    if by_us {
                        log::warn!("refused a request from {who}: {reason}");
                    } else {
                        log::warn!("{who} refused our request: {reason}");
                    }
                }
                Event::ModeChanged { mode, reason } => {
                    log::warn!("mode is now {}: {reason}", mode.name());
                }
                Event::Wiped { peer } => {
                    log::warn!(
                        "wiped local data to resync from scratch (stale beyond the tombstone lifetime, seen from {})",
                        self.topology.nodes.get(peer as usize).map_or("?", |n| n.id.as_str())
                    );
                }
            }
        }
    }
}

fn drain(node: &mut Node<RedbStore>) -> (Vec<Transmit>, Vec<Event>) {
    let mut t = Vec::new();
    while let Some(x) = node.poll_transmit() {
        t.push(x);
    }
    let mut e = Vec::new();
    while let Some(x) = node.poll_event() {
        e.push(x);
    }
    (t, e)
}

/// Delivers one request and feeds its outcome back to the core.
async fn deliver(shared: Arc<Shared>, t: Transmit) {
    let addr = shared.addr(t.to).to_string();
    let result = crate::http::client::post_peer(&addr, t.payload, shared.peer_timeout()).await;
    shared.with_node(|node| match result {
        Ok(reply) => node.handle_reply(now_ms(), t.id, &reply),
        Err(e) => {
            log::debug!("request to node {} failed: {e}", t.to);
            node.handle_failure(t.id);
        }
    });
}

/// Drives cycles until the node stops, and tells systemd how it goes.
async fn cycles(shared: Arc<Shared>, notifier: Arc<Notifier>) {
    let mut rng = Rng::new(now_ms() ^ (u64::from(std::process::id()) << 20));
    let interval = shared.topology.cluster.interval.as_millis() as u64;
    // A little jitter keeps all nodes from pushing in the same millisecond.
    let jitter = (interval / 20).max(1);
    let mut status = notify::StatusUpdates::default();
    loop {
        if shared.stopping.load(Ordering::SeqCst) {
            return;
        }
        let now = now_ms();
        let next = shared.lock().next_timeout(now) + rng.below(jitter);
        async_std::task::sleep(Duration::from_millis(next.saturating_sub(now))).await;
        if shared.stopping.load(Ordering::SeqCst) {
            return;
        }
        let line = shared.with_node(|node| {
            node.handle_timeout(now_ms());
            notify::status_line(node)
        });
        if let Some(line) = status.due(line, std::time::Instant::now()) {
            notifier.status(&line);
        }
    }
}

/// `WATCHDOG=1` while the node works: each ping needs the executor to run
/// this task and the core's lock to be free, so a wedged node goes quiet and
/// systemd restarts it.
async fn watchdog(shared: Arc<Shared>, notifier: Arc<Notifier>, every: Duration) {
    loop {
        drop(shared.lock());
        notifier.watchdog();
        async_std::task::sleep(every).await;
    }
}

/// `ringsync node`: runs one node until SIGTERM or SIGINT.
pub fn run_node(topology_path: &Path, id: &str, data_dir: Option<&Path>) -> Result<(), String> {
    crate::service::logging::init(id);
    let topology = Topology::load(topology_path).map_err(|e| e.to_string())?;
    let (_, spec) = topology.node(id).map_err(|e| e.to_string())?;
    let dir: PathBuf = match (data_dir, &spec.data_dir) {
        (Some(d), _) => d.to_path_buf(),
        (None, Some(d)) => d.clone(),
        (None, None) => {
            return Err(format!(
                "node {id:?} has no data_dir in {} and no --data-dir was given: say where its data lives",
                topology_path.display()
            ))
        }
    };
    let addr = spec.addr.clone();
    let shared = Shared::open(topology, id, &dir)?;
    log::info!(
        "node {id} opening: ring position {}, schedule {}, data in {}",
        shared.me,
        shared.topology.cluster.schedule,
        dir.display()
    );
    let notifier = Arc::new(Notifier::from_env());
    watch_signals(Arc::clone(&shared), Arc::clone(&notifier), topology_path)?;
    async_std::task::block_on(async move {
        let on_bound = {
            let shared = Arc::clone(&shared);
            move || {
                shared.ready.store(true, Ordering::SeqCst);
                log::info!("node {} ready on {}", shared.id(), shared.addr(shared.me));
                notifier.ready(&shared.with_node(|n| notify::status_line(n)));
                if let Some(every) = notify::watchdog_interval_from_env() {
                    async_std::task::spawn(watchdog(
                        Arc::clone(&shared),
                        Arc::clone(&notifier),
                        every,
                    ));
                }
                async_std::task::spawn(cycles(Arc::clone(&shared), notifier));
            }
        };
        crate::http::server::serve(shared, &addr, on_bound).await
    })
}

/// SIGTERM/SIGINT: refuse new writes, let the commit in progress finish
/// (commits run under the core's lock, so taking the lock waits for it),
/// then exit 0. The store is consistent after every commit.
/// SIGHUP: re-read the topology file (see [`reload`]).
fn watch_signals(
    shared: Arc<Shared>,
    notifier: Arc<Notifier>,
    topology_path: &Path,
) -> Result<(), String> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGTERM, SIGINT, SIGHUP])
        .map_err(|e| format!("cannot watch signals: {e}"))?;
    let path = topology_path.to_path_buf();
    std::thread::spawn(move || {
        for sig in signals.forever() {
            if sig == SIGHUP {
                // Before READY=1, a reload must not tell systemd "ready".
                let serving = shared.ready.load(Ordering::SeqCst);
                if serving {
                    notifier.reloading();
                }
                let outcome = reload_topology(&shared, &path);
                if serving {
                    notifier.reloaded(&outcome);
                }
                continue;
            }
            log::info!("signal {sig}: stopping");
            notifier.stopping();
            shared.stopping.store(true, Ordering::SeqCst);
            let _held = shared.lock();
            log::info!("stopped cleanly");
            std::process::exit(0);
        }
    });
    Ok(())
}

/// Re-reads the topology file and applies what may change in place; logs
/// what it did and returns it as a status line.
fn reload_topology(shared: &Shared, path: &Path) -> String {
    let new = match Topology::load(path) {
        Ok(t) => t,
        Err(e) => {
            log::error!("reload: the topology file is invalid, keeping the one in force: {e}");
            return format!("reload failed, topology kept: {e}");
        }
    };
    let current = shared.settings();
    match reload::plan(&shared.topology, &current, &new, shared.id()) {
        Plan::Refuse(why) => {
            log::error!("reload: {why}");
            "reload refused: the ring changed; restart every node".to_string()
        }
        Plan::Apply {
            settings,
            changed,
            need_restart,
        } => {
            *shared.settings.write().unwrap_or_else(|p| p.into_inner()) = settings;
            if !need_restart.is_empty() {
                log::warn!(
                    "reload: these changes take effect only when this node restarts, kept as they were: {}",
                    need_restart.join(", ")
                );
            }
            if changed.is_empty() {
                log::info!("reload: {} read, nothing to change", path.display());
                "reloaded, nothing changed".to_string()
            } else {
                log::info!("reload: applied {}", changed.join(", "));
                format!("reloaded: {}", changed.join(", "))
            }
        }
    }
}
