//! The node service: a thin shell around the protocol core.
//!
//! It owns what the core must not: the clock, the timer that drives cycles,
//! the durable store on disk, the signals, and the tasks that deliver the
//! core's requests. It reaches peers through the [`Transport`] trait and is
//! served through a function `main` gives it; the HTTP edge (`src/http`)
//! implements both and imports this module, never the reverse.

pub mod cluster;
mod committer;
#[cfg(test)]
mod committer_tests;
pub mod handle;
pub mod logging;
pub mod nonces;
pub mod notify;
pub mod preflight;
pub mod reload;
pub mod report;
pub mod runtime;
pub mod snapshot;
pub mod sync;
pub mod transport;
pub mod watch;

pub use handle::NodeHandle;
pub use runtime::run_node;
pub use transport::Transport;

use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch: the only clock the shell reads.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
