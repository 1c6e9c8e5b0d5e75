//! The protocol core: plain, deterministic code with no I/O.

pub mod entry;
pub mod hlc;
pub mod rng;
pub mod schedule;
