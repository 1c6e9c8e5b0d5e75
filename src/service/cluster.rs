//! The cluster view behind `GET /v1/cluster`: every ring member's status,
//! asked for at once through the [`Transport`](super::Transport), judged
//! together (who is failed, whose roots agree, how far clocks stand apart,
//! where this cycle's pushes go), and cached, so that any number of
//! viewers cost at most one fan-out a second.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::handle::NodeHandle;
use super::now_ms;
use super::report::SyncReport;
pub use super::transport::{MemberPeer, MemberStatus};
use crate::core::schedule::ring_target;
use crate::core::Schedule;

/// Fan-outs start at least this long after the last one ended, however
/// many viewers ask meanwhile: they all get the last view.
pub const REFRESH: Duration = Duration::from_secs(1);

/// One ring member in the cluster view.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct NodeView {
    /// Its id.
    pub id: String,
    /// Its address.
    pub addr: String,
    /// Its ring position.
    pub position: u32,
    /// One word: `failed` or `suspect` when some reachable member's view
    /// holds it so (worst first), else `unreachable` when this node could
    /// not read its status, else its own mode, `ring` or `fallback`.
    pub state: String,
    /// This node read its status.
    pub reachable: bool,
    /// Why not, when not.
    pub error: Option<String>,
    /// Reachable members whose view holds it suspect or failed.
    pub held_by: Vec<String>,
    /// Its mode, as it says.
    pub mode: Option<String>,
    /// Why.
    pub mode_reason: Option<String>,
    /// The cycle in which its mode last changed.
    pub mode_since_cycle: Option<u64>,
    /// The last cycle it ran.
    pub cycle: Option<u64>,
    /// How long ago, by its clock, that cycle began.
    pub cycle_age_ms: Option<u64>,
    /// Values stored.
    pub keys: Option<u64>,
    /// Tombstones stored.
    pub tombstones: Option<u64>,
    /// Root of its digest tree.
    pub digest_root: Option<String>,
    /// Its root is the one most reachable members hold.
    pub root_agrees: bool,
    /// Entries waiting to be passed on.
    pub relay_queue: Option<u64>,
    /// The largest staleness of its peers, ms: the age of the oldest entry
    /// it holds that a peer's last digest shows it lacks.
    pub staleness_ms: Option<u64>,
    /// How far its clock reads ahead of this node's (negative: behind),
    /// within half the round trip.
    pub clock_skew_ms: Option<i64>,
    /// The round trip of the status read, ms.
    pub round_trip_ms: Option<u64>,
    /// How it picks this cycle's peer: `successor`, `doubling` or
    /// `random` (fallback, or the random schedule); null when unreachable.
    pub pushes: Option<String>,
    /// The member this cycle's ring push goes to.
    pub pushes_to: Option<String>,
    /// The membership epoch from its status, null when it gives none.
    pub epoch: Option<serde_json::Value>,
}

/// `GET /v1/cluster`: the whole ring as one node sees it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ClusterView {
    /// The node that asked.
    pub node: String,
    /// Cluster name.
    pub cluster: String,
    /// Configured schedule.
    pub schedule: String,
    /// Cycle length, ms.
    pub interval_ms: u64,
    /// When the fan-out began, by this node's clock.
    pub taken_ms: u64,
    /// How long it took, ms (at most about the peer timeout).
    pub took_ms: u64,
    /// How old the view was when served, ms.
    pub age_ms: u64,
    /// Members whose status was read.
    pub reachable: u32,
    /// Every reachable member has the same digest root.
    pub roots_agree: bool,
    /// The members, in ring order.
    pub nodes: Vec<NodeView>,
    /// The sync this node began last, running or done.
    pub last_sync: Option<SyncReport>,
    /// `POST /v1/sync` needs no signature here (no cluster secret), so a
    /// browser may run it.
    pub sync_from_browser: bool,
}

/// A member's answer, or why there was none, with when it was asked and
/// answered by this node's clock.
#[derive(Debug, Clone)]
pub struct Probe {
    /// Its ring position.
    pub pos: u32,
    /// Its status, or why it could not be read.
    pub result: Result<MemberStatus, String>,
    /// When it was asked.
    pub sent_ms: u64,
    /// When it answered, or gave up.
    pub received_ms: u64,
}

