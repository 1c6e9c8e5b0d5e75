//! A manual whole-cluster sync in the simulator ([`Scenario::syncs`]), run
//! as the service's `service::sync::run` runs it, against the cores and
//! over the simulated network, in virtual time while cycles go on.
//!
//! The coordinator reads the digests of the nodes of its ring (directly:
//! a node is reachable when it is up and a request from the coordinator
//! to it would get its reply). With every node reachable, all on the
//! coordinator's epoch and the coordinator in ring mode, it runs the
//! schedule's wave ([`sync_wave`]) of `sync_with` hops, one round at a
//! time; then, or instead, rounds of `push_pull_with` hops among the
//! reachable nodes ([`push_pull_round`]) until their roots agree, at most
//! [`MAX_ROUNDS`]. A hop runs on its `from` node, which finds its peer by
//! origin in its own ring (one outside it fails the hop), and ends with
//! the core's `Event::ExchangeDone` for its exchange; a round still
//! waiting at its deadline fails the hops it waits for. Client writes
//! pause while a sync runs.
//!
//! [`Scenario::syncs`]: super::Scenario::syncs

use crate::core::node::Mode;
use crate::core::schedule::{push_pull_round, sync_wave};

use super::scenario::SyncOutcome;
use super::World;

/// Push-pull rounds at most: the topology's default `sync_max_rounds`.
pub const MAX_ROUNDS: u32 = 64;

/// What the sync is at.
enum Phase {
    /// The schedule's wave: its rounds of (from, to) ring positions of the
    /// coordinator's ring, and the next one to run.
    Wave(Vec<Vec<(u32, u32)>>, usize),
    /// Push-pull rounds among the positions reachable at the start.
    PushPull(Vec<u32>),
}

/// A manual sync under way.
pub(super) struct Running {
    coordinator: u32,
    /// The coordinator's ring (node numbers) as the sync began.
    ring: Vec<u32>,
    /// The positions in it reachable as the sync began.
    live: Vec<u32>,
    phase: Phase,
    /// Hops of the round under way still waiting: (node, exchange), and
    /// whether its peer does not know the node.
    waiting: Vec<((u32, u64), bool)>,
    /// When the round under way gives up on them, virtual ms.
    deadline: u64,
    started: u64,
    out: SyncOutcome,
}

impl Running {
    /// When the round under way gives up, if it waits for anything.
    pub(super) fn deadline(&self) -> Option<u64> {
        (!self.waiting.is_empty()).then_some(self.deadline)
    }

    /// Counts the hops among the exchanges `ended` (node, exchange, ok).
    fn take_ends(&mut self, ended: &mut Vec<(u32, u64, bool)>) {
        for (node, ex, ok) in ended.drain(..) {
            if let Some(j) = self.waiting.iter().position(|w| w.0 == (node, ex)) {
                let (_, unknown) = self.waiting.swap_remove(j);
                self.out.failed_hops += u32::from(!ok);
                self.out.peer_unknown += u32::from(!ok && unknown);
            }
        }
    }
}

