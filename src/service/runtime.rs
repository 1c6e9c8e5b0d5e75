//! Running one node: open its store, serve through the edge `main` gives,
//! drive cycles, reload on SIGHUP, stop cleanly.

use std::future::Future;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use super::handle::NodeHandle;
use super::nonces;
use super::notify::{self, Notifier};
use super::now_ms;
use super::preflight;
use super::reload::{self, Plan};
use super::transport::{Offline, Transport};
use crate::auth::Secrets;
use crate::core::rng::Rng;
use crate::store::RedbStore;
use crate::topology::Topology;

/// The file inside a data dir that holds a node's store.
pub const STORE_FILE: &str = "ringsync.redb";

/// Called once the listener is bound: the moment the node is ready.
pub type OnBound = Box<dyn FnOnce() + Send>;

impl NodeHandle {
    /// Opens the node's store in `data_dir` and its core, with no secrets
    /// and no transport: every route open, every peer unreachable (for
    /// in-process tests; `ringsync node` uses [`NodeHandle::open_with`]).
    pub fn open(topology: Topology, id: &str, data_dir: &Path) -> Result<Arc<NodeHandle>, String> {
        NodeHandle::open_with(
            topology,
            id,
            data_dir,
            Secrets::default(),
            Arc::new(Offline),
        )
    }

    /// Opens the node's store in `data_dir` and its core, guarded by
    /// `secrets`, reaching its peers through `transport`.
    pub fn open_with(
        topology: Topology,
        id: &str,
        data_dir: &Path,
        secrets: Secrets,
        transport: Arc<dyn Transport>,
    ) -> Result<Arc<NodeHandle>, String> {
        topology.node(id).map_err(|e| e.to_string())?;
        let started_ms = now_ms();
        let had_store = data_dir.join(STORE_FILE).exists();
        let cache = topology.cluster.cache_size;
        let store = RedbStore::open_with_cache(&data_dir.join(STORE_FILE), cache)
            .map_err(|e| format!("cannot open the store in {}: {e}", data_dir.display()))?;
        let node = NodeHandle::new(topology, id, Box::new(store), secrets, transport)
            .map_err(|e| format!("cannot read the store in {}: {e}", data_dir.display()))?;
        nonces::restore(&node, data_dir, had_store, started_ms);
        Ok(node)
    }
}

/// Drives cycles until the node stops, and tells systemd how it goes.
async fn cycles(node: Arc<NodeHandle>, notifier: Arc<Notifier>) {
    let mut rng = Rng::new(now_ms() ^ (u64::from(std::process::id()) << 20));
    let interval = node.topology().cluster.interval.as_millis() as u64;
    // A little jitter keeps all nodes from pushing in the same millisecond.
    let jitter = (interval / 20).max(1);
    let mut status = notify::StatusUpdates::default();
    loop {
        if node.is_stopping() {
            return;
        }
        let now = now_ms();
        let next = node.on_core(move |core| core.next_timeout(now)).await;
        let next = next.unwrap_or(now + interval) + rng.below(jitter);
        async_std::task::sleep(Duration::from_millis(next.saturating_sub(now))).await;
        if node.is_stopping() {
            return;
        }
        let line = node
            .on_core(|core| {
                core.handle_timeout(now_ms());
                notify::status_line(core)
            })
            .await;
        if let Some(line) = line.and_then(|l| status.due(l, std::time::Instant::now())) {
            notifier.status(&line);
        }
    }
}

/// `WATCHDOG=1` while the node works: each ping needs the executor to run
/// this task and the commit thread to run a call, so a wedged node goes
/// quiet and systemd restarts it.
async fn watchdog(node: Arc<NodeHandle>, notifier: Arc<Notifier>, every: Duration) {
    loop {
        node.on_core(|_| ()).await;
        notifier.watchdog();
        async_std::task::sleep(every).await;
    }
}

/// Logs what the node's requests are guarded with (the checks that it may
/// run so are in [`preflight::start`]).
fn log_secrets(secrets: &Secrets, addr: &str) {
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
    } else if preflight::is_loopback(addr) {
        log::warn!(
            "no cluster secret: peer and sync requests are not signed; allowed only because {addr} is a loopback address"
        );
    } else {
        log::warn!(
            "no cluster secret and --insecure: anyone who can reach {addr} can send this node peer messages and start syncs{}",
            if secrets.tokens.is_none() { ", and read and write its data" } else { "" }
        );
    }
}

