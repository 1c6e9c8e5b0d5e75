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
    /// The schedule whose wave was run.
    pub schedule: String,
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
    pub converged: bool,
    /// How long it took, ms.
    pub duration_ms: u64,
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
