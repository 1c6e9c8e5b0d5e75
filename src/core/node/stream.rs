//! A delta streamed to one peer within an exchange: a cursor per origin
//! on our side, up to [`WINDOW`] batches in flight, and each lost batch
//! sent again from its own record, so nothing goes twice unless lost.

use std::collections::{BTreeMap, HashMap};

use super::stream_keys::{by_key, KeyRange, KeyWalk};
use super::Node;
use crate::core::entry::{Entry, Origin, Version};
use crate::core::message::{Digest, PushKind};
use crate::core::store::{Store, StoreError};

/// Batches of one stream in flight at most: enough to keep both sides
/// busy (the sender reads and encodes the next batch while the receiver
/// merges the last), few enough that the last in line is still answered
/// within a peer timeout while the receiver commits the ones before it.
pub(super) const WINDOW: usize = 4;

/// Failures in a row (misses or refusals, one per round of sending) after
/// which a stream stops: a peer that is gone is not fed for ever, and
/// what it lacks is left to the next exchange and the tree comparison.
pub(super) const STREAM_TRIES: u32 = 3;

/// Entries of one origin to read: those above `after`, up to `upto` if
/// set (a lost batch's run), else all (the cursor).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Run {
    pub(super) origin: Origin,
    pub(super) after: Version,
    pub(super) upto: Option<Version>,
}

/// What one read of runs took.
#[derive(Debug, Default)]
pub(super) struct Read {
    pub(super) entries: Vec<Entry>,
    /// Per run read, in order: the last version taken, and whether the run
    /// has nothing more to give now.
    pub(super) reached: Vec<(Option<Version>, bool)>,
    /// The batch limits cut it: more may follow.
    pub(super) cut: bool,
    /// Entries still travelling the schedule's path were left out.
    pub(super) left_out: bool,
}

/// A batch of a stream in flight.
#[derive(Debug, Clone)]
struct Sent {
    /// What it carries, per origin: sent again from here if it is lost.
    runs: Vec<Run>,
    /// What it carries in key order, the same way.
    ranges: Vec<KeyRange>,
    bytes: usize,
    /// The stream's failures counted when it left: only the first loss of
    /// a round of sending counts (see [`Stream::failed`]).
    round: u64,
}

/// A delta streamed to the peer of an exchange.
#[derive(Debug, Clone)]
pub(super) struct Stream {
    /// The kind its pushes go as.
    kind: PushKind,
    /// Filter by the dissemination window (ring cycle and repair pushes).
    windowed: bool,
    /// Per origin, the last version sent: the next batch starts above it.
    cursor: BTreeMap<Origin, Version>,
    /// The receiver's hints from its latest digest: where an origin we
    /// have not sent of yet starts.
    theirs: BTreeMap<Origin, Version>,
    /// Batches in flight, by request id.
    batches: HashMap<u64, Sent>,
    /// Runs of lost batches, to send before anything above the cursor.
    redo: Vec<Run>,
    /// Batches allowed in flight now: halved by a loss, grown by an
    /// answer, up to [`WINDOW`].
    window: usize,
    /// Failures counted, and how many of them in a row since an answer.
    rounds: u64,
    in_a_row: u32,
    /// Given up after [`STREAM_TRIES`] failures in a row.
    abandoned: bool,
    /// Some batch went; one went saying `complete`.
    sent: bool,
    said_complete: bool,
    /// The last read found entries still on their path.
    left_out: bool,
    /// Set when the stream walks our keys in order (`stream_keys.rs`)
    /// instead of each origin's versions.
    keys: Option<KeyWalk>,
}

impl Stream {
    /// `walk`: set to stream in key order, from where it starts.
    fn new(kind: PushKind, theirs: &BTreeMap<Origin, Version>, walk: Option<KeyWalk>) -> Self {
        Stream {
            kind,
            windowed: false,
            cursor: BTreeMap::new(),
            theirs: theirs.clone(),
            batches: HashMap::new(),
            redo: Vec::new(),
            window: WINDOW,
            rounds: 0,
            in_a_row: 0,
            abandoned: false,
            sent: false,
            said_complete: false,
            left_out: false,
            keys: walk,
        }
    }