/// `ringsync node`: runs one node until SIGTERM or SIGINT, reaching its
/// peers through `transport` and answering them with `serve` (given the
/// node, the address to listen on and what to call once bound; it returns
/// only on failure). Without a cluster secret it runs only on loopback, or
/// with `insecure`.
pub fn run_node<Serve, Served>(
    topology_path: &Path,
    id: &str,
    data_dir: Option<&Path>,
    insecure: bool,
    transport: Arc<dyn Transport>,
    serve: Serve,
) -> Result<(), String>
where
    Serve: FnOnce(Arc<NodeHandle>, String, OnBound) -> Served,
    Served: Future<Output = Result<(), String>>,
{
    crate::service::logging::init(id);
    let preflight::Start {
        topology,
        data_dir: dir,
        secrets,
        warnings,
    } = preflight::start(topology_path, id, data_dir, insecure)
        .map_err(|problems| preflight::lines(&problems))?;
    for w in &warnings {
        log::warn!("{w}");
    }
    let addr = topology.node(id).map_err(|e| e.to_string())?.1.addr.clone();
    log_secrets(&secrets, &addr);
    let node = NodeHandle::open_with(topology, id, &dir, secrets, transport)?;
    log::info!(
        "node {id} opening: ring position {}, schedule {}, data in {}",
        node.me(),
        node.topology().cluster.schedule,
        dir.display()
    );
    let notifier = Arc::new(Notifier::from_env());
    watch_signals(
        Arc::clone(&node),
        Arc::clone(&notifier),
        topology_path,
        &dir,
    )?;
    async_std::task::block_on(async move {
        let on_bound: OnBound = {
            let node = Arc::clone(&node);
            Box::new(move || {
                // Pull what was missed now, not at the first cycle
                // boundary, up to an interval away (core `handle_start`):
                // by the time the node is ready, the pull is under way.
                node.with_node(|n| n.handle_start(now_ms()));
                node.ready.store(true, Ordering::SeqCst);
                log::info!("node {} ready on {}", node.id(), node.addr(node.me()));
                notifier.ready(&node.with_node(|n| notify::status_line(n)));
                if let Some(every) = notify::watchdog_interval_from_env() {
                    async_std::task::spawn(watchdog(
                        Arc::clone(&node),
                        Arc::clone(&notifier),
                        every,
                    ));
                }
                async_std::task::spawn(cycles(Arc::clone(&node), notifier));
            })
        };
        serve(node, addr, on_bound).await
    })
}

/// SIGTERM/SIGINT: refuse new writes, let the commit in progress finish
/// (commits run under the core's lock, so taking the lock waits for it),
/// close the store cleanly (so the next start need not repair it), save
/// the nonce book (so the next start still refuses replays), then exit 0. The store is consistent after every commit.
/// SIGHUP: re-read the topology file (see [`reload`]).
fn watch_signals(
    node: Arc<NodeHandle>,
    notifier: Arc<Notifier>,
    topology_path: &Path,
    data_dir: &Path,
) -> Result<(), String> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGTERM, SIGINT, SIGHUP])
        .map_err(|e| format!("cannot watch signals: {e}"))?;
    let path = topology_path.to_path_buf();
    let data_dir = data_dir.to_path_buf();
    std::thread::spawn(move || {
        for sig in signals.forever() {
            if sig == SIGHUP {
                // Before READY=1, a reload must not tell systemd "ready".
                let serving = node.is_ready();
                if serving {
                    notifier.reloading();
                }
                let outcome = reload_topology(&node, &path);
                if serving {
                    notifier.reloaded(&outcome);
                }
                continue;
            }
            log::info!("signal {sig}: stopping");
            notifier.stopping();
            node.stopping.store(true, Ordering::SeqCst);
            node.close_store();
            // After the store closed, nothing more is applied: every nonce
            // of a request that was is in the book saved.
            nonces::save(&node, &data_dir);
            log::info!("stopped cleanly");
            std::process::exit(0);
        }
    });
    Ok(())
}

/// Re-reads the secret and tokens files: a new key or token takes effect
/// without a restart (not a systemd credential's, which systemd reads
/// only when the unit starts). A file that cannot be read keeps the old.
fn reload_secrets(node: &NodeHandle, topology: &Topology) -> Option<String> {
    let was_signed = node.guard.signed();
    match Secrets::load(&topology.cluster, Secrets::credentials_dir().as_deref()) {
        Ok(s) if was_signed && s.keyring.is_none() => {
            log::error!("reload: the secret is gone; keeping the keyring in force (a node never drops its secret while it runs)");
            Some("secret gone, kept".into())
        }
        Ok(s) => {
            let keys = s.keyring.as_ref().map_or(0, |k| k.len());
            node.guard.replace(s);
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
fn reload_topology(node: &Arc<NodeHandle>, path: &Path) -> String {
    // Secrets are read from the topology this process started with: a
    // changed secret_file path is, like the ring, for a restart.
    let secrets_note = reload_secrets(node, &node.topology());
    let line = reload_topology_file(node, path);
    match secrets_note {
        Some(n) => format!("{line}; {n}"),
        None => line,
    }
}

fn reload_topology_file(node: &Arc<NodeHandle>, path: &Path) -> String {
    let new = match Topology::load(path) {
        Ok(t) => t,
        Err(e) => {
            log::error!("reload: the topology file is invalid, keeping the one in force: {e}");
            return format!("reload failed, topology kept: {e}");
        }
    };
    let current = node.settings();
    match reload::plan(&node.topology(), &current, &new, node.id()) {
        Plan::Refuse(why) => {
            log::error!("reload: {why}");
            format!("reload refused: {why}")
        }
        Plan::Apply {
            settings,
            mut changed,
            need_restart,
            ring,
        } => {
            node.set_settings(settings);
            if !need_restart.is_empty() {
                log::warn!(
                    "reload: these changes take effect only when this node restarts, kept as they were: {}",
                    need_restart.join(", ")
                );
            }
            if let Some(ring) = ring {
                let summary = ring.summary.clone();
                match node.change_ring(ring) {
                    Ok(()) => changed.push(summary),
                    Err(e) => {
                        log::error!("reload: the new ring was not put in force: {e}");
                        return format!("reload refused: {e}");
                    }
                }
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
