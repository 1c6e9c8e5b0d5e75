//! Peer choice: pure functions of the ring, the cycle and the generator.

use serde::{Deserialize, Serialize};

use super::rng::Rng;

/// How a node picks the peer it pushes to in a cycle.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Schedule {
    /// In cycle c, node i pushes to i+1. A write reaches all N nodes in N-1
    /// cycles, each entry crossing the wire once per receiving node.
    Successor,
    /// In cycle c, node i pushes to i + 2^(c mod ceil(log2 N)): all N nodes
    /// in ceil(log2 N) cycles, the lower bound for one push a cycle.
    Doubling,
    /// Push-pull with a uniformly random other live node (Demers et al. 1987).
    Random,
}

impl Schedule {
    /// All three, in the order reports list them.
    pub const ALL: [Schedule; 3] = [Schedule::Successor, Schedule::Doubling, Schedule::Random];

    /// The lowercase name used in files, flags and reports.
    pub fn name(self) -> &'static str {
        match self {
            Schedule::Successor => "successor",
            Schedule::Doubling => "doubling",
            Schedule::Random => "random",
        }
    }

    /// True for the deterministic ring schedules.
    pub fn is_ring(self) -> bool {
        !matches!(self, Schedule::Random)
    }
}

impl std::fmt::Display for Schedule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Schedule {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "successor" => Ok(Schedule::Successor),
            "doubling" => Ok(Schedule::Doubling),
            "random" => Ok(Schedule::Random),
            other => Err(format!(
                "unknown schedule {other:?}: expected successor, doubling or random"
            )),
        }
    }
}

/// Cycles within which a ring schedule brings a write to every node of a
/// ring of `n` without faults: N-1 for successor, ceil(log2 N) for
/// doubling; `None` for random push-pull, which has no such bound.
pub fn ring_bound(schedule: Schedule, n: u32) -> Option<u64> {
    match schedule {
        Schedule::Successor => Some(u64::from(n.saturating_sub(1))),
        Schedule::Doubling => Some(u64::from(log2_ceil(n))),
        Schedule::Random => None,
    }
}

/// ceil(log2 n), at least 1: the number of doubling offsets for a ring of n.
pub fn log2_ceil(n: u32) -> u32 {
    if n <= 2 {
        1
    } else {
        32 - (n - 1).leading_zeros()
    }
}

/// The ring offset node i pushes to in `cycle` under a ring schedule.
pub fn ring_offset(schedule: Schedule, n: u32, cycle: u64) -> u32 {
    match schedule {
        Schedule::Doubling => 1 << (cycle % u64::from(log2_ceil(n))),
        _ => 1,
    }
}

/// The ring position `me` pushes to in `cycle` (ring schedules).
pub fn ring_target(schedule: Schedule, n: u32, me: u32, cycle: u64) -> u32 {
    (me + ring_offset(schedule, n, cycle) % n) % n
}

/// A uniformly random member of `live` other than `me`, if there is one.
pub fn random_peer(live: &[u32], me: u32, rng: &mut Rng) -> Option<u32> {
    let others = live.iter().filter(|&&p| p != me).count() as u64;
    if others == 0 {
        return None;
    }
    let pick = rng.below(others) as usize;
    live.iter().copied().filter(|&p| p != me).nth(pick)
}

/// How far `to` lies along the ring after `from`, in 0..n.
pub fn distance(n: u32, from: u32, to: u32) -> u32 {
    (to + n - from % n) % n
}

/// A manual sync's wave of hops for the schedule, starting at `me`, as
/// (from, to) ring positions, in rounds: hops in one round run at once.
/// The service's sync runs it, and so does the simulator's.
pub fn sync_wave(schedule: Schedule, n: u32, me: u32) -> Vec<Vec<(u32, u32)>> {
    match schedule {
        // Around the ring twice less two hops: the first N-1 gather every
        // node's data at me-1, the next N-1 carry it to everyone else.
        Schedule::Successor => (0..2 * n - 2)
            .map(|k| {
                let from = (me + k) % n;
                vec![(from, (from + 1) % n)]
            })
            .collect(),
        // Recursive doubling: after round r every node holds the data of
        // the 2^(r+1) nodes behind it.
        Schedule::Doubling => (0..log2_ceil(n))
            .map(|r| (0..n).map(|from| (from, (from + (1 << r)) % n)).collect())
            .collect(),
        // Random: handled by rounds of push-pull until digests match.
        Schedule::Random => Vec::new(),
    }
}

/// Round `r` of a manual sync's push-pull rounds among the reachable
/// nodes `live` (ring positions): each is paired with the one r+1 places
/// on among them, so every pair meets within `live.len() - 1` rounds.
pub fn push_pull_round(live: &[u32], r: usize) -> Vec<(u32, u32)> {
    let k = live.len();
    if k < 2 {
        return Vec::new();
    }
    let step = 1 + r % (k - 1);
    (0..k).map(|i| (live[i], live[(i + step) % k])).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log2_ceil_matches_definition() {
        for (n, l) in [
            (2, 1),
            (3, 2),
            (4, 2),
            (5, 3),
            (8, 3),
            (9, 4),
            (1000, 10),
            (1024, 10),
        ] {
            assert_eq!(log2_ceil(n), l, "n={n}");
        }
    }

    #[test]
    fn doubling_offsets_cycle_through_powers_of_two() {
        let offs: Vec<u32> = (0..6)
            .map(|c| ring_offset(Schedule::Doubling, 5, c))
            .collect();
        assert_eq!(offs, vec![1, 2, 4, 1, 2, 4]);
        assert_eq!(ring_target(Schedule::Successor, 5, 4, 9), 0);
    }

    #[test]
    fn random_peer_never_picks_self_and_covers_everyone() {
        let live = [0, 1, 2, 3];
        let mut rng = Rng::new(7);
        let mut seen = [0u32; 4];
        for _ in 0..400 {
            let p = random_peer(&live, 2, &mut rng).unwrap_or(2);
            seen[p as usize] += 1;
        }
        assert_eq!(seen[2], 0);
        assert!(
            seen.iter().enumerate().all(|(i, &c)| i == 2 || c > 50),
            "{seen:?}"
        );
    }

    #[test]
    fn successor_wave_goes_round_twice_less_two_hops() {
        let w = sync_wave(Schedule::Successor, 4, 2);
        let hops: Vec<(u32, u32)> = w.iter().map(|r| r[0]).collect();
        assert_eq!(hops, vec![(2, 3), (3, 0), (0, 1), (1, 2), (2, 3), (3, 0)]);
    }

    #[test]
    fn doubling_wave_has_log2_rounds_of_n_hops() {
        let w = sync_wave(Schedule::Doubling, 5, 0);
        assert_eq!(w.len(), 3);
        assert!(w.iter().all(|r| r.len() == 5));
        assert_eq!(w[2][4], (4, (4 + 4) % 5));
    }

    #[test]
    fn push_pull_rounds_pair_every_two_reachable_nodes() {
        let live = [0, 2, 3];
        assert_eq!(push_pull_round(&live, 0), vec![(0, 2), (2, 3), (3, 0)]);
        assert_eq!(push_pull_round(&live, 1), vec![(0, 3), (2, 0), (3, 2)]);
        assert_eq!(push_pull_round(&live, 2), push_pull_round(&live, 0));
        assert!(push_pull_round(&[1], 0).is_empty());
    }
}
