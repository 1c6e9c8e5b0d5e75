//! Summaries of many runs, as a table or JSON.

use serde::Serialize;

use super::load::quantile;
use super::Outcome;
use crate::core::Schedule;

/// Figures for one schedule over many runs.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    /// The schedule.
    pub schedule: String,
    /// Nodes.
    pub nodes: u32,
    /// Runs made.
    pub runs: usize,
    /// Runs that converged.
    pub converged: usize,
    /// Cycles to convergence: mean, 99th percentile, max.
    pub cycles_mean: f64,
    /// 99th percentile.
    pub cycles_p99: u64,
    /// Maximum.
    pub cycles_max: u64,
    /// Mean messages per run.
    pub messages: f64,
    /// Mean entries sent per run.
    pub entries_sent: f64,
    /// Mean bytes per run.
    pub bytes: f64,
    /// Entries sent over entries needed, over all runs.
    pub redundancy: f64,
    /// Seeds of runs that did not converge.
    pub failed_seeds: Vec<u64>,
    /// Acknowledged writes lost, summed over the runs (see `sim::ledger`).
    pub lost_writes: u64,
    /// Acknowledged deletes undone, summed over the runs.
    pub resurrected_deletes: u64,
    /// Client writes refused by a failed commit, summed over the runs.
    pub writes_failed: u64,
    /// Seeds of runs that lost a write or resurrected a delete.
    pub unsafe_seeds: Vec<u64>,
    /// Incarnation raises to refute a rumour of one's own failure, summed
    /// over the runs: many mean members flap.
    pub refutations: u64,
    /// Members judged failed, summed over the runs; in runs where no node
    /// goes down, each is false.
    pub failed_judgements: u64,
    /// Under a steady load: the median of the write-to-everywhere times,
    /// in cycles, over every load write of every run (see
    /// [`Outcome::staleness`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub staleness_p50: Option<u64>,
    /// Their 99th percentile.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub staleness_p99: Option<u64>,
    /// Their maximum: the largest staleness seen.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub staleness_max: Option<u64>,
    /// Load writes not yet everywhere when their run ended, summed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub staleness_unfinished: Option<u64>,
    /// The manual syncs of the runs, if they had any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub syncs: Option<SyncSummary>,
}

/// The manual syncs of many runs ([`super::SyncOutcome`]).
#[derive(Debug, Clone, Serialize)]
pub struct SyncSummary {
    /// Syncs run, over all runs.
    pub runs: usize,
    /// Hops, summed.
    pub hops: u64,
    /// Failed hops, summed.
    pub failed_hops: u64,
    /// Of those, hops whose node did not know its peer (mid-change, a node
    /// on the old epoch asked for a hop to one the change added).
    pub peer_unknown: u64,
    /// Most push-pull rounds one sync ran.
    pub rounds_max: u32,
    /// Syncs whose reachable nodes did not agree at their end.
    pub apart: usize,
    /// Seeds of runs with a sync that ended apart or failed a hop other
    /// than for an unknown peer.
    pub seeds: Vec<u64>,
}

fn sync_summary(runs: &[Outcome]) -> Option<SyncSummary> {
    let all = || runs.iter().flat_map(|r| &r.syncs);
    let bad = |r: &&Outcome| {
        r.syncs
            .iter()
            .any(|s| !s.reachable_agree || s.failed_hops > s.peer_unknown)
    };
    (all().next().is_some()).then(|| SyncSummary {
        runs: all().count(),
        hops: all().map(|s| u64::from(s.hops)).sum(),
        failed_hops: all().map(|s| u64::from(s.failed_hops)).sum(),
        peer_unknown: all().map(|s| u64::from(s.peer_unknown)).sum(),
        rounds_max: all().map(|s| s.rounds).max().unwrap_or(0),
        apart: all().filter(|s| !s.reachable_agree).count(),
        seeds: runs.iter().filter(bad).map(|r| r.seed).collect(),
    })
}