/// What the view is judged against: the ring and its schedule.
#[derive(Debug, Clone, Copy)]
pub struct Ring<'a> {
    /// (id, address) of every member, in ring order.
    pub members: &'a [(String, String)],
    /// The configured schedule.
    pub schedule: Schedule,
    /// Cycle length, ms.
    pub interval_ms: u64,
}

/// Membership states, best first, as statuses name them.
const STATES: [&str; 3] = ["alive", "suspect", "failed"];

fn rank(state: &str) -> usize {
    STATES.iter().position(|s| *s == state).unwrap_or(0)
}

/// Judges the probes of every member (one each, in any order) together.
pub fn judge(ring: Ring<'_>, mut probes: Vec<Probe>) -> Vec<NodeView> {
    probes.sort_by_key(|p| p.pos);
    let n = ring.members.len() as u32;
    let answers: Vec<&MemberStatus> = probes
        .iter()
        .filter_map(|p| p.result.as_ref().ok())
        .collect();
    let majority = majority_root(&answers);
    probes
        .iter()
        .map(|p| {
            let (id, addr) = ring.members[p.pos as usize].clone();
            // The worst any reachable member believes of it, and who does.
            let mut worst = 0;
            let mut held_by = Vec::new();
            for a in &answers {
                if let Some(seen) = a.peers.iter().find(|x| x.id == id) {
                    let r = rank(&seen.state);
                    if r > 0 {
                        held_by.push(a.id.clone());
                    }
                    worst = worst.max(r);
                }
            }
            let mut v = NodeView {
                id,
                addr,
                position: p.pos,
                state: String::new(),
                reachable: p.result.is_ok(),
                error: p.result.as_ref().err().cloned(),
                held_by,
                mode: None,
                mode_reason: None,
                mode_since_cycle: None,
                cycle: None,
                cycle_age_ms: None,
                keys: None,
                tombstones: None,
                digest_root: None,
                root_agrees: false,
                relay_queue: None,
                staleness_ms: None,
                clock_skew_ms: None,
                round_trip_ms: None,
                pushes: None,
                pushes_to: None,
                epoch: None,
            };
            if let Ok(s) = &p.result {
                fill(&mut v, s, p, ring, n, majority.as_deref());
            }
            v.state = match (worst, &v.mode) {
                (w, _) if w > 0 => STATES[w].to_string(),
                (_, None) => "unreachable".to_string(),
                (_, Some(mode)) => mode.clone(),
            };
            v
        })
        .collect()
}

/// What a member that answered told.
fn fill(
    v: &mut NodeView,
    s: &MemberStatus,
    p: &Probe,
    ring: Ring<'_>,
    n: u32,
    majority: Option<&str>,
) {
    let interval = ring.interval_ms.max(1);
    v.mode = Some(s.mode.clone());
    v.mode_reason = Some(s.mode_reason.clone());
    v.mode_since_cycle = Some(s.mode_since_cycle);
    v.cycle = s.last_cycle;
    v.cycle_age_ms = s
        .last_cycle
        .zip(s.now_ms)
        .map(|(c, now)| now.saturating_sub(c.saturating_mul(interval)));
    v.keys = Some(s.keys);
    v.tombstones = Some(s.tombstones);
    v.digest_root = Some(s.digest_root.clone());
    v.root_agrees = majority == Some(s.digest_root.as_str());
    v.relay_queue = s.relay_queue;
    v.staleness_ms = s.staleness_max_ms;
    // Its clock read at some moment of the round trip: the middle is the
    // best guess, half the round trip the error.
    let middle = (p.sent_ms + p.received_ms) / 2;
    v.clock_skew_ms = s.now_ms.map(|t| t as i64 - middle as i64);
    v.round_trip_ms = Some(p.received_ms.saturating_sub(p.sent_ms));
    let random = s.mode != "ring" || ring.schedule == Schedule::Random;
    v.pushes = Some(
        if random {
            "random"
        } else {
            ring.schedule.name()
        }
        .to_string(),
    );
    v.pushes_to = (!random && n > 1).then(|| {
        let to = ring_target(ring.schedule, n, v.position, s.cycle);
        ring.members[to as usize].0.clone()
    });
    v.epoch = s.epoch.clone();
}

