//! The reports of manual syncs: what one did, and the recent ones kept
//! for `GET /v1/sync/{id}`.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use super::transport::NodeDigest;

/// Reports kept for `GET /v1/sync/{id}`.
const KEPT_REPORTS: usize = 32;

/// What a manual sync did.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SyncReport {
    /// The sync's id.
    pub id: String,
    /// "running" or "done".
    pub state: String,
    /// The configured schedule, with a note when the sync fell back.
    pub schedule: String,
    /// What ran: the schedule's name when its wave ran over the whole ring
    /// ("push-pull" for the random schedule, ", then push-pull" when rounds
    /// followed the wave), or "fallback" when a node could not be reached
    /// or the coordinator was in fallback (push-pull among the reachable).
    pub mode: String,
    /// The node that coordinated it.
    pub coordinator: String,
    /// Exchanges made: 2N-2 for successor, N per round for doubling and for
    /// push-pull rounds.
    pub hops: u32,
    /// Exchanges that failed (a node unreachable, a timeout, a refusal).
    pub failed_hops: u32,
    /// Entries moved by the hops.
    pub entries: u64,
    /// Bytes moved by the hops.
    pub bytes: u64,
    /// Every reachable node's digest after the wave.
    pub nodes: Vec<NodeDigest>,
    /// Nodes that could not be reached: left out of the sync.
    pub unreachable: Vec<String>,
    /// Every reachable node holds the same data.
    pub reachable_agree: bool,
    /// Every node of the ring answered, with the same digest root.
    pub converged: bool,
    /// How long it took, ms.
    pub duration_ms: u64,
}

impl SyncReport {
    /// Judges the digests just collected from a ring of `ring` nodes: the
    /// reachable ones agree when their roots are equal, and the sync
    /// converged only when no node is missing as well. A node that did not
    /// answer may hold anything, so agreement among the others says
    /// nothing of it.
    pub fn judge(&mut self, ring: usize) {
        self.reachable_agree =
            !self.nodes.is_empty() && self.nodes.windows(2).all(|w| w[0].root == w[1].root);
        self.converged =
            self.reachable_agree && self.unreachable.is_empty() && self.nodes.len() == ring;
    }
}

/// Recent reports, by id.
#[derive(Debug, Default)]
pub struct SyncReports {
    reports: VecDeque<SyncReport>,
}

impl SyncReports {
    /// The report with this id.
    pub fn get(&self, id: &str) -> Option<SyncReport> {
        self.reports.iter().find(|r| r.id == id).cloned()
    }

    /// The report of the sync begun last, running or done.
    pub fn latest(&self) -> Option<SyncReport> {
        self.reports.back().cloned()
    }

    /// Adds or replaces a report.
    pub fn put(&mut self, r: SyncReport) {
        if let Some(slot) = self.reports.iter_mut().find(|x| x.id == r.id) {
            *slot = r;
            return;
        }
        self.reports.push_back(r);
        while self.reports.len() > KEPT_REPORTS {
            self.reports.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest(id: &str, root: &str) -> NodeDigest {
        NodeDigest {
            id: id.into(),
            root: root.into(),
            keys: 1,
            tombstones: 0,
            epoch: Some(0),
        }
    }

    fn report(nodes: Vec<NodeDigest>, unreachable: &[&str]) -> SyncReport {
        SyncReport {
            id: "s".into(),
            state: "done".into(),
            schedule: "successor".into(),
            mode: "successor".into(),
            coordinator: "n0".into(),
            hops: 0,
            failed_hops: 0,
            entries: 0,
            bytes: 0,
            nodes,
            unreachable: unreachable.iter().map(|u| u.to_string()).collect(),
            reachable_agree: false,
            converged: false,
            duration_ms: 0,
        }
    }

    #[test]
    fn only_the_whole_ring_with_one_root_has_converged() {
        let mut r = report(vec![digest("n0", "a"), digest("n1", "a")], &[]);
        r.judge(2);
        assert!(r.reachable_agree && r.converged);

        // One node left answering agrees with itself, and says nothing of
        // the two that did not answer.
        let mut r = report(vec![digest("n0", "a")], &["n1", "n2"]);
        r.judge(3);
        assert!(r.reachable_agree);
        assert!(!r.converged, "{r:?}");

        let mut r = report(vec![digest("n0", "a"), digest("n1", "b")], &[]);
        r.judge(2);
        assert!(!r.reachable_agree && !r.converged);

        let mut r = report(Vec::new(), &["n0"]);
        r.judge(1);
        assert!(!r.reachable_agree && !r.converged);
    }
}
