//! SWIM's indirect probes: a member that missed a request of ours is only
//! suspected once others, asked to reach it, could not either; and a member
//! others reach but we cannot is routed around, not failed (DESIGN §8).

use super::request::Awaiting;
use super::Node;
use crate::core::membership::State;
use crate::core::message::{Body, PushKind};
use crate::core::store::Store;

/// Members asked to reach a member that missed a request of ours. Each
/// indirect path is four messages (our ask, their syn, its answer, their
/// word back); at 10% loss one path fails with chance 1 - 0.9^4 = 0.34, all
/// three with 0.34^3 = 4%, so a lost message is confirmed as a miss about
/// once in 25 times, against every time without the probe. Three keeps a
/// suspicion's cost at three exchanges, which SWIM (Das et al. 2002) found
/// enough.
pub(super) const PROBE_HELPERS: u32 = 3;

/// An indirect probe of a member, waiting for word that someone reached it.
#[derive(Debug, Clone)]
pub(super) struct Probe {
    /// When it is judged: half an interval after it began (by the latest
    /// time an input brought), at the first cycle since. An answer comes in
    /// milliseconds from a member that is up; half an interval is also the
    /// service's default request timeout, and a probe that began late in a
    /// cycle is judged at the next one.
    deadline_ms: u64,
    /// The members asked to reach it: only their word counts.
    helpers: Vec<u32>,
}

impl<S: Store> Node<S> {
    /// `peer` missed a request of ours. Unless it is failed already (then
    /// only its own refutation brings it back) or a probe of it is under
    /// way, ask others to reach it. With no one to ask, judge it on our
    /// own evidence.
    pub(super) fn missed(&mut self, peer: u32) {
        if self.view.is_failed(peer) || self.probes.contains_key(&peer) {
            return;
        }
        let helpers = self.pick_helpers(peer);
        if helpers.is_empty() {
            let failures = self.peers.get(&peer).map_or(0, |p| p.failures);
            self.judge(peer, failures);
            return;
        }
        self.stats.probes_started += 1;
        for &h in &helpers {
            let ex = self.new_exchange(h, PushKind::Probe);
            self.send(ex, h, Body::ProbeReq { target: peer }, Awaiting::Probe);
        }
        let deadline_ms = self.now_ms + self.cfg.interval_ms / 2;
        self.probes.insert(
            peer,
            Probe {
                deadline_ms,
                helpers,
            },
        );
    }

    /// Up to [`PROBE_HELPERS`] distinct live members other than us and
    /// `target`.
    fn pick_helpers(&mut self, target: u32) -> Vec<u32> {
        let mut out = Vec::new();
        // Random draws find distinct helpers quickly while most members
        // live; the bound keeps a ring of the dead from looping.
        for _ in 0..PROBE_HELPERS * 8 {
            if out.len() as u32 >= PROBE_HELPERS {
                break;
            }
            match self.view.random_live(&mut self.rng) {
                Some(p) if p != target && !out.contains(&p) => out.push(p),
                Some(_) => {}
                None => break,
            }
        }
        out
    }

    /// At the start of a cycle: every probe past its deadline that no one
    /// answered confirms its miss.
    pub(super) fn expire_probes(&mut self, now_ms: u64) {
        let due: Vec<u32> = self
            .probes
            .iter()
            .filter(|(_, p)| p.deadline_ms <= now_ms)
            .map(|(&t, _)| t)
            .collect();
        for target in due {
            self.probes.remove(&target);
            self.stats.probes_unanswered += 1;
            let p = self.peers.entry(target).or_default();
            p.probe_misses += 1;
            let misses = p.probe_misses;
            self.unreachable.remove(&target);
            self.judge(target, misses);
        }
    }

    /// Judges `peer` after `misses` confirmed misses in a row: suspect at
    /// the first, failed at `failure_threshold`.
    pub(super) fn judge(&mut self, peer: u32, misses: u32) {
        let state = if misses >= self.cfg.failure_threshold {
            State::Failed
        } else {
            State::Suspect
        };
        if self.view.judge(peer, state) && state == State::Failed {
            self.stats.members_failed += 1;
        }
        // Also when the view did not change: `peer` may have left the
        // unreachable set.
        self.update_mode();
    }

    /// `helper` reached `target` for us: it is up, so nothing confirmed
    /// counts against it. If we have missed it `failure_threshold` times in
    /// a row meanwhile, we cannot reach it ourselves: route around it.
    fn reached(&mut self, helper: u32, target: u32) {
        if !self
            .probes
            .get(&target)
            .is_some_and(|p| p.helpers.contains(&helper))
        {
            return;
        }
        self.probes.remove(&target);
        let threshold = self.cfg.failure_threshold;
        let p = self.peers.entry(target).or_default();
        p.probe_misses = 0;
        if p.failures >= threshold && self.unreachable.insert(target) {
            log::warn!(
                "ring position {target} answers others but not us: routing around it until it answers"
            );
            self.update_mode();
        }
    }

