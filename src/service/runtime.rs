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
use crate::auth::{Guard, RefusalLog, Secrets};
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
    /// Who may call: the keyring and the client tokens (SIGHUP re-reads them).
    pub guard: Guard,
    /// Requests refused before they reached the core, by reason.
    pub refusals: RefusalLog,
    /// When we last warned that a peer refused our requests' credentials,
    /// by ring position: once a minute is enough to be seen.
    refused_warned: Mutex<HashMap<u32, u64>>,
}

impl Shared {
    /// Opens the node's store and core, with no secrets: every route open
    /// (for in-process tests; `ringsync node` uses [`Shared::open_with`]).
    pub fn open(topology: Topology, id: &str, data_dir: &Path) -> Result<Arc<Shared>, String> {
        Shared::open_with(topology, id, data_dir, Secrets::default())
    }

    /// Opens the node's store and core, guarded by `secrets`.
    pub fn open_with(
        topology: Topology,
        id: &str,
        data_dir: &Path,
        secrets: Secrets,
    ) -> Result<Arc<Shared>, String> {
        let (me, _) = topology.node(id).map_err(|e| e.to_string())?;
        let members = topology.nodes.iter().map(|n| n.id.clone()).collect();
        let guard = Guard::new(id, members, secrets);
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
            guard,
            refusals: RefusalLog::default(),
            refused_warned: Mutex::new(HashMap::new()),
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

    /// The id of the node at ring position `pos`.
    pub fn id_of(&self, pos: u32) -> &str {
        &self.topology.nodes[pos as usize].id
    }

    /// Warns, at most once a minute per peer, that a peer refused our
    /// request before its core saw it (a different secret, most likely).
    pub fn warn_refused_by(&self, pos: u32, what: &str) {
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
    let to = shared.id_of(t.to).to_string();
    let signer = shared.guard.signer();
    let result = crate::http::client::post_peer(
        &addr,
        &to,
        t.payload,
        shared.peer_timeout(),
        signer.as_ref(),
    )
    .await;
    if let Err(e) = &result {
        if e.refused_credentials {
            shared.warn_refused_by(t.to, &e.message);
        }
    }
    shared.with_node(|node| match result {
        Ok(reply) => node.handle_reply(now_ms(), t.id, &reply),
        Err(e) => {
            log::debug!("request to node {} failed: {}", t.to, e.message);
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

/// Whether every address `addr` (host:port) stands for is a loopback one.
/// A name that does not resolve is not.
pub fn is_loopback(addr: &str) -> bool {
    use std::net::ToSocketAddrs;
    match addr.to_socket_addrs() {
        Ok(all) => {
            let all: Vec<_> = all.collect();
            !all.is_empty() && all.iter().all(|a| a.ip().is_loopback())
        }
        Err(_) => false,
    }
}

/// Reads the secrets and decides whether the node may run with them: with
/// no cluster secret, only on loopback or with `--insecure`.
fn secrets_for(topology: &Topology, addr: &str, insecure: bool) -> Result<Secrets, String> {
    let secrets = Secrets::load(&topology.cluster, Secrets::credentials_dir().as_deref())?;
    if let (Some(k), Some(from)) = (&secrets.keyring, &secrets.keyring_from) {
        log::info!(
            "peer and sync requests are signed: {} key(s) from {}",
            k.len(),
            from.display()
        );
    }
    if let Some(from) = &secrets.tokens_from {
        log::info!("client API tokens from {}", from.display());
    }
    if secrets.keyring.is_some() {
        if secrets.tokens.is_none() {
            log::info!(
                "no client tokens: /v1/kv takes only requests signed with the cluster secret"
            );
        }
        return Ok(secrets);
    }
    if is_loopback(addr) {
        log::warn!(
            "no cluster secret: peer and sync requests are not signed; allowed only because {addr} is a loopback address"
        );
        return Ok(secrets);
    }
    if insecure {
        log::warn!(
            "no cluster secret and --insecure: anyone who can reach {addr} can send this node peer messages and start syncs{}",
            if secrets.tokens.is_none() { ", and read and write its data" } else { "" }
        );
        return Ok(secrets);
    }
    Err(format!(
        "no cluster secret, and this node listens on {addr}, which is not a loopback address: anyone who can reach it could change its data. \
         Give it a secret (`ringsync secret new --out FILE`, the same file on every node, named by secret_file in {}, or the systemd credential `secret`), \
         or pass --insecure if the network is trusted",
        topology.source
    ))
}

/// `ringsync node`: runs one node until SIGTERM or SIGINT. Without a
/// cluster secret it runs only on loopback, or with `insecure`.
pub fn run_node(
    topology_path: &Path,
    id: &str,
    data_dir: Option<&Path>,
    insecure: bool,
) -> Result<(), String> {
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
    let secrets = secrets_for(&topology, &addr, insecure)?;
    let shared = Shared::open_with(topology, id, &dir, secrets)?;
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

/// Re-reads the secret and tokens files: a new key or token takes effect
/// without a restart (not a systemd credential's, which systemd reads
/// only when the unit starts). A file that cannot be read keeps the old.
fn reload_secrets(shared: &Shared, topology: &Topology) -> Option<String> {
    let was_signed = shared.guard.signed();
    match Secrets::load(&topology.cluster, Secrets::credentials_dir().as_deref()) {
        Ok(s) if was_signed && s.keyring.is_none() => {
            log::error!("reload: the secret is gone; keeping the keyring in force (a node never drops its secret while it runs)");
            Some("secret gone, kept".into())
        }
        Ok(s) => {
            let keys = s.keyring.as_ref().map_or(0, |k| k.len());
            shared.guard.replace(s);
            log::info!("reload: secrets re-read ({keys} key(s))");
            None
        }
        Err(e) => {
            log::error!("reload: cannot read the secrets, keeping those in force: {e}");
            Some(format!("secrets kept: {e}"))
        }
    }
}

/// Re-reads the topology file and applies what may change in place; logs
/// what it did and returns it as a status line.
fn reload_topology(shared: &Shared, path: &Path) -> String {
    // Secrets are read from the topology this process started with: a
    // changed secret_file path is, like the ring, for a restart.
    let secrets_note = reload_secrets(shared, &shared.topology);
    let line = reload_topology_file(shared, path);
    match secrets_note {
        Some(n) => format!("{line}; {n}"),
        None => line,
    }
}

fn reload_topology_file(shared: &Shared, path: &Path) -> String {
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
