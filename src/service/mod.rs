//! The node service: a thin shell around the protocol core.
//!
//! It owns what the core must not: the clock, the timer that drives cycles,
//! the durable store on disk, the signals, and the tasks that deliver the
//! core's requests over HTTP (through [`crate::http`], the only module that
//! knows the HTTP libraries).

pub mod logging;
pub mod notify;
pub mod reload;
pub mod runtime;
pub mod sync;

pub use runtime::{run_node, Shared};

use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch: the only clock the shell reads.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