    /// The members we route around, bar those in `failed`.
    pub(super) fn routed_around(&self, failed: &[u32]) -> Vec<u32> {
        self.unreachable
            .iter()
            .copied()
            .filter(|p| !failed.contains(p))
            .collect()
    }

    /// `peer` answered a request of ours: whatever was pending against it
    /// is void.
    pub(super) fn answered(&mut self, peer: u32) {
        self.probes.remove(&peer);
        let p = self.peers.entry(peer).or_default();
        p.failures = 0;
        p.probe_misses = 0;
        if self.unreachable.remove(&peer) {
            self.update_mode();
        }
    }

    /// These members refuted a rumour of their failure: they are up, and
    /// the misses we counted against them must not suspect them again at
    /// the next one.
    pub(super) fn revived(&mut self, members: &[u32]) {
        for m in members {
            if let Some(p) = self.peers.get_mut(m) {
                p.failures = 0;
                p.probe_misses = 0;
            }
        }
    }

    /// Serves the probe messages: a [`Body::ProbeReq`] starts a push-pull
    /// with the target on `from`'s behalf (which also brings the target
    /// what we hold, so that data reaches a member its ring predecessor
    /// cannot reach); a [`Body::Reached`] ends our probe.
    pub(super) fn serve_probe(&mut self, from: u32, body: Body) -> Option<Body> {
        match body {
            Body::ProbeReq { target } => {
                if target >= self.cfg.n || target == self.cfg.me || target == from {
                    return None;
                }
                let ex = self.new_exchange(target, PushKind::PushPull);
                if let Some(x) = self.exchanges.get_mut(&ex) {
                    x.prober = Some(from);
                    x.on_behalf = true;
                }
                self.start(ex);
            }
            Body::Reached { target } => self.reached(from, target),
            _ => return None,
        }
        Some(Body::Ack {
            digest: self.digest(),
        })
    }