/// The root most answers hold (the first such, on a tie); `None` if no
/// one answered.
fn majority_root(answers: &[&MemberStatus]) -> Option<String> {
    let mut best: Option<(&str, usize)> = None;
    for a in answers {
        let count = answers
            .iter()
            .filter(|b| b.digest_root == a.digest_root)
            .count();
        if best.is_none_or(|(_, c)| count > c) {
            best = Some((&a.digest_root, count));
        }
    }
    best.map(|(r, _)| r.to_string())
}

impl NodeHandle {
    /// Reads every member's status at once, each bounded by the peer
    /// timeout, and judges them: `own` is this node's status, read by the
    /// caller (the service does not render statuses).
    pub async fn cluster_view(self: &Arc<Self>, own: MemberStatus) -> ClusterView {
        let started = Instant::now();
        let taken_ms = now_ms();
        // One ring for the whole view, even if a reload changes it meanwhile.
        let (topo, me) = (self.topology(), self.me());
        let n = topo.nodes.len() as u32;
        let tasks: Vec<_> = (0..n)
            .filter(|&pos| pos != me)
            .map(|pos| {
                let node = Arc::clone(self);
                async_std::task::spawn(async move { node.probe(pos).await })
            })
            .collect();
        let at = own.now_ms.unwrap_or(taken_ms);
        let mut probes = vec![Probe {
            pos: me,
            result: Ok(own),
            sent_ms: at,
            received_ms: at,
        }];
        for t in tasks {
            probes.push(t.await);
        }
        let members: Vec<(String, String)> = topo
            .nodes
            .iter()
            .map(|m| (m.id.clone(), m.addr.clone()))
            .collect();
        let ring = Ring {
            members: &members,
            schedule: topo.cluster.schedule,
            interval_ms: topo.cluster.interval.as_millis() as u64,
        };
        let nodes = judge(ring, probes);
        let roots: Vec<&String> = nodes
            .iter()
            .filter_map(|v| v.digest_root.as_ref())
            .collect();
        ClusterView {
            node: self.id().to_string(),
            cluster: topo.cluster.name.clone(),
            schedule: ring.schedule.name().to_string(),
            interval_ms: ring.interval_ms,
            taken_ms,
            took_ms: started.elapsed().as_millis() as u64,
            age_ms: 0,
            reachable: roots.len() as u32,
            roots_agree: !roots.is_empty() && roots.iter().all(|r| *r == roots[0]),
            nodes,
            last_sync: self.last_sync_report(),
            sync_from_browser: !self.guard.signed(),
        }
    }

    /// Member `pos`'s status, or why it could not be read.
    async fn probe(&self, pos: u32) -> Probe {
        let sent_ms = now_ms();
        let result = self
            .call(pos, self.peer_timeout(), |t, call| t.status(call))
            .await
            .map_err(|e| e.message)
            .and_then(|s| {
                // An address that leads to another node is a wrong address:
                // what it says is not this member's.
                if s.id == self.id_of(pos) {
                    Ok(s)
                } else {
                    Err(format!(
                        "{} answered as node {:?}, not {:?}: check the topology's addresses",
                        self.addr(pos),
                        s.id,
                        self.id_of(pos)
                    ))
                }
            });
        Probe {
            pos,
            result,
            sent_ms,
            received_ms: now_ms(),
        }
    }
}

/// The last view, shared by every viewer: see [`REFRESH`].
#[derive(Debug, Default)]
pub struct ClusterCache {
    last: async_std::sync::Mutex<Option<(Instant, ClusterView)>>,
}

impl ClusterCache {
    /// The last view if it ended less than [`REFRESH`] ago, else a new one.
    /// Viewers who ask while a fan-out runs wait for it and share it.
    pub async fn view(
        &self,
        node: &Arc<NodeHandle>,
        own: impl FnOnce() -> MemberStatus,
    ) -> ClusterView {
        let mut last = self.last.lock().await;
        let mut view = match last.as_ref() {
            Some((ended, v)) if ended.elapsed() < REFRESH => v.clone(),
            _ => {
                let v = node.cluster_view(own()).await;
                *last = Some((Instant::now(), v.clone()));
                v
            }
        };
        view.age_ms = now_ms().saturating_sub(view.taken_ms);
        view
    }
}

#[cfg(test)]
#[path = "cluster_tests.rs"]
mod tests;
