//! Who is alive: each node's view of every ring member, with incarnation
//! numbers as in SWIM (Das et al. 2002), spread on every message.
//!
//! News about member m is `(incarnation, state)`. Higher incarnations win;
//! at equal incarnations the worse state wins (alive < suspect < failed).
//! Only m itself raises its incarnation, which is how it refutes a rumour of
//! its failure: a stale rumour can never override newer news.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::rng::Rng;

/// What a node believes of a member.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum State {
    /// Answering.
    Alive,
    /// Missed a request; still in the ring.
    Suspect,
    /// Missed `failure_threshold` requests in a row: out of the ring until
    /// it refutes with a higher incarnation.
    Failed,
}

impl State {
    /// Lowercase name for status pages and logs.
    pub fn name(self) -> &'static str {
        match self {
            State::Alive => "alive",
            State::Suspect => "suspect",
            State::Failed => "failed",
        }
    }
}

/// One member as seen by one node.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// Raised only by the member itself, to refute rumours of its failure.
    pub incarnation: u64,
    /// What is believed of it.
    pub state: State,
}

/// News about one member, as carried on the wire.
pub type News = (u32, u64, State);

/// One node's view of the whole ring. Only members with news are stored
/// (not alive, or incarnation above 0): a view of a healthy 10,000-node ring
/// costs nothing.
#[derive(Clone, Debug)]
pub struct View {
    n: u32,
    me: u32,
    members: BTreeMap<u32, Member>,
    /// The cycle each member's entry last changed, or was last contradicted
    /// by a stale rumour: news of a live member is spread for
    /// [`NEWS_CYCLES`] after that, then dropped from digests.
    changed: BTreeMap<u32, u64>,
    now: u64,
}

/// Cycles that news of a member's return keeps being spread. Push-pull
/// gossip reaches all of N nodes in about log3 N + O(log log N) cycles
/// (Karp et al. 2000): 16 covers far beyond any ring we run. A node that
/// still missed it is set right when it next repeats the stale rumour.
pub const NEWS_CYCLES: u64 = 16;

/// What merging news did to the view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// Nothing.
    None,
    /// Some member's state changed.
    Changed,
    /// A rumour said we had failed: we raised our incarnation to refute it.
    Refuted,
}

const ALIVE: Member = Member {
    incarnation: 0,
    state: State::Alive,
};

impl View {
    /// A view of `n` members, all alive, ours at `incarnation`.
    pub fn new(n: u32, me: u32, incarnation: u64) -> Self {
        let mut v = View {
            n,
            me,
            members: BTreeMap::new(),
            changed: BTreeMap::new(),
            now: 0,
        };
        v.set(
            me,
            Member {
                incarnation,
                state: State::Alive,
            },
        );
        v
    }

    /// The current cycle, for the age of news.
    pub fn tick(&mut self, cycle: u64) {
        if self.now == 0 {
            // The first cycle: what changed before it changed now.
            for at in self.changed.values_mut() {
                *at = cycle;
            }
        }
        self.now = cycle;
        let now = self.now;
        self.changed
            .retain(|_, &mut at| now.saturating_sub(at) <= NEWS_CYCLES);
    }

    fn set(&mut self, pos: u32, m: Member) {
        self.changed.insert(pos, self.now);
        if m == ALIVE {
            self.members.remove(&pos);
        } else {
            self.members.insert(pos, m);
        }
    }

    /// The member at ring position `pos`.
    pub fn get(&self, pos: u32) -> Member {
        self.members.get(&pos).copied().unwrap_or(ALIVE)
    }

    /// Our own incarnation.
    pub fn incarnation(&self) -> u64 {
        self.get(self.me).incarnation
    }

    /// True when `pos` is believed failed.
    pub fn is_failed(&self, pos: u32) -> bool {
        self.get(pos).state == State::Failed
    }

    /// Ring positions not failed, in ring order. O(N): for status pages and
    /// small rings; peer choice uses [`View::random_live`].
    pub fn live(&self) -> Vec<u32> {
        (0..self.n).filter(|&p| !self.is_failed(p)).collect()
    }

    /// Ring positions failed, in ring order.
    pub fn failed(&self) -> Vec<u32> {
        self.members
            .iter()
            .filter(|(_, m)| m.state == State::Failed)
            .map(|(&p, _)| p)
            .collect()
    }

