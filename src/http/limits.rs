//! The connection limits (see [`super::listen`]): at most
//! [`MAX_CONNECTIONS`] at once, and at most [`MAX_CONNECTIONS_PER_IP`]
//! from one address other than loopback. At the total, the connection that
//! has waited longest in the middle of a head is closed to let the new one
//! in (`slow_head_evicted`); past that, or the per-address limit, a
//! connection is refused (`too_many_connections`, with the reason).
//!
//! A closed connection's place is free once its task ends. Up to
//! [`EVICTION_SLACK`] such places are lent meanwhile; past them, a new
//! connection waits for those tasks to end (at most [`EVICTION_WAIT`])
//! rather than being refused: a slowloris that reconnects what was closed
//! comes back in bursts, and under load the accept loop took a whole burst
//! before any closed task ran, refusing a `/livez` that came with it
//! (`tests/hostile_slowloris.rs`).

use std::collections::HashMap;
use std::net::{IpAddr, Shutdown, SocketAddr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_std::net::TcpStream;

/// Connections served at once. systemd gives a service 1024 descriptors
/// (soft limit); the store, the peer client's pool and the log need some.
pub const MAX_CONNECTIONS: usize = 512;

/// Connections from one address other than loopback. A peer's client pool
/// keeps a few connections per node; 64 leaves room for a busy operator.
pub const MAX_CONNECTIONS_PER_IP: usize = 64;

/// Connections over [`MAX_CONNECTIONS`] while evicted ones are closing:
/// an eviction frees its place only once the evicted task ends, within
/// moments; past this many, a new connection waits for them to end
/// ([`Limits::admit`]).
const EVICTION_SLACK: usize = 64;

/// Longest a new connection waits for connections closed to make room to
/// end, when they fill the slack: they end within moments of running.
const EVICTION_WAIT: Duration = Duration::from_secs(1);

/// How often it looks meanwhile.
const EVICTION_POLL: Duration = Duration::from_millis(2);

/// What the limits need of a connection's state (the listener's
/// `State`): whether it is in the middle of a head, since when it may wait
/// there, and a way to mark it closing.
pub(super) trait HeadState: Send + Sync {
    /// It is to end: closed to make room, or its answer refused it.
    fn is_closing(&self) -> bool;
    /// Marks it to end.
    fn close(&self);
    /// A head had begun to arrive, and no request is being served.
    fn mid_head(&self) -> bool;
    /// When its wait in the middle of a head runs out.
    fn deadline(&self) -> Option<Instant>;
}

/// Open connections, in all and per address, and each one's state, so
/// that a slow head can be found and closed when the limit is reached.
#[derive(Default)]
pub(super) struct Limits {
    total: AtomicUsize,
    per_ip: Mutex<HashMap<IpAddr, usize>>,
    open: Mutex<HashMap<u64, Open>>,
    next_id: AtomicU64,
    /// Connections closed to make room whose tasks have not ended yet:
    /// they still count in `total`.
    evicting: AtomicUsize,
}

/// An open connection, as the accept loop sees it.
struct Open {
    state: Arc<dyn HeadState>,
    stream: TcpStream,
    peer: Option<SocketAddr>,
}

/// One open connection's place in [`Limits`], given back when dropped.
pub(super) struct Slot {
    limits: Arc<Limits>,
    ip: Option<IpAddr>,
    id: u64,
}

/// Whether a new connection may be served.
pub(super) enum Entered {
    Yes(Slot),
    /// At the limit: the connection named was closed to make room.
    Evicting(Slot, String),
    /// Refused, and why.
    No(&'static str),
}

impl Limits {
    /// Counts a new connection in, closing the slowest head to make room
    /// at the limit; see [`Limits::enter`]. When the connections closed to
    /// make room fill the slack, it first waits (at most
    /// [`EVICTION_WAIT`]) for some of their tasks to end: under load the
    /// accept loop takes a burst of new connections before those tasks
    /// run, and would refuse a well-behaved client while there are slow
    /// heads to close.
    pub(super) async fn admit(
        limits: &Arc<Limits>,
        ip: IpAddr,
        state: &Arc<dyn HeadState>,
        stream: &TcpStream,
    ) -> Entered {
        let until = Instant::now() + EVICTION_WAIT;
        while limits.total.load(Ordering::SeqCst) >= MAX_CONNECTIONS + EVICTION_SLACK
            && limits.evicting.load(Ordering::SeqCst) > 0
            && Instant::now() < until
        {
            async_std::task::sleep(EVICTION_POLL).await;
        }
        Limits::enter(limits, ip, state, stream)
    }

    fn enter(
        limits: &Arc<Limits>,
        ip: IpAddr,
        state: &Arc<dyn HeadState>,
        stream: &TcpStream,
    ) -> Entered {
        // The address's own limit first, so that no connection is evicted
        // for one that is then refused.
        let counted = if ip.is_loopback() {
            None
        } else {
            let mut m = limits.per_ip.lock().unwrap_or_else(|p| p.into_inner());
            let n = m.entry(ip).or_default();
            if *n >= MAX_CONNECTIONS_PER_IP {
                return Entered::No("its address has as many as one may");
            }
            *n += 1;
            Some(ip)
        };
        let mut victim = None;
        if limits.total.fetch_add(1, Ordering::SeqCst) >= MAX_CONNECTIONS {
            // Connections being closed still count until their task ends:
            // past the slack, even an eviction does not let one in.
            let slack = limits.total.load(Ordering::SeqCst) <= MAX_CONNECTIONS + EVICTION_SLACK;
            victim = slack.then(|| limits.evict_slowest_head()).flatten();
            if victim.is_none() {
                limits.total.fetch_sub(1, Ordering::SeqCst);
                limits.leave_ip(counted);
                return Entered::No(if slack {
                    "no connection is in the middle of a head"
                } else {
                    "the connections closed to make room are still closing"
                });
            }
        }
        let id = limits.next_id.fetch_add(1, Ordering::Relaxed);
        limits.opened().insert(
            id,
            Open {
                state: Arc::clone(state),
                peer: stream.peer_addr().ok(),
                stream: stream.clone(),
            },
        );
        let slot = Slot {
            limits: Arc::clone(limits),
            ip: counted,
            id,
        };
        match victim {
            Some(v) => Entered::Evicting(slot, v),
            None => Entered::Yes(slot),
        }
    }

    /// Gives back a place counted against `ip`'s own limit.
    fn leave_ip(&self, ip: Option<IpAddr>) {
        let Some(ip) = ip else { return };
        let mut m = self.per_ip.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = m.get_mut(&ip) {
            *n -= 1;
            if *n == 0 {
                m.remove(&ip);
            }
        }
    }

    fn opened(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Open>> {
        self.open.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Closes the connection that has waited longest in the middle of a
    /// head (the one whose deadline comes first), if any; says which.
    /// Well-behaved clients send a head in one piece, so a connection
    /// found there is slow, or holding its place on purpose.
    fn evict_slowest_head(&self) -> Option<String> {
        let mut open = self.opened();
        let (&id, _) = open
            .iter()
            .filter(|(_, o)| !o.state.is_closing() && o.state.mid_head())
            .filter_map(|(id, o)| Some((id, o.state.deadline()?)))
            .min_by_key(|(_, d)| *d)?;
        let o = open.remove(&id)?;
        self.evicting.fetch_add(1, Ordering::SeqCst);
        o.state.close();
        let _ = o.stream.shutdown(Shutdown::Both);
        Some(
            o.peer
                .map_or_else(|| "a connection".into(), |p| p.to_string()),
        )
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if self.limits.opened().remove(&self.id).is_none() {
            // It was closed to make room: its place is free only now.
            self.limits.evicting.fetch_sub(1, Ordering::SeqCst);
        }
        self.limits.leave_ip(self.ip);
        self.limits.total.fetch_sub(1, Ordering::SeqCst);
    }
}

#[cfg(test)]
#[path = "limits_tests.rs"]
mod tests;
