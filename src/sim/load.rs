//! Steady client load during a run (`Scenario::load`) and the staleness it
//! measures: per acknowledged write, the cycles until every up node holds
//! it or a newer version.

use crate::core::{Node, Version};
use crate::store::MemoryStore;

use super::ledger::Ledger;
use super::World;

/// Every this many load writes, one overwrites a key written
/// [`OVERWRITE_LAG`] cycles earlier (at another node, since the writers go
/// round): last writer wins is exercised under load too.
const OVERWRITE_EVERY: u32 = 10;
const OVERWRITE_LAG: u64 = 3;

/// A write not yet held everywhere.
struct Pending {
    key: String,
    version: Version,
    cycle: u64,
}

/// Write-to-everywhere times of the load's writes.
#[derive(Default)]
pub(super) struct Tracker {
    pending: Vec<Pending>,
    /// `hist[d]`: writes held everywhere `d` cycles after the cycle they
    /// were acknowledged in (0: by the end of that same cycle).
    hist: Vec<u64>,
    /// Round-robin position of the next writer.
    next_writer: u64,
}

impl Tracker {
    /// Drops the writes every up node now holds (or holds newer), noting
    /// their times; `k` is the cycle that just ended.
    pub(super) fn check(&mut self, k: u64, nodes: &[Node<MemoryStore>], down: &[bool]) {
        let hist = &mut self.hist;
        self.pending.retain(|p| {
            let everywhere = nodes
                .iter()
                .zip(down)
                .filter(|(_, d)| !**d)
                .all(|(n, _)| Ledger::holds(n, &p.key, p.version));
            if everywhere {
                bump(hist, k.saturating_sub(p.cycle));
            }
            !everywhere
        });
    }

    /// The histogram, and how many writes were still not everywhere when
    /// the run ended after cycle `k` (counted in the histogram at `k` minus
    /// their cycle, a lower bound).
    pub(super) fn finish(mut self, k: u64) -> (Vec<u64>, u64) {
        let left = self.pending.len() as u64;
        for p in std::mem::take(&mut self.pending) {
            bump(&mut self.hist, k.saturating_sub(p.cycle));
        }
        (self.hist, left)
    }
}

fn bump(hist: &mut Vec<u64>, d: u64) {
    let d = d as usize;
    if hist.len() <= d {
        hist.resize(d + 1, 0);
    }
    hist[d] += 1;
}

/// The `q` quantile (0 to 1) of a histogram, `None` when it is empty.
pub fn quantile(hist: &[u64], q: f64) -> Option<u64> {
    let total: u64 = hist.iter().sum();
    if total == 0 {
        return None;
    }
    let rank = ((total as f64 * q).ceil() as u64).clamp(1, total);
    let mut seen = 0;
    for (d, &n) in hist.iter().enumerate() {
        seen += n;
        if seen >= rank {
            return Some(d as u64);
        }
    }
    Some(hist.len().saturating_sub(1) as u64)
}

impl World<'_> {
    /// The load's writes of cycle `k` (which starts at virtual time
    /// `start`) that fall in `[from, to)` of the cycle's `load` even slots,
    /// each at an up node in turn, the network delivering up to each.
    pub(super) fn load(&mut self, k: u64, start: u64, slots: std::ops::Range<u32>) {
        let sc = self.sc;
        if sc.load == 0 || k >= sc.load_cycles {
            return;
        }
        let n = self.nodes.len() as u64;
        for j in slots {
            let at = start + sc.interval_ms * u64::from(2 * j + 1) / u64::from(2 * sc.load);
            self.deliver_until(at);
            // Writes pause while a manual sync runs.
            if self.sync.is_some() {
                continue;
            }
            // The next up node in turn; none up, no write.
            let Some(i) = (0..n)
                .map(|s| ((self.load_track.next_writer + s) % n) as u32)
                .find(|&i| !self.down[i as usize])
            else {
                return;
            };
            self.load_track.next_writer = u64::from(i) + 1;
            let key = if j % OVERWRITE_EVERY == OVERWRITE_EVERY - 1 && k >= OVERWRITE_LAG {
                format!("l{:05}.{j:04}", k - OVERWRITE_LAG)
            } else {
                format!("l{k:05}.{j:04}")
            };
            let value = format!("n{i} c{k}").into_bytes();
            if let Some(e) = self.write(i, at, &key, Some(value)) {
                self.load_track.pending.push(Pending {
                    key,
                    version: e.version,
                    cycle: k,
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_of_a_histogram() {
        // 0 x3, 1 x1, 5 x1.
        let h = [3, 1, 0, 0, 0, 1];
        assert_eq!(quantile(&h, 0.5), Some(0));
        assert_eq!(quantile(&h, 0.8), Some(1));
        assert_eq!(quantile(&h, 0.99), Some(5));
        assert_eq!(quantile(&h, 1.0), Some(5));
        assert_eq!(quantile(&[], 0.5), None);
        assert_eq!(quantile(&[0, 0], 0.5), None);
    }
}