    /// A uniformly random live member other than us, if any.
    pub fn random_live(&self, rng: &mut Rng) -> Option<u32> {
        // Rejection sampling is O(1) while most members live; after 32
        // misses, pick exactly from the list.
        for _ in 0..32 {
            let p = rng.below(u64::from(self.n)) as u32;
            if p != self.me && !self.is_failed(p) {
                return Some(p);
            }
        }
        let live: Vec<u32> = self.live().into_iter().filter(|&p| p != self.me).collect();
        if live.is_empty() {
            None
        } else {
            Some(live[rng.below(live.len() as u64) as usize])
        }
    }

    /// The news worth sending: every member not alive, and members alive
    /// again whose news is younger than [`NEWS_CYCLES`]. A healthy cluster
    /// sends none.
    pub fn news(&self) -> Vec<News> {
        self.members
            .iter()
            .filter(|(p, m)| m.state != State::Alive || self.changed.contains_key(p))
            .map(|(&p, m)| (p, m.incarnation, m.state))
            .collect()
    }

    /// Our own judgement of `pos`, from a request it did not answer.
    pub fn judge(&mut self, pos: u32, state: State) -> bool {
        if pos == self.me || pos >= self.n {
            return false;
        }
        let m = self.get(pos);
        if m.state >= state {
            return false;
        }
        self.set(
            pos,
            Member {
                incarnation: m.incarnation,
                state,
            },
        );
        true
    }

    /// Merges news from a peer.
    pub fn merge(&mut self, news: &[News]) -> Change {
        self.merge_noting(news, &mut Vec::new())
    }

    /// [`View::merge`], adding to `revived` each other member the news
    /// shows alive at a higher incarnation than we knew: it refuted, so it
    /// is up, and whatever we counted against it is history.
    pub fn merge_noting(&mut self, news: &[News], revived: &mut Vec<u32>) -> Change {
        let mut change = Change::None;
        for &(pos, inc, state) in news {
            if pos >= self.n {
                continue;
            }
            let m = self.get(pos);
            if inc < m.incarnation && state != State::Alive {
                // A stale rumour: spread what we know again, for a while.
                self.changed.insert(pos, self.now);
            }
            if pos == self.me {
                if state != State::Alive && inc >= m.incarnation {
                    self.set(
                        pos,
                        Member {
                            incarnation: inc + 1,
                            state: State::Alive,
                        },
                    );
                    change = Change::Refuted;
                }
                continue;
            }
            if inc > m.incarnation && state == State::Alive {
                revived.push(pos);
            }
            if inc > m.incarnation || (inc == m.incarnation && state > m.state) {
                self.set(
                    pos,
                    Member {
                        incarnation: inc,
                        state,
                    },
                );
                if m.state != state && change == Change::None {
                    change = Change::Changed;
                }
            }
        }
        change
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newer_incarnation_wins_and_stale_rumours_do_not() {
        let mut v = View::new(3, 0, 0);
        assert_eq!(v.merge(&[(1, 0, State::Failed)]), Change::Changed);
        assert_eq!(v.live(), vec![0, 2]);
        // The member refuted: alive at incarnation 1.
        assert_eq!(v.merge(&[(1, 1, State::Alive)]), Change::Changed);
        assert_eq!(v.live(), vec![0, 1, 2]);
        // An old rumour of its failure changes nothing.
        assert_eq!(v.merge(&[(1, 0, State::Failed)]), Change::None);
        assert_eq!(v.get(1).state, State::Alive);
    }

    #[test]
    fn a_refutation_is_noted_as_a_revival() {
        let mut v = View::new(3, 0, 0);
        let mut revived = Vec::new();
        v.merge_noting(&[(1, 0, State::Suspect)], &mut revived);
        assert!(revived.is_empty());
        v.merge_noting(&[(1, 1, State::Alive), (2, 0, State::Alive)], &mut revived);
        assert_eq!(revived, vec![1], "only news newer than ours");
    }

    #[test]
    fn a_rumour_of_our_failure_raises_our_incarnation() {
        let mut v = View::new(3, 2, 4);
        assert_eq!(v.merge(&[(2, 4, State::Suspect)]), Change::Refuted);
        assert_eq!(v.incarnation(), 5);
        assert_eq!(v.merge(&[(2, 3, State::Failed)]), Change::None);
        assert_eq!(v.news(), vec![(2, 5, State::Alive)]);
    }
}