    /// Bytes of entries in flight.
    fn bytes(&self) -> usize {
        self.batches.values().map(|b| b.bytes).sum()
    }

    /// Takes in the receiver's hints from a digest of its: each only
    /// raises what we know it has seen, since answers may come out of
    /// order.
    fn heard(&mut self, theirs: &BTreeMap<Origin, Version>) {
        for (&o, &v) in theirs {
            let t = self.theirs.entry(o).or_insert(v);
            *t = (*t).max(v);
        }
    }

    /// What to read next: lost runs first, then each origin of `ours`
    /// (our hints) above the cursor, or above the receiver's hint where
    /// nothing of it was sent yet. Once under way, an origin follows the
    /// cursor alone: the receiver's hint may leap past entries still to
    /// come (a tree comparison's fetch, a relay, a later batch of ours
    /// taken first), and following it would leave them out as holes.
    fn runs(&self, ours: &BTreeMap<Origin, Version>) -> Vec<Run> {
        let mut out = self.redo.clone();
        for (&origin, &mine) in ours {
            let after = self
                .cursor
                .get(&origin)
                .or_else(|| self.theirs.get(&origin))
                .copied()
                .unwrap_or(Version::zero(origin));
            if mine > after {
                out.push(Run {
                    origin,
                    after,
                    upto: None,
                });
            }
        }
        out
    }

    /// Moves past what `read` took of `runs`; returns the runs the batch
    /// carries.
    fn advance(&mut self, runs: &[Run], read: &Read) -> Vec<Run> {
        let mut carried = Vec::new();
        let mut redo = Vec::new();
        for (i, run) in runs.iter().enumerate() {
            let Some(&(last, done)) = read.reached.get(i) else {
                // Not reached: a lost run stays as it was.
                if run.upto.is_some() {
                    redo.push(*run);
                }
                continue;
            };
            if let Some(last) = last {
                carried.push(Run {
                    upto: Some(last),
                    ..*run
                });
                if run.upto.is_none() {
                    self.cursor.insert(run.origin, last);
                }
            }
            if run.upto.is_some() && !done {
                redo.push(Run {
                    after: last.unwrap_or(run.after),
                    ..*run
                });
            }
        }
        self.redo = redo;
        self.left_out = read.left_out;
        carried
    }

    /// A batch of ours ended unanswered: its runs go again. Returns true
    /// if this is the first loss of its round of sending, which counts
    /// once against the peer and the stream's tries: the batches that
    /// left together are lost together when the peer is gone.
    fn failed(&mut self, sent: Sent) -> bool {
        self.redo.extend(sent.runs);
        if let Some(k) = self.keys.as_mut() {
            k.lost(sent.ranges);
        }
        self.window = (self.window / 2).max(1);
        if sent.round != self.rounds {
            return false;
        }
        self.rounds += 1;
        self.in_a_row += 1;
        if self.in_a_row >= STREAM_TRIES {
            self.abandoned = true;
            // A key-order walk keeps its lost ranges: the next stream to
            // the peer resumes it (`Stream::unfinished`).
            self.redo.clear();
        }
        true
    }

    /// Where a key-order walk stopped, if it did not reach its end.
    pub(super) fn unfinished(self) -> Option<KeyWalk> {
        self.keys.filter(|k| !k.drained())
    }

    fn answered(&mut self) {
        self.in_a_row = 0;
        self.window = (self.window + 1).min(WINDOW);
    }
}

/// Where a stream stands after a reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Flow {
    /// Batches are in flight: their answers carry the exchange on.
    Sending,
    /// It ended without the receiver showing all it was sent (it held
    /// some back as from the future, or a loss was given up on): nothing
    /// more in this exchange, the next one offers it again.
    Short,
    /// It ended, and the receiver's hints show all it was sent.
    Done,
}

