//! One write at each node of a [`ProcCluster`], followed until every node
//! serves all of them: the cycles each write took, and what the nodes sent
//! meanwhile. The process tests' bounds and the benchmark's real-process
//! table measure this.
//!
//! Cycles are counted as the nodes count them: a node is in cycle
//! `floor(unix ms / interval)` by the clock this process reads too, and an
//! entry that reaches it in cycle `c` is passed on from cycle `c + 1`.
//!
//! - A write's cycle is exact: its version's milliseconds over the
//!   interval, the number the writer itself gave the cycle of the write.
//! - The cycle in which a write reached its last node is not shown by any
//!   node, so it is bracketed from outside: the keys of each node that
//!   lacks a write yet are listed, each list between two looks at the
//!   cycle. A read that finds the write missing shows it was not
//!   everywhere yet, so it arrived no earlier than the cycle that read
//!   began in; the reads that first find it at each node show it
//!   everywhere no later than the cycle the last of them ended in. The two
//!   differ when those reads straddle a boundary. Besides every [`POLL`],
//!   reads begin just after each boundary, all nodes at once: a cycle's pushes land in its
//!   first milliseconds (they start up to interval/20 after the boundary),
//!   and a read in that cycle that still finds a write missing pins its
//!   arrival to that cycle.
//!
//! A bound checked against the bracket's lower end fails only when the
//! write certainly took longer; the upper end says how much looser the
//! observation could have been.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use super::{ProcCluster, POLL};
use crate::service::now_ms;

/// After a boundary, when its reads begin: past the boundary, before most
/// of the cycle's pushes land.
const AFTER_BOUNDARY: Duration = Duration::from_millis(1);

/// One node's keys, read between two looks at the cycle: (node, cycle
/// before, keys, cycle after).
type Read = (usize, u64, Result<BTreeSet<String>, String>, u64);

/// One write, followed.
#[derive(Debug, Clone)]
pub struct Travel {
    /// Its key.
    pub key: String,
    /// The node that took the write.
    pub writer: usize,
    /// The cycle of the write: its version's milliseconds over the interval.
    pub written: u64,
    /// The cycle in which the last node got it: no earlier than `.0`, no
    /// later than `.1` (see the module docs).
    pub arrived: (u64, u64),
}

impl Travel {
    /// Cycles from the write's cycle to the last node's: (at least, at most).
    pub fn cycles(&self) -> (u64, u64) {
        (
            self.arrived.0.saturating_sub(self.written),
            self.arrived.1.saturating_sub(self.written),
        )
    }
}

/// What following one write at each node found.
#[derive(Debug, Clone)]
pub struct Spread {
    /// Each write, in the order of the writers.
    pub travels: Vec<Travel>,
    /// Entries all nodes put into messages, from just before the writes to
    /// two cycles after every node held all of them and the roots agreed
    /// (so that a late duplicate is counted too).
    pub entries: u64,
    /// Bytes all nodes sent over the same span: requests, and replies.
    pub bytes: u64,
    /// Requests all nodes sent over the same span.
    pub requests: u64,
}

impl Spread {
    /// The most cycles any write took: (at least, at most).
    pub fn max_cycles(&self) -> (u64, u64) {
        self.travels
            .iter()
            .map(Travel::cycles)
            .fold((0, 0), |m, c| (m.0.max(c.0), m.1.max(c.1)))
    }

    /// The widest bracket of any write: how many cycles the observation
    /// left open (0 or 1 unless reads stalled for a cycle).
    pub fn widest(&self) -> u64 {
        self.travels
            .iter()
            .map(|t| t.arrived.1.saturating_sub(t.arrived.0))
            .max()
            .unwrap_or(0)
    }

    /// One line per write: "key from nW: 3 cycles" (or "3-4 cycles").
    pub fn describe(&self) -> String {
        let lines: Vec<String> = self
            .travels
            .iter()
            .map(|t| {
                let (lo, hi) = t.cycles();
                let took = if lo == hi {
                    lo.to_string()
                } else {
                    format!("{lo}-{hi}")
                };
                format!("{} from n{}: {took} cycles", t.key, t.writer)
            })
            .collect();
        lines.join(", ")
    }
}

/// The milliseconds of a version in its "ms.counter@origin" form.
pub fn version_ms(version: &str) -> Result<u64, String> {
    version
        .split_once('.')
        .and_then(|(ms, _)| ms.parse().ok())
        .ok_or_else(|| format!("{version:?} is not a version (ms.counter@origin)"))
}

impl ProcCluster {
    /// The cycle this process's clock is in, as the nodes number them.
    pub fn clock_cycle(&self) -> u64 {
        now_ms() / self.interval_ms().max(1)
    }