    /// The first request of an exchange run for a prober ended: if the
    /// target answered at all, even with a refusal, it is up, and the
    /// prober hears so.
    pub(super) fn tell_prober(&mut self, ex: u64, target: u32, answered: bool) {
        let Some(prober) = self.exchanges.get_mut(&ex).and_then(|x| x.prober.take()) else {
            return;
        };
        if answered {
            let ex = self.new_exchange(prober, PushKind::Probe);
            self.send(ex, prober, Body::Reached { target }, Awaiting::Probe);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::fixture::{body, config, from_peer, node, transmits, TestStore};
    use super::super::{Mode, Node, Transmit};
    use super::*;
    use crate::core::message::Digest;
    use crate::core::schedule::Schedule;

    /// Node 0 of 8 misses its cycle push to 1; returns its probe's asks.
    fn missed_successor() -> (Node<TestStore>, Vec<Transmit>) {
        let mut n0 = node(config(8, 0, Schedule::Successor));
        n0.handle_timeout(1000);
        let push = transmits(&mut n0);
        n0.handle_failure(push[0].id);
        let asks = transmits(&mut n0);
        (n0, asks)
    }

    fn ack() -> Body {
        Body::Ack {
            digest: Digest::default(),
        }
    }

    #[test]
    fn a_miss_asks_others_and_suspects_no_one_yet() {
        let (n0, asks) = missed_successor();
        assert_eq!(asks.len() as u32, PROBE_HELPERS);
        for t in &asks {
            assert_eq!(body(&t.payload), Body::ProbeReq { target: 1 });
            assert!(t.to != 0 && t.to != 1);
        }
        assert_eq!(n0.view().get(1).state, State::Alive);
        assert!(n0.digest().news.is_empty(), "no rumour to refute");
    }

    #[test]
    fn a_word_from_a_helper_keeps_the_member_unsuspected() {
        let (mut n0, asks) = missed_successor();
        let helper = asks[0].to;
        // A stranger's word does not count; the helper's does.
        let stranger = (2..8)
            .find(|p| asks.iter().all(|t| t.to != *p))
            .unwrap_or(7);
        n0.handle_request(1100, &from_peer(stranger, Body::Reached { target: 1 }));
        assert!(n0.probes.contains_key(&1));
        let reply = n0.handle_request(1100, &from_peer(helper, Body::Reached { target: 1 }));
        assert!(matches!(body(&reply), Body::Ack { .. }));
        n0.handle_timeout(2000);
        assert_eq!(n0.view().get(1).state, State::Alive);
        assert_eq!(n0.peers()[1].probe_misses, 0);
        assert_eq!(n0.stats().probes_unanswered, 0);
    }

    #[test]
    fn unanswered_probes_suspect_then_fail_and_a_refutation_clears_the_count() {
        let (mut n0, _) = missed_successor();
        n0.handle_timeout(2000);
        assert_eq!(n0.view().get(1).state, State::Suspect);
        assert_eq!(n0.peers()[1].probe_misses, 1);
        // The member heard the rumour and refuted it: what we counted is
        // history, and the next miss starts from nothing.
        let news = Digest {
            news: vec![(1, 1, State::Alive)],
            ..Digest::default()
        };
        n0.hear(&news);
        assert_eq!(n0.view().get(1).state, State::Alive);
        assert_eq!(n0.peers()[1].probe_misses, 0);
        assert_eq!(n0.peers()[1].failures, 0);
        for c in 2..=5u64 {
            for t in transmits(&mut n0) {
                n0.handle_failure(t.id);
            }
            n0.handle_timeout(c * 1000 + 500);
        }
        assert!(n0.view().is_failed(1));
        assert_eq!(n0.stats().members_failed, 1);
    }

    #[test]
    fn a_member_others_reach_but_we_cannot_is_routed_around_not_failed() {
        let mut n0 = node(config(8, 0, Schedule::Successor));
        for c in 1..=3u64 {
            assert_eq!(n0.mode().0, Mode::Ring);
            n0.handle_timeout(c * 1000);
            for t in transmits(&mut n0) {
                if t.to == 1 {
                    n0.handle_failure(t.id);
                }
            }
            let asks = transmits(&mut n0);
            n0.handle_request(
                c * 1000 + 100,
                &from_peer(asks[0].to, Body::Reached { target: 1 }),
            );
        }
        assert_eq!(n0.mode().0, Mode::Fallback);
        assert!(n0.mode().2.contains("answer others but not this node"));
        assert_eq!(n0.view().get(1).state, State::Alive);
        assert!(n0.digest().news.is_empty());
        // Each cycle it is tried directly; its answer brings the ring back.
        n0.handle_timeout(4000);
        let direct: Vec<Transmit> = transmits(&mut n0)
            .into_iter()
            .filter(|t| t.to == 1)
            .collect();
        assert_eq!(direct.len(), 1);
        let synack = Body::SynAck {
            digest: Digest::default(),
            entries: Vec::new(),
            complete: true,
        };
        n0.handle_reply(4100, direct[0].id, &from_peer(1, synack));
        assert_eq!(n0.mode().0, Mode::Ring);
    }

    #[test]
    fn a_helper_tells_the_prober_only_if_the_target_answered() {
        for answered in [true, false] {
            let mut n2 = node(config(8, 2, Schedule::Successor));
            let reply = n2.handle_request(1000, &from_peer(0, Body::ProbeReq { target: 1 }));
            assert!(matches!(body(&reply), Body::Ack { .. }));
            let syn = transmits(&mut n2);
            assert_eq!(syn.len(), 1);
            assert_eq!(syn[0].to, 1);
            assert!(matches!(body(&syn[0].payload), Body::Syn { .. }));
            if answered {
                let refused = Body::Refused {
                    reason: crate::core::message::Refusal::StoreFailed,
                    digest: None,
                };
                n2.handle_reply(1010, syn[0].id, &from_peer(1, refused));
                let word = transmits(&mut n2);
                assert_eq!(word.len(), 1);
                assert_eq!(word[0].to, 0);
                assert_eq!(body(&word[0].payload), Body::Reached { target: 1 });
                n2.handle_reply(1020, word[0].id, &from_peer(0, ack()));
            } else {
                n2.handle_failure(syn[0].id);
                assert!(
                    transmits(&mut n2).is_empty(),
                    "no word, and no probe of ours"
                );
                assert_eq!(n2.peers()[1].failures, 0, "a miss for another is not ours");
            }
        }
        let mut n2 = node(config(8, 2, Schedule::Successor));
        for target in [2, 0, 8] {
            let reply = n2.handle_request(1000, &from_peer(0, Body::ProbeReq { target }));
            assert!(matches!(body(&reply), Body::Refused { .. }), "{target}");
        }
    }

    #[test]
    fn a_change_of_mode_keeps_the_relay_queues_of_live_members() {
        let mut cfg = config(8, 0, Schedule::Doubling);
        cfg.relay = true;
        let mut n0 = node(cfg);
        n0.write(10, "a", Some(b"1".to_vec())).expect("write");
        // Relays to 1, 2 and 4 are in flight; a second write waits behind.
        let first = transmits(&mut n0);
        assert_eq!(first.len(), 3);
        n0.write(11, "b", Some(b"1".to_vec())).expect("write");
        n0.view.judge(4, State::Failed);
        n0.update_mode();
        assert_eq!(n0.mode().0, Mode::Fallback);
        let mut kept: Vec<u32> = n0.eager.keys().copied().collect();
        kept.sort_unstable();
        assert_eq!(kept, vec![1, 2], "only the failed member's queue went");
        // Node 1 acknowledges: "b" follows at once, as before the switch.
        let to1 = first.iter().find(|t| t.to == 1).expect("a relay to 1");
        n0.handle_reply(12, to1.id, &from_peer(1, ack()));
        let next = transmits(&mut n0);
        assert!(next.iter().any(|t| t.to == 1
            && super::super::fixture::pushed_keys(&t.payload) == Some(vec!["b".to_string()])));
    }
}