/// Sums up `runs` of one schedule.
pub fn summarize(schedule: Schedule, nodes: u32, runs: &[Outcome]) -> Summary {
    let k = runs.len().max(1) as f64;
    let mut cycles: Vec<u64> = runs.iter().map(|r| r.cycles).collect();
    cycles.sort_unstable();
    let p99 = cycles
        .get(((cycles.len() as f64 * 0.99).ceil() as usize).saturating_sub(1))
        .copied()
        .unwrap_or(0);
    let mut hist: Vec<u64> = Vec::new();
    for r in runs {
        if hist.len() < r.staleness.len() {
            hist.resize(r.staleness.len(), 0);
        }
        for (d, n) in r.staleness.iter().enumerate() {
            hist[d] += n;
        }
    }
    let loaded = hist.iter().any(|&n| n > 0);
    let sent: u64 = runs.iter().map(|r| r.entries_sent).sum();
    let needed: u64 = runs.iter().map(|r| r.entries_needed).sum();
    Summary {
        schedule: schedule.name().to_string(),
        nodes,
        runs: runs.len(),
        converged: runs.iter().filter(|r| r.converged).count(),
        cycles_mean: cycles.iter().sum::<u64>() as f64 / k,
        cycles_p99: p99,
        cycles_max: cycles.last().copied().unwrap_or(0),
        messages: runs.iter().map(|r| r.messages).sum::<u64>() as f64 / k,
        entries_sent: sent as f64 / k,
        bytes: runs.iter().map(|r| r.bytes).sum::<u64>() as f64 / k,
        redundancy: if needed == 0 {
            1.0
        } else {
            sent as f64 / needed as f64
        },
        failed_seeds: runs
            .iter()
            .filter(|r| !r.converged)
            .map(|r| r.seed)
            .collect(),
        lost_writes: runs.iter().map(|r| r.lost_writes).sum(),
        resurrected_deletes: runs.iter().map(|r| r.resurrected_deletes).sum(),
        writes_failed: runs.iter().map(|r| r.writes_failed).sum(),
        unsafe_seeds: runs
            .iter()
            .filter(|r| r.lost_writes > 0 || r.resurrected_deletes > 0)
            .map(|r| r.seed)
            .collect(),
        refutations: runs.iter().map(|r| r.refutations).sum(),
        failed_judgements: runs.iter().map(|r| r.failed_judgements).sum(),
        staleness_p50: quantile(&hist, 0.5),
        staleness_p99: quantile(&hist, 0.99),
        staleness_max: quantile(&hist, 1.0),
        staleness_unfinished: loaded.then(|| runs.iter().map(|r| r.staleness_unfinished).sum()),
        syncs: sync_summary(runs),
    }
}

/// A plain-text table, one row per schedule.
pub fn table(rows: &[Summary]) -> String {
    let mut s = format!(
        "{:<10} {:>6} {:>9} {:>11} {:>5} {:>5} {:>12} {:>12} {:>14} {:>10}\n",
        "schedule",
        "nodes",
        "converged",
        "cycles mean",
        "p99",
        "max",
        "messages",
        "entries",
        "bytes",
        "redundancy"
    );
    for r in rows {
        s.push_str(&format!(
            "{:<10} {:>6} {:>5}/{:<3} {:>11.2} {:>5} {:>5} {:>12.0} {:>12.0} {:>14.0} {:>10.2}\n",
            r.schedule,
            r.nodes,
            r.converged,
            r.runs,
            r.cycles_mean,
            r.cycles_p99,
            r.cycles_max,
            r.messages,
            r.entries_sent,
            r.bytes,
            r.redundancy
        ));
        if let (Some(p50), Some(p99), Some(max)) =
            (r.staleness_p50, r.staleness_p99, r.staleness_max)
        {
            s.push_str(&format!(
                "  staleness (cycles from a write to everywhere): p50 {p50} p99 {p99} max {max}\n"
            ));
            if let Some(left @ 1..) = r.staleness_unfinished {
                s.push_str(&format!(
                    "  {left} load writes were not everywhere when the run ended (max is a lower bound)\n"
                ));
            }
        }
        if let Some(y) = &r.syncs {
            s.push_str(&format!(
                "  manual syncs: {}, hops {}, failed hops {} ({} to an unknown peer), \
                 most push-pull rounds {}, ended apart {}\n",
                y.runs, y.hops, y.failed_hops, y.peer_unknown, y.rounds_max, y.apart
            ));
            if !y.seeds.is_empty() {
                s.push_str(&format!(
                    "  a sync ended apart or failed a hop; replay with --seed: {:?}\n",
                    y.seeds
                ));
            }
        }
        if !r.failed_seeds.is_empty() {
            s.push_str(&format!(
                "  did not converge; replay with --seed: {:?}\n",
                r.failed_seeds
            ));
        }
        if !r.unsafe_seeds.is_empty() {
            s.push_str(&format!(
                "  lost {} acknowledged writes, resurrected {} deletes; replay with --seed: {:?}\n",
                r.lost_writes, r.resurrected_deletes, r.unsafe_seeds
            ));
        }
    }
    s
}
