//! Catching up after a start: a node opened with `catch_up_on_start`
//! (a restart, or a node new to the ring) first pulls what it missed from
//! its predecessor, then takes part in the ring.

use super::Node;
use crate::core::message::PushKind;
use crate::core::store::Store;

impl<S: Store> Node<S> {
    /// The node has just started: starts its catch-up pull now, not at the
    /// next cycle boundary, up to an interval later (minutes, for a long
    /// interval). Runs no cycle: a cluster whose nodes all start at once
    /// sends one pull per node and nothing else until the first boundary.
    ///
    /// The pull's misses are no evidence against the peer: the cluster may
    /// be starting together, its predecessor not listening yet. If the pull
    /// fails, the first cycle pulls again; if it still runs then, the
    /// cycle leaves it be (one exchange per peer at a time).
    pub fn handle_start(&mut self, now_ms: u64) {
        self.saw_time(now_ms);
        if self.caught_up {
            return;
        }
        let Some(peer) = self.catch_up_peer() else {
            return;
        };
        // Starting only queues the request: it is marked before any
        // outcome can be settled.
        if let Some(ex) = self.exchange_unless_busy(peer, PushKind::PushPull) {
            if let Some(x) = self.exchanges.get_mut(&ex) {
                x.early = true;
            }
        }
    }

    /// Whom a node that has not caught up pulls from: its predecessor, or
    /// a random live member while that one is taken as failed.
    pub(super) fn catch_up_peer(&mut self) -> Option<u32> {
        let n = self.cfg.n;
        let pred = (self.cfg.me + n - 1) % n;
        if self.view.is_failed(pred) {
            self.view.random_live(&mut self.rng)
        } else {
            Some(pred)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::fixture::{body, config, node, transmits};
    use crate::core::message::Body;
    use crate::core::Schedule;

    fn restarted(n: u32, me: u32) -> super::Node<super::super::fixture::TestStore> {
        let mut cfg = config(n, me, Schedule::Successor);
        cfg.catch_up_on_start = true;
        node(cfg)
    }

    #[test]
    fn a_started_node_pulls_from_its_predecessor_at_once_and_once() {
        let mut n2 = restarted(4, 2);
        n2.handle_start(1_500);
        let t = transmits(&mut n2);
        assert_eq!(t.len(), 1);
        assert_eq!(t[0].to, 1);
        assert!(matches!(body(&t[0].payload), Body::Syn { .. }));
        // Neither a second start nor the first cycle sends it again while
        // it runs.
        n2.handle_start(1_600);
        n2.handle_timeout(2_000);
        assert!(transmits(&mut n2).is_empty());
    }

    #[test]
    fn a_start_pull_that_fails_is_no_evidence_and_the_first_cycle_pulls_again() {
        let mut n2 = restarted(4, 2);
        n2.handle_start(1_500);
        let t = transmits(&mut n2);
        n2.handle_failure(t[0].id);
        // No probe of the predecessor, no failure counted against it.
        assert!(transmits(&mut n2).is_empty());
        assert!(n2.peers().iter().all(|p| p.failures == 0));
        n2.handle_timeout(2_000);
        let t = transmits(&mut n2);
        assert_eq!(t.len(), 1);
        assert_eq!(t[0].to, 1);
        assert!(matches!(body(&t[0].payload), Body::Syn { .. }));
    }

    #[test]
    fn a_node_that_need_not_catch_up_sends_nothing_at_start() {
        let mut n2 = node(config(4, 2, Schedule::Successor));
        n2.handle_start(1_500);
        assert!(transmits(&mut n2).is_empty());
    }
}