impl<S: Store> Node<S> {
    /// Reads `runs` in order into one batch, within the batch limits, each
    /// run in version order. With `window_at` = Some(cycle), a run stops at
    /// its first entry still travelling the schedule's path (versions, and
    /// so birth cycles, rise along a run).
    pub(super) fn read_runs(
        &self,
        runs: &[Run],
        window_at: Option<u64>,
    ) -> Result<Read, StoreError> {
        let mut read = Read::default();
        let mut bytes = 0usize;
        let w = self.window();
        for run in runs {
            let (mut after, mut last, mut done) = (run.after, None, false);
            'run: while !done {
                if self.cfg.batch_full(read.entries.len(), bytes) {
                    read.cut = true;
                    break;
                }
                let want = (self.cfg.batch_entries - read.entries.len()).min(1024);
                let chunk = self.store.by_origin(run.origin, after, want)?;
                done = chunk.len() < want;
                for e in chunk {
                    if run.upto.is_some_and(|u| e.version > u) {
                        done = true;
                        break 'run;
                    }
                    if self.cfg.batch_full(read.entries.len(), bytes) {
                        read.cut = true;
                        break 'run;
                    }
                    if window_at.is_some_and(|c| self.birth_cycle(&e.version) + w > c) {
                        read.left_out = true;
                        done = true;
                        break 'run;
                    }
                    after = e.version;
                    last = Some(e.version);
                    bytes += e.wire_len();
                    read.entries.push(e);
                }
            }
            read.reached.push((last, done));
            if read.cut {
                break;
            }
        }
        Ok(read)
    }

    /// Carries exchange `ex`'s stream to `peer` on after a reply whose
    /// digest has `theirs` (starting it at the first): sends batches while
    /// the window has room. Its pushes go as `kind`; `window_at` as in
    /// [`Node::lacking`].
    pub(super) fn stream(
        &mut self,
        ex: u64,
        peer: u32,
        kind: PushKind,
        digest: &Digest,
        window_at: Option<u64>,
    ) -> Result<Flow, StoreError> {
        let (theirs, resyncing) = (&digest.hints, digest.resyncing);
        let Some(x) = self.exchanges.get_mut(&ex) else {
            return Ok(Flow::Done);
        };
        if x.stream.is_none() {
            let sparse = by_key(
                digest.keys.saturating_add(digest.tombstones),
                self.keys + self.tombstones,
                self.cfg.batch_entries,
            );
            // A key-order walk to this peer that stopped short resumes
            // where it stopped, unless the peer has since lost all (no
            // hints: wiped) or no longer holds little.
            let resumed = self
                .key_walks
                .remove(&peer)
                .filter(|_| sparse && !theirs.is_empty());
            let walk = sparse.then(|| resumed.unwrap_or_else(|| KeyWalk::new(theirs)));
            x.stream = Some(Stream::new(kind, theirs, walk));
        }
        let Some(s) = x.stream.as_mut() else {
            return Ok(Flow::Done);
        };
        s.heard(theirs);
        s.kind = kind;
        s.windowed = window_at.is_some();
        self.pump(ex, peer)?;
        let Some(s) = self.exchanges.get(&ex).and_then(|x| x.stream.as_ref()) else {
            return Ok(Flow::Done);
        };
        if !s.batches.is_empty() {
            return Ok(Flow::Sending);
        }
        let shown = s
            .cursor
            .iter()
            .all(|(o, v)| s.theirs.get(o).is_some_and(|t| t >= v))
            && s.keys
                .as_ref()
                .is_none_or(|k| k.drained() && k.shown(&s.theirs));
        if s.abandoned || !shown {
            return Ok(Flow::Short);
        }
        // A resync ends with a batch that says `complete` (the receiver
        // then takes our collection floors). With several in flight, the
        // last to leave did not say so; now all are answered and shown.
        if resyncing && s.sent && !s.said_complete && !s.left_out {
            let id = self.send_push(ex, peer, kind, Vec::new(), true);
            if let Some(s) = self.exchanges.get_mut(&ex).and_then(|x| x.stream.as_mut()) {
                s.said_complete = true;
                s.batches.insert(
                    id,
                    Sent {
                        runs: Vec::new(),
                        ranges: Vec::new(),
                        bytes: 0,
                        round: s.rounds,
                    },
                );
            }
            return Ok(Flow::Sending);
        }
        Ok(Flow::Done)
    }

    /// Sends exchange `ex`'s next batches to `peer` while its stream has
    /// room: [`Stream::window`] batches and as many times the batch bytes.
    fn pump(&mut self, ex: u64, peer: u32) -> Result<(), StoreError> {
        let cap = WINDOW * self.cfg.batch_bytes;
        loop {
            let Some(s) = self.exchanges.get(&ex).and_then(|x| x.stream.as_ref()) else {
                return Ok(());
            };
            if s.abandoned || s.batches.len() >= s.window || s.bytes() >= cap {
                return Ok(());
            }
            let kind = s.kind;
            let in_key_order = s.keys.is_some();
            let (entries, runs, ranges, rest) = if let Some(mut walk) = s.keys.clone() {
                // In key order (`stream_keys.rs`), filtered by the
                // receiver's hints as the stream began, not windowed.
                let read = self.read_keys(&mut walk)?;
                let rest = read.cut || !walk.drained();
                let Some(s) = self.exchanges.get_mut(&ex).and_then(|x| x.stream.as_mut()) else {
                    return Ok(());
                };
                s.keys = Some(walk);
                (read.entries, Vec::new(), read.carried, rest)
            } else {
                let runs = s.runs(&self.hints);
                let read = self.read_runs(&runs, self.cycle.filter(|_| s.windowed))?;
                let Some(s) = self.exchanges.get_mut(&ex).and_then(|x| x.stream.as_mut()) else {
                    return Ok(());
                };
                let carried = s.advance(&runs, &read);
                let rest = read.cut || read.left_out || !s.redo.is_empty();
                (read.entries, carried, Vec::new(), rest)
            };
            let Some(s) = self.exchanges.get_mut(&ex).and_then(|x| x.stream.as_mut()) else {
                return Ok(());
            };
            if entries.is_empty() {
                return Ok(());
            }
            // Only the one batch in flight that leaves nothing behind says
            // it is all: with others in flight, it may arrive first.
            let complete = !rest && s.batches.is_empty();
            s.sent = true;
            s.said_complete |= complete;
            let sent = Sent {
                runs,
                ranges,
                bytes: entries.iter().map(Entry::wire_len).sum(),
                round: s.rounds,
            };
            if in_key_order {
                self.stats.key_order_batches += 1;
            }
            let id = self.send_push(ex, peer, kind, entries, complete);
            if let Some(s) = self.exchanges.get_mut(&ex).and_then(|x| x.stream.as_mut()) {
                s.batches.insert(id, sent);
            }
        }
    }

    /// Whether request `id` is a batch in flight of exchange `ex`'s stream.
    pub(super) fn is_batch(&self, ex: u64, id: u64) -> bool {
        self.exchanges
            .get(&ex)
            .and_then(|x| x.stream.as_ref())
            .is_some_and(|s| s.batches.contains_key(&id))
    }

    /// Request `id` of exchange `ex` ended: if it was a batch of the
    /// exchange's stream, takes it out of flight. Returns None for any
    /// other request; else whether a loss counts against the peer.
    pub(super) fn settle_batch(&mut self, ex: u64, id: u64, answered: bool) -> Option<bool> {
        let s = self.exchanges.get_mut(&ex)?.stream.as_mut()?;
        let sent = s.batches.remove(&id)?;
        if answered {
            s.answered();
            return Some(true);
        }
        if !sent.runs.is_empty() || !sent.ranges.is_empty() {
            self.stats.batches_lost += 1;
        }
        Some(s.failed(sent))
    }

    /// After a batch of exchange `ex`'s stream was lost: sends its runs
    /// again (and what else fits the window now), unless given up.
    pub(super) fn resume_stream(&mut self, ex: u64, peer: u32) {
        if let Err(e) = self.pump(ex, peer) {
            log::warn!(
                "reading the delta for peer {} failed: {e}",
                self.cfg.name_at(peer)
            );
            self.mark_failed(ex);
        }
    }
}

#[cfg(test)]
#[path = "stream_tests.rs"]
mod tests;
