//! Reads that wait for a key to change (`GET /v1/kv/{key}?wait=`), in the
//! manner of Consul's blocking queries: the read is answered as soon as
//! the key holds a value (or a version newer than the one the client
//! names), or when the wait runs out, with what the key holds then.
//!
//! Every core call that may have changed the store wakes every waiting
//! read ([`Watchers::wake_all`], from `NodeHandle`'s dispatch), and each
//! looks at its key again: one read of the store, no state kept per key.
//! At most [`MAX_WAITS`] reads wait at once, so waits cannot take the
//! listener's connections from everything else.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_std::channel::{bounded, Receiver, Sender};

use crate::core::entry::{Entry, Version};
use crate::store::StoreError;

/// The longest wait a read may ask for.
pub const MAX_WAIT: Duration = Duration::from_secs(300);

/// Reads waiting at once, at most: half the listener's connections
/// ([`crate::http`]'s limit is 512).
pub const MAX_WAITS: usize = 256;

/// Why a waiting read got no answer.
#[derive(Debug)]
pub enum WaitFailed {
    /// [`MAX_WAITS`] reads wait already.
    TooMany,
    /// The store could not be read.
    Store(StoreError),
}

/// The reads waiting for a change, each woken by a message on its channel.
#[derive(Debug, Default)]
pub(super) struct Watchers {
    waiting: Mutex<Vec<Sender<()>>>,
    active: AtomicUsize,
}

/// One read's place among [`MAX_WAITS`], given back when dropped.
struct Place<'a>(&'a AtomicUsize);

impl Drop for Place<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Watchers {
    /// Wakes every waiting read to look at its key again.
    pub(super) fn wake_all(&self) {
        let woken = std::mem::take(&mut *self.lock());
        for w in woken {
            let _ = w.try_send(());
        }
    }

    /// A channel woken by the next [`Watchers::wake_all`]. Reads that
    /// stopped waiting leave their place here then, or now.
    fn listen(&self) -> Receiver<()> {
        let (tx, rx) = bounded(1);
        let mut waiting = self.lock();
        waiting.retain(|w| !w.is_closed());
        waiting.push(tx);
        rx
    }

    /// Reads waiting now.
    pub fn waiting(&self) -> usize {
        self.active.load(Ordering::SeqCst)
    }

    fn place(&self) -> Result<Place<'_>, WaitFailed> {
        if self.active.fetch_add(1, Ordering::SeqCst) >= MAX_WAITS {
            self.active.fetch_sub(1, Ordering::SeqCst);
            return Err(WaitFailed::TooMany);
        }
        Ok(Place(&self.active))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Sender<()>>> {
        self.waiting.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// What `look` reads (the key's stored entry, a tombstone included),
    /// less a tombstone, once it holds a value (with `newer_than`, once its
    /// version, a delete's included, is newer than that), or once `wait`
    /// (at most [`MAX_WAIT`]) has passed, or `stopping`.
    pub(super) async fn wait_for(
        &self,
        mut look: impl FnMut() -> Result<Option<Entry>, StoreError>,
        newer_than: Option<Version>,
        wait: Duration,
        stopping: impl Fn() -> bool,
    ) -> Result<Option<Entry>, WaitFailed> {
        let until = Instant::now() + wait.min(MAX_WAIT);
        let _place = self.place()?;
        loop {
            // Listen before looking, so a change between the two wakes us.
            let woken = self.listen();
            let found = look().map_err(WaitFailed::Store)?;
            let done = match (newer_than, &found) {
                (_, None) => false,
                (None, Some(e)) => !e.is_tombstone(),
                (Some(v), Some(e)) => e.version > v,
            };
            let left = until.saturating_duration_since(Instant::now());
            if done || left.is_zero() || stopping() {
                return Ok(found.filter(|e| !e.is_tombstone()));
            }
            let _ = async_std::future::timeout(left, woken.recv()).await;
        }
    }
}
