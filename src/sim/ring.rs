//! Changes of the ring in a simulated run: which node runs which epoch's
//! ring, and the steps (stop, wipe, reload) that a rolling change makes at
//! each cycle. A node's number is its identity, and its origin: requests
//! are delivered by origin, so a node's position may change and its
//! number not.

use std::collections::BTreeMap;

use super::scenario::Scenario;

/// One node's part of a rolling change, at the start of a cycle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Step {
    /// The node stops (removed, or about to be replaced).
    Stop(u32),
    /// The node's disk is a new, empty one (a replacement server).
    Wipe(u32),
    /// The node takes epoch `epoch`'s ring: reloads if it runs, starts if
    /// it was stopped or never started.
    Take {
        /// The node.
        node: u32,
        /// The epoch.
        epoch: u64,
    },
}

/// Every ring of the run by epoch, and the steps by cycle.
#[derive(Debug, Clone, Default)]
pub(super) struct Plan {
    /// Epoch e's ring (epoch 0: `0..nodes`).
    pub(super) rings: Vec<Vec<u32>>,
    /// Steps to make at the start of each cycle, in order.
    pub(super) steps: BTreeMap<u64, Vec<Step>>,
    /// Node numbers there are: one more than the highest in any ring.
    pub(super) slots: u32,
    /// The cycle after the last member of the last change took it.
    pub(super) settled_at: Option<u64>,
}

impl Plan {
    /// The plan of `sc`'s ring changes.
    pub(super) fn of(sc: &Scenario) -> Plan {
        let n = sc.nodes.max(2);
        let mut plan = Plan {
            rings: vec![(0..n).collect()],
            slots: n,
            ..Plan::default()
        };
        for (i, change) in sc.ring_changes.iter().enumerate() {
            let epoch = i as u64 + 1;
            let before = plan.rings[i].clone();
            let mut add = |c: u64, step: Step| plan.steps.entry(c).or_default().push(step);
            for &gone in before.iter().filter(|m| !change.ring.contains(m)) {
                add(change.from, Step::Stop(gone));
            }
            for &r in change.replaced.iter().filter(|m| change.ring.contains(m)) {
                add(change.from, Step::Stop(r));
                add(change.from, Step::Wipe(r));
            }
            for (j, &node) in change.ring.iter().enumerate() {
                add(change.turn(j), Step::Take { node, epoch });
            }
            let top = change.ring.iter().copied().max().unwrap_or(0);
            plan.slots = plan.slots.max(top + 1);
            plan.settled_at = Some(change.last_turn() + 1);
            plan.rings.push(change.ring.clone());
        }
        plan
    }

    /// The first epoch whose ring holds `node`, and its ring.
    pub(super) fn first_ring(&self, node: u32) -> (u64, &[u32]) {
        self.rings
            .iter()
            .enumerate()
            .find(|(_, r)| r.contains(&node))
            .map_or((0, &self.rings[0][..]), |(e, r)| (e as u64, &r[..]))
    }
}

/// The fingerprint of epoch `epoch`'s ring, as a topology's would be:
/// different rings, different fingerprints.
pub(super) fn fingerprint(cluster: u64, epoch: u64, ring: &[u32]) -> u64 {
    let mut h = cluster ^ epoch.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    for &o in ring {
        h = (h ^ u64::from(o)).wrapping_mul(0x0100_0000_01b3);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::Schedule;
    use crate::sim::scenario::RingChange;

    #[test]
    fn a_change_stops_the_removed_and_replaced_and_reloads_in_turn() {
        let mut sc = Scenario::new(4, Schedule::Successor);
        sc.ring_changes.push(RingChange {
            ring: vec![1, 0, 3, 5],
            from: 10,
            stagger: 2,
            replaced: vec![3],
        });
        let plan = Plan::of(&sc);
        assert_eq!(plan.slots, 6);
        assert_eq!(plan.settled_at, Some(17));
        assert_eq!(
            plan.steps[&10],
            [
                Step::Stop(2),
                Step::Stop(3),
                Step::Wipe(3),
                Step::Take { node: 1, epoch: 1 }
            ]
        );
        assert_eq!(plan.steps[&16], [Step::Take { node: 5, epoch: 1 }]);
        assert_eq!(plan.first_ring(5), (1, &[1, 0, 3, 5][..]));
        assert_ne!(fingerprint(1, 1, &[0, 1]), fingerprint(1, 1, &[1, 0]));
    }
}
