//! The protocol core: plain, deterministic code with no I/O.
//!
//! Time comes in as `now_ms` arguments, randomness as a seeded [`rng::Rng`],
//! messages as bytes; requests to send come out of [`node::Node`] as
//! [`node::Transmit`]s. The service and the simulator drive the same code.

pub mod config;
pub mod digest;
pub mod digest_diff;
pub mod entry;
pub mod hlc;
pub mod membership;
pub mod message;
pub mod node;
pub mod rng;
pub mod schedule;
pub mod sketch;
pub mod stats;
pub mod store;
pub mod tree;
pub mod value_serde;
pub mod wire_caps;

pub use config::Config;
pub use entry::{Entry, Version};
pub use node::{Event, Node, Transmit, WriteError};
pub use schedule::Schedule;
