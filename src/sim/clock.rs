//! Per-node clocks: each simulated node reads the virtual time through its
//! own offset and drift, as real machines' clocks disagree.

use crate::core::rng::Rng;

/// The clocks of every node of one run.
#[derive(Debug, Clone)]
pub struct Clocks {
    /// Offset of each node's clock from the virtual time, ms.
    offset_ms: Vec<i64>,
    /// How fast each node's clock runs, parts per million off true.
    drift_ppm: Vec<i64>,
    /// Virtual time from which drift accumulates: the run's first write.
    origin_ms: u64,
}

impl Clocks {
    /// `n` clocks, offsets uniform in `[-skew_ms, +skew_ms]` and drifts in
    /// `[-drift_ppm, +drift_ppm]`, drawn from `rng` only when asked for, so
    /// that a run without skew draws nothing and replays as before.
    pub fn new(n: u32, skew_ms: u64, drift_ppm: u64, origin_ms: u64, rng: &mut Rng) -> Self {
        let mut draw = |bound: u64| -> i64 {
            if bound == 0 {
                0
            } else {
                rng.below(2 * bound + 1) as i64 - bound as i64
            }
        };
        let offset_ms = (0..n).map(|_| draw(skew_ms)).collect();
        let drift_ppm = (0..n).map(|_| draw(drift_ppm)).collect();
        Clocks {
            offset_ms,
            drift_ppm,
            origin_ms,
        }
    }

    /// What node `i`'s clock reads at virtual time `t`:
    /// `t + offset_i + drift_i * (t - origin)`.
    pub fn now(&self, i: u32, t: u64) -> u64 {
        let i = i as usize;
        let elapsed = t.saturating_sub(self.origin_ms) as i128;
        let drift = elapsed * i128::from(self.drift_ppm[i]) / 1_000_000;
        let read = i128::from(t) + i128::from(self.offset_ms[i]) + drift;
        read.clamp(0, i128::from(u64::MAX)) as u64
    }

    /// Virtual delay from a virtual cycle start until node `i`'s clock next
    /// reads a multiple of `interval_ms`: when its timer fires, as the
    /// service sleeps until `Node::next_timeout`. Drift, a few ms per run,
    /// is left out.
    pub fn phase(&self, i: u32, interval_ms: u64) -> u64 {
        let interval = interval_ms.max(1) as i64;
        let past = self.offset_ms[i as usize].rem_euclid(interval);
        ((interval - past) % interval) as u64
    }

    /// Sets node `i`'s clock `ms` further ahead.
    pub fn shift(&mut self, i: u32, ms: u64) {
        if let Some(o) = self.offset_ms.get_mut(i as usize) {
            *o = o.saturating_add(i64::try_from(ms).unwrap_or(i64::MAX));
        }
    }

    /// Node `i`'s offset, ms.
    pub fn offset_ms(&self, i: u32) -> i64 {
        self.offset_ms[i as usize]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_stay_within_the_skew_and_phase_lands_on_a_boundary() {
        let mut rng = Rng::new(9);
        let c = Clocks::new(50, 30_000, 200, 1_000_000, &mut rng);
        for i in 0..50 {
            assert!(c.offset_ms(i).abs() <= 30_000);
            let start = 2_000_000;
            let at = start + c.phase(i, 1000);
            // Drift over a million ms is at most 200 ms.
            assert!(c.now(i, at) % 1000 <= 200 || c.now(i, at) % 1000 >= 800);
        }
        let same = Clocks::new(3, 0, 0, 0, &mut rng);
        assert_eq!(same.now(2, 12_345), 12_345);
        assert_eq!(same.phase(2, 1000), 0);
    }
}
