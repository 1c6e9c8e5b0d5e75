//! The manual whole-cluster sync: a coordinated wave of sync hops along the
//! schedule, then a check that every node's digest matches.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::handle::{ExchangeResult, NodeHandle};
use super::now_ms;
use super::report::SyncReport;
use super::transport::{Hop, HopResult, NodeDigest};
use crate::core::node::Mode;
use crate::core::schedule::{push_pull_round, sync_wave};
use crate::core::Schedule;
use crate::topology::Topology;

static SYNC_SEQ: AtomicU64 = AtomicU64::new(1);

/// Starts a sync's record: a fresh id (this node, the time, a counter),
/// kept at once as "running" so that `GET /v1/sync/{id}` finds it.
fn begin(node: &NodeHandle) -> String {
    let id = format!(
        "{}-{}-{}",
        node.id(),
        now_ms(),
        SYNC_SEQ.fetch_add(1, Ordering::Relaxed)
    );
    node.syncs_put(blank_report(node, &id));
    id
}

fn blank_report(node: &NodeHandle, id: &str) -> SyncReport {
    let schedule = node.topology().cluster.schedule;
    SyncReport {
        id: id.to_string(),
        state: "running".into(),
        schedule: schedule.name().into(),
        mode: ring_mode(schedule),
        coordinator: node.id().to_string(),
        hops: 0,
        failed_hops: 0,
        entries: 0,
        bytes: 0,
        nodes: Vec::new(),
        unreachable: Vec::new(),
        reachable_agree: false,
        converged: false,
        duration_ms: 0,
    }
}

/// The mode of a sync over the whole ring: the schedule's wave, or the
/// random schedule's push-pull rounds.
fn ring_mode(schedule: Schedule) -> String {
    match schedule {
        Schedule::Random => "push-pull".into(),
        s => s.name().into(),
    }
}

impl From<ExchangeResult> for HopResult {
    fn from(r: ExchangeResult) -> Self {
        HopResult {
            ok: r.ok,
            entries: r.entries,
            bytes: r.bytes,
        }
    }
}

/// Runs this node's side of a hop (we are `hop.from`); a peer that is not
/// in our ring fails the hop.
async fn local_hop(node: &Arc<NodeHandle>, hop: Hop) -> HopResult {
    let deadline = node.peer_timeout() * 20 + Duration::from_secs(5);
    let Some(to) = node.topology().position(&hop.to) else {
        return HopResult::default();
    };
    let r = if hop.push_pull {
        node.exchange(move |n| n.push_pull_with(to), deadline).await
    } else {
        node.exchange(move |n| n.sync_with(to), deadline).await
    };
    r.into()
}

async fn hop(node: &Arc<NodeHandle>, h: Hop) -> HopResult {
    if h.from == node.id() {
        return local_hop(node, h).await;
    }
    let Some(from) = node.topology().position(&h.from) else {
        return HopResult::default();
    };
    node.call(from, node.peer_timeout() * 25, |t, call| t.hop(call, h))
        .await
        .unwrap_or_default()
}

async fn digest_of(node: &Arc<NodeHandle>, id: &str) -> Option<NodeDigest> {
    if id == node.id() {
        return Some(node.digest());
    }
    let pos = node.topology().position(id)?;
    node.call(pos, node.peer_timeout(), |t, call| t.digest(call))
        .await
        .ok()
}

/// Names the hops between ring positions of `topology` by node id.
fn hops(topology: &Topology, pairs: &[(u32, u32)], push_pull: bool) -> Vec<Hop> {
    let id = |p: u32| topology.nodes.get(p as usize).map(|n| n.id.clone());
    pairs
        .iter()
        .filter_map(|&(f, t)| {
            Some(Hop {
                from: id(f)?,
                to: id(t)?,
                push_pull,
            })
        })
        .collect()
}