    /// Sleeps [`POLL`], or until just after the next boundary if that
    /// comes first.
    fn sleep_to_next_round(&self) {
        let interval = self.interval_ms().max(1);
        let now = now_ms();
        let to_boundary = Duration::from_millis((now / interval + 1) * interval - now);
        std::thread::sleep(POLL.min(to_boundary + AFTER_BOUNDARY));
    }

    /// Lists the keys under `prefix` of each of `nodes` at once, so that
    /// the reads just after a boundary all come before the cycle's pushes
    /// as far as they can: per node, the cycle its read began in, what it
    /// found, and the cycle it ended in.
    fn read_keys(&self, nodes: &BTreeSet<usize>, prefix: &str) -> Vec<Read> {
        std::thread::scope(|s| {
            let reads: Vec<_> = nodes
                .iter()
                .map(|&j| {
                    s.spawn(move || {
                        let began = self.clock_cycle();
                        let keys = self.keys(j, prefix);
                        (j, began, keys, self.clock_cycle())
                    })
                })
                .collect();
            reads
                .into_iter()
                .zip(nodes)
                .map(|(r, &j)| {
                    r.join().unwrap_or_else(|_| {
                        let now = self.clock_cycle();
                        (j, now, Err(format!("the read of node {j} panicked")), now)
                    })
                })
                .collect()
        })
    }

    /// Totals over all nodes: (entries sent, bytes sent, requests sent).
    fn sent(&self) -> Result<(u64, u64, u64), String> {
        let mut t = (0, 0, 0);
        for i in 0..self.n() {
            t.0 += self.status_u64(i, "entries_sent")?;
            t.1 += self.status_u64(i, "bytes_sent")?;
            t.2 += self.metric(i, "ringsync_messages_sent_total")? as u64;
        }
        Ok(t)
    }

    /// Writes one key under `prefix` at each node in ring order, and
    /// follows the writes as the module docs say, until every node holds
    /// all of them, the roots agree, and two more cycles have passed. The
    /// ring should be steady first ([`ProcCluster::wait_steady`]): writes
    /// made during the start-up catch-up spread by push-pull, whatever the
    /// schedule.
    pub fn spread_one_write_each(
        &self,
        prefix: &str,
        deadline: Duration,
    ) -> Result<Spread, String> {
        let interval = self.interval_ms().max(1);
        let before = self.sent()?;
        let mut travels = Vec::new();
        for i in 0..self.n() {
            let key = format!("{prefix}{i}");
            let version = self.put(i, &key, format!("written at n{i}").as_bytes())?;
            let written = version_ms(&version)? / interval;
            // A write cannot arrive before its own cycle: until a read
            // misses it, that is the bracket's lower end.
            travels.push(Travel {
                key,
                writer: i,
                written,
                arrived: (written, written),
            });
        }
        // Per write, the nodes not yet seen holding it.
        let mut lacking: Vec<BTreeSet<usize>> = travels
            .iter()
            .map(|t| (0..self.n()).filter(|&i| i != t.writer).collect())
            .collect();
        let started = Instant::now();
        let mut seen: BTreeMap<usize, usize> = BTreeMap::new();
        while lacking.iter().any(|l| !l.is_empty()) {
            if started.elapsed() > deadline {
                return Err(format!(
                    "timed out after {deadline:?} waiting until every node holds every write; \
                     nodes lacking each: {lacking:?}; keys held when last read: {seen:?}"
                ));
            }
            self.sleep_to_next_round();
            let nodes: BTreeSet<usize> = lacking.iter().flatten().copied().collect();
            for (j, began, keys, ended) in self.read_keys(&nodes, prefix) {
                let keys = keys?;
                seen.insert(j, keys.len());
                for (t, l) in travels.iter_mut().zip(&mut lacking) {
                    if !l.contains(&j) {
                        continue;
                    }
                    if keys.contains(&t.key) {
                        l.remove(&j);
                        t.arrived.1 = t.arrived.1.max(ended);
                    } else {
                        t.arrived.0 = t.arrived.0.max(began);
                    }
                }
            }
        }
        let left = deadline.saturating_sub(started.elapsed());
        let agreed = self.wait_one_root(left)?;
        let two_more = (agreed + 2) * interval;
        std::thread::sleep(Duration::from_millis(two_more.saturating_sub(now_ms())));
        let after = self.sent()?;
        Ok(Spread {
            travels,
            entries: after.0.saturating_sub(before.0),
            bytes: after.1.saturating_sub(before.1),
            requests: after.2.saturating_sub(before.2),
        })
    }
}