impl World<'_> {
    /// Begins a manual sync at virtual time `t`, in cycle `k`, coordinated
    /// by `node` (or the lowest-numbered up node if it is down). One under
    /// way already, or no node up: none is begun.
    pub(super) fn begin_sync(&mut self, k: u64, t: u64, node: u32) {
        if self.sync.is_some() {
            return;
        }
        let up = |i: u32| self.down.get(i as usize) == Some(&false);
        let Some(c) = std::iter::once(node)
            .chain(0..self.nodes.len() as u32)
            .find(|&i| up(i))
        else {
            return;
        };
        let cfg = self.nodes[c as usize].config();
        let (ring, epoch, schedule) = (cfg.ring.clone(), cfg.epoch, cfg.schedule);
        let me = cfg.me;
        let live = self.reachable(c, &ring);
        let one_epoch = live
            .iter()
            .all(|&p| self.nodes[ring[p as usize] as usize].config().epoch == epoch);
        let whole =
            live.len() == ring.len() && one_epoch && self.nodes[c as usize].mode().0 == Mode::Ring;
        let mode = match (whole, schedule.is_ring()) {
            (true, true) => schedule.name(),
            (true, false) => "push-pull",
            (false, _) => Mode::Fallback.name(),
        };
        let phase = if whole && schedule.is_ring() {
            Phase::Wave(sync_wave(schedule, ring.len() as u32, me), 0)
        } else {
            Phase::PushPull(live.clone())
        };
        self.hops_done.clear();
        self.sync = Some(Running {
            coordinator: c,
            ring,
            live,
            phase,
            waiting: Vec::new(),
            deadline: t,
            started: t,
            out: SyncOutcome {
                cycle: k,
                coordinator: c,
                mode: mode.to_string(),
                hops: 0,
                failed_hops: 0,
                peer_unknown: 0,
                refused: Default::default(),
                rounds: 0,
                reachable: 0,
                reachable_agree: false,
                duration_ms: 0,
            },
        });
        // Push-pull rounds alone begin only if the nodes are apart.
        let rounds_only = matches!(
            self.sync.as_ref().map(|s| &s.phase),
            Some(Phase::PushPull(_))
        );
        if rounds_only && self.judge() {
            return self.end_sync(t);
        }
        self.next_round(t);
    }

    /// Ring positions of `ring` the coordinator `c` reaches now.
    fn reachable(&self, c: u32, ring: &[u32]) -> Vec<u32> {
        (0u32..)
            .zip(ring)
            .filter(|&(_, &i)| !self.down[i as usize] && (i == c || self.net.answers(c, i)))
            .map(|(p, _)| p)
            .collect()
    }

    /// Reads the reachable nodes' roots into the outcome: true if they
    /// agree.
    fn judge(&mut self) -> bool {
        let Some(s) = self.sync.as_ref() else {
            return false;
        };
        let live = self.reachable(s.coordinator, &s.ring);
        let roots: Vec<u64> = live
            .iter()
            .map(|&p| self.nodes[s.ring[p as usize] as usize].root())
            .collect();
        let agree = !roots.is_empty() && roots.windows(2).all(|w| w[0] == w[1]);
        if let Some(s) = self.sync.as_mut() {
            s.out.reachable = live.len() as u32;
            s.out.reachable_agree = agree;
        }
        agree
    }

    /// Takes the hops ended since, and moves the sync on if its round is
    /// over or overran: called after every delivery, and at the deadline.
    pub(super) fn advance_sync(&mut self, t: u64) {
        let Some(s) = self.sync.as_mut() else {
            return;
        };
        s.take_ends(&mut self.hops_done);
        if s.waiting.is_empty() || t >= s.deadline {
            for (_, unknown) in std::mem::take(&mut s.waiting) {
                s.out.failed_hops += 1;
                s.out.peer_unknown += u32::from(unknown);
            }
            self.next_round(t);
        }
    }

    /// Starts the sync's next round at `t`, or ends it: after a push-pull
    /// round, if the reachable nodes agree. A round that ends at once
    /// (every hop failed to start, or ended without a message) is followed
    /// by the next at once.
    fn next_round(&mut self, t: u64) {
        loop {
            let after_push_pull = self
                .sync
                .as_ref()
                .is_some_and(|s| matches!(s.phase, Phase::PushPull(_)) && s.out.rounds > 0);
            if after_push_pull && self.judge() {
                return self.end_sync(t);
            }
            let Some(s) = self.sync.as_mut() else {
                return;
            };
            let round = match &mut s.phase {
                Phase::Wave(rounds, next) => match rounds.get(*next) {
                    Some(r) => {
                        *next += 1;
                        Some((r.clone(), false))
                    }
                    None => None,
                },
                Phase::PushPull(live) => {
                    let pairs = push_pull_round(live, s.out.rounds as usize);
                    let go = s.out.rounds < MAX_ROUNDS && !pairs.is_empty();
                    s.out.rounds += u32::from(go);
                    go.then_some((pairs, true))
                }
            };
            let Some((pairs, push_pull)) = round else {
                // The wave is over: push-pull rounds follow if the nodes
                // are apart; the rounds are over: the sync ends.
                if matches!(s.phase, Phase::Wave(..)) {
                    let live = s.live.clone();
                    if !self.judge() && live.len() > 1 {
                        if let Some(s) = self.sync.as_mut() {
                            s.out.mode = format!("{}, then push-pull", s.out.mode);
                            s.phase = Phase::PushPull(live);
                        }
                        continue;
                    }
                }
                return self.end_sync(t);
            };
            self.start_hops(t, &pairs, push_pull);
            if self.sync.as_ref().is_some_and(|s| !s.waiting.is_empty()) {
                return;
            }
        }
    }

    /// Starts a round's hops at `t`: each on its `from` node, if the
    /// coordinator reaches it and it finds its peer in its own ring.
    fn start_hops(&mut self, t: u64, pairs: &[(u32, u32)], push_pull: bool) {
        let Some(s) = self.sync.as_ref() else {
            return;
        };
        let (c, ring) = (s.coordinator, s.ring.clone());
        let deadline = t + self.sc.timeout_ms * 20 + 5_000;
        let mut waiting = Vec::new();
        let (mut failed, mut unknown) = (0, 0);
        for &(f, to) in pairs {
            let (from, to) = (ring[f as usize], ring[to as usize]);
            if self.down[from as usize] || from != c && !self.net.answers(c, from) {
                failed += 1;
                continue;
            }
            let node = &mut self.nodes[from as usize];
            let Some(peer) = node.config().position_of(to) else {
                (failed, unknown) = (failed + 1, unknown + 1);
                continue;
            };
            let ex = if push_pull {
                node.push_pull_with(peer)
            } else {
                node.sync_with(peer)
            };
            let unknown = self.nodes[to as usize].config().position_of(from).is_none();
            waiting.push(((from, ex), unknown));
            self.drain(from, t);
        }
        let Some(s) = self.sync.as_mut() else {
            return;
        };
        s.out.hops += pairs.len() as u32;
        s.out.failed_hops += failed;
        s.out.peer_unknown += unknown;
        s.waiting = waiting;
        s.deadline = deadline;
        // Hops that ended without a message.
        s.take_ends(&mut self.hops_done);
    }

    /// Ends the sync at `t`: judges the reachable nodes once more and
    /// keeps its outcome.
    fn end_sync(&mut self, t: u64) {
        self.judge();
        if let Some(mut s) = self.sync.take() {
            s.out.duration_ms = t - s.started;
            self.syncs.push(s.out);
        }
        self.hops_done.clear();
    }

    /// Counts a refusal a node got while the sync runs.
    pub(super) fn sync_refused(&mut self, reason: &'static str) {
        if let Some(s) = self.sync.as_mut() {
            *s.out.refused.entry(reason).or_default() += 1;
        }
    }

    /// Ends a sync still under way when the run ends, judged as it stands.
    pub(super) fn cut_sync(&mut self, t: u64) {
        if self.sync.is_some() {
            self.end_sync(t);
        }
    }
}