/// Runs a whole-cluster sync from this node and returns its report.
///
/// With every node reachable and the ring whole, it runs the schedule's
/// wave. Otherwise it leaves out the nodes it cannot reach, says so, and runs
/// push-pull rounds among the others until their digests agree (at most
/// `sync_max_rounds`). Either way `converged` speaks for the whole ring: a
/// node left out makes it false.
async fn run(node: Arc<NodeHandle>, id: String) -> SyncReport {
    let started = Instant::now();
    // The ring as this sync began: a reload during it changes nothing here.
    let topology = node.topology();
    let n = topology.nodes.len() as u32;
    let schedule = topology.cluster.schedule;
    let mut report = blank_report(&node, &id);
    let live = collect_digests(&node, &topology, &mut report).await;
    // Nodes on another epoch run another ring: the wave of ours would not
    // be theirs, so a rolling change in progress syncs by push-pull.
    let one_epoch = report
        .nodes
        .iter()
        .all(|d| d.epoch.is_none_or(|e| e == topology.cluster.epoch));
    let whole = live.len() as u32 == n && one_epoch && node.mode() == Mode::Ring;
    if !whole {
        report.schedule = format!(
            "{} (fallback: push-pull among reachable nodes)",
            schedule.name()
        );
        report.mode = Mode::Fallback.name().into();
    }
    if whole && schedule != Schedule::Random {
        let me = topology.position(node.id()).unwrap_or(0);
        for round in sync_wave(schedule, n, me) {
            let round = hops(&topology, &round, false);
            tally(&mut report, futures_join(&node, &round).await);
        }
        collect_digests(&node, &topology, &mut report).await;
    }
    if !report.reachable_agree && live.len() > 1 {
        if whole && schedule != Schedule::Random {
            report.mode = format!("{}, then push-pull", schedule.name());
        }
        for r in 0..node.topology().cluster.sync_max_rounds as usize {
            let round = hops(&topology, &push_pull_round(&live, r), true);
            tally(&mut report, futures_join(&node, &round).await);
            collect_digests(&node, &topology, &mut report).await;
            if report.reachable_agree {
                break;
            }
        }
    }
    report.state = "done".into();
    report.duration_ms = started.elapsed().as_millis() as u64;
    node.syncs_put(report.clone());
    report
}

fn tally(report: &mut SyncReport, results: Vec<HopResult>) {
    for r in results {
        report.hops += 1;
        report.failed_hops += u32::from(!r.ok);
        report.entries += r.entries;
        report.bytes += r.bytes;
    }
}

async fn futures_join(node: &Arc<NodeHandle>, round: &[Hop]) -> Vec<HopResult> {
    let tasks: Vec<_> = round
        .iter()
        .map(|h| {
            let (s, h) = (Arc::clone(node), h.clone());
            async_std::task::spawn(async move { hop(&s, h).await })
        })
        .collect();
    let mut out = Vec::with_capacity(tasks.len());
    for t in tasks {
        out.push(t.await);
    }
    out
}

/// Fills in every node's digest, and whether they agree and the ring
/// converged; returns the reachable ring positions.
async fn collect_digests(
    node: &Arc<NodeHandle>,
    topology: &Topology,
    report: &mut SyncReport,
) -> Vec<u32> {
    report.nodes.clear();
    report.unreachable.clear();
    let mut live = Vec::new();
    for (pos, spec) in (0u32..).zip(&topology.nodes) {
        match digest_of(node, &spec.id).await {
            Some(d) => {
                report.nodes.push(d);
                live.push(pos);
            }
            None => report.unreachable.push(spec.id.clone()),
        }
    }
    report.judge(topology.nodes.len());
    live
}

/// How a manual sync that was asked for went on.
#[derive(Debug, Clone, PartialEq)]
pub enum SyncStarted {
    /// It ran to the end: its report.
    Done(SyncReport),
    /// It runs in the background under this id.
    Running(String),
}

/// A hop that does not start at this node or names no other node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotOurHop;

impl NodeHandle {
    fn syncs_put(&self, r: SyncReport) {
        self.syncs.lock().unwrap_or_else(|p| p.into_inner()).put(r);
    }

    /// The report of sync `id`, if kept.
    pub fn sync_report(&self, id: &str) -> Option<SyncReport> {
        self.syncs.lock().unwrap_or_else(|p| p.into_inner()).get(id)
    }

    /// The report of the sync this node began last, running or done.
    pub fn last_sync_report(&self) -> Option<SyncReport> {
        self.syncs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .latest()
    }

    /// Runs a whole-cluster sync from this node: to the end if `wait`,
    /// else in the background (its report is kept under its id).
    pub async fn start_sync(self: &Arc<Self>, wait: bool) -> SyncStarted {
        let id = begin(self);
        if wait {
            return SyncStarted::Done(run(Arc::clone(self), id).await);
        }
        let (node, i) = (Arc::clone(self), id.clone());
        async_std::task::spawn(async move { run(node, i).await });
        SyncStarted::Running(id)
    }

    /// Runs this node's side of a hop another node's sync asked for.
    pub async fn serve_hop(self: &Arc<Self>, hop: Hop) -> Result<HopResult, NotOurHop> {
        let ours = self.topology().position(&hop.to).is_some();
        if hop.from != self.id() || !ours || hop.to == self.id() {
            return Err(NotOurHop);
        }
        Ok(local_hop(self, hop).await)
    }
}
