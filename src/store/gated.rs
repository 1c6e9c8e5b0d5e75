//! A store whose commits (or only its syncs) wait at a gate until it is
//! opened, and which counts them: for tests of what a node does while a
//! slow disk commits.

use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::{Merged, Reads, Stamp, Store, StoreError, WriteBatch};
use crate::core::entry::{Entry, Origin, Version};

/// The gate, shared between the store and the test that holds it.
#[derive(Debug, Default)]
pub struct Gate {
    state: Mutex<GateState>,
    changed: Condvar,
}

#[derive(Debug, Default)]
struct GateState {
    closed: bool,
    /// Only [`Store::sync`] waits.
    syncs_closed: bool,
    /// Syncs that have begun.
    syncs: u64,
    /// Commits that have begun, and that have ended.
    begun: u64,
    ended: u64,
}

impl Gate {
    fn state(&self) -> MutexGuard<'_, GateState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// From now on commits wait until [`Gate::open`].
    pub fn close(&self) {
        self.state().closed = true;
    }

    /// From now on syncs (not commits) wait until [`Gate::open`].
    pub fn close_syncs(&self) {
        self.state().syncs_closed = true;
    }

    /// Lets waiting and later commits and syncs through.
    pub fn open(&self) {
        let mut st = self.state();
        st.closed = false;
        st.syncs_closed = false;
        drop(st);
        self.changed.notify_all();
    }

    /// Syncs begun so far (waiting at the gate included).
    pub fn syncs(&self) -> u64 {
        self.state().syncs
    }

    /// Commits begun so far (waiting at the gate included).
    pub fn begun(&self) -> u64 {
        self.state().begun
    }

    /// Commits ended so far, failed ones included.
    pub fn ended(&self) -> u64 {
        self.state().ended
    }

    /// Waits until `n` commits have begun, at most `deadline`; says whether
    /// they had.
    pub fn wait_begun(&self, n: u64, deadline: Duration) -> bool {
        let until = Instant::now() + deadline;
        let mut st = self.state();
        while st.begun < n {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            st = match self.changed.wait_timeout(st, left) {
                Ok((g, _)) => g,
                Err(p) => p.into_inner().0,
            };
        }
        true
    }
}

/// `S` with its commits held at a [`Gate`]. A commit waits at most
/// [`Gated::MAX_WAIT`], so that a test that fails before it opens the gate
/// still ends.
#[derive(Debug)]
pub struct Gated<S> {
    inner: S,
    gate: Arc<Gate>,
}

impl<S> Gated<S> {
    /// Longest a commit waits at a closed gate.
    pub const MAX_WAIT: Duration = Duration::from_secs(30);

    /// `inner`, its commits held at `gate`.
    pub fn new(inner: S, gate: Arc<Gate>) -> Gated<S> {
        Gated { inner, gate }
    }
}

impl<S> Gated<S> {
    /// Counts the call (`count`) and waits while `closed`, at most
    /// [`Gated::MAX_WAIT`].
    fn pass(&self, count: fn(&mut GateState), closed: fn(&GateState) -> bool) {
        let until = Instant::now() + Self::MAX_WAIT;
        let mut st = self.gate.state();
        count(&mut st);
        self.gate.changed.notify_all();
        while closed(&st) {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            st = match self.gate.changed.wait_timeout(st, left) {
                Ok((g, _)) => g,
                Err(p) => p.into_inner().0,
            };
        }
    }
}

impl<S: Store> Store for Gated<S> {
    fn get(&self, key: &str) -> Result<Option<Entry>, StoreError> {
        self.inner.get(key)
    }

    fn commit(&mut self, batch: WriteBatch) -> Result<Vec<Merged>, StoreError> {
        self.pass(|st| st.begun += 1, |st| st.closed);
        let out = self.inner.commit(batch);
        self.gate.state().ended += 1;
        self.gate.changed.notify_all();
        out
    }

    fn set_deferred(&mut self, on: bool) {
        self.inner.set_deferred(on);
    }

    fn sync(&mut self) -> Result<(), StoreError> {
        self.pass(|st| st.syncs += 1, |st| st.syncs_closed);
        self.inner.sync()
    }

    fn range(
        &self,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Entry>, StoreError> {
        self.inner.range(prefix, after, limit)
    }

    fn by_origin(
        &self,
        origin: Origin,
        after: Version,
        limit: usize,
    ) -> Result<Vec<Entry>, StoreError> {
        self.inner.by_origin(origin, after, limit)
    }

    fn bucket(&self, bucket: u32, bits: u32) -> Result<Vec<Entry>, StoreError> {
        self.inner.bucket(bucket, bits)
    }

    fn old_tombstones(
        &self,
        before_ms: u64,
        limit: usize,
    ) -> Result<Vec<(String, Version)>, StoreError> {
        self.inner.old_tombstones(before_ms, limit)
    }

    fn for_each(&self, f: &mut dyn FnMut(&Entry)) -> Result<(), StoreError> {
        self.inner.for_each(f)
    }

    fn for_each_stamp(&self, f: &mut dyn FnMut(&Stamp)) -> Result<(), StoreError> {
        self.inner.for_each_stamp(f)
    }

    fn meta(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.inner.meta(name)
    }

    fn reads(&self) -> Option<Box<dyn Reads>> {
        self.inner.reads()
    }
}
