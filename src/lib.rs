//! ringsync: leaderless anti-entropy sync of a replicated key-value dataset
//! around a fixed ring, falling back to random push-pull gossip when a ring
//! member fails.
//!
//! - [`core`] is the protocol, sans-IO: time, randomness and messages come in
//!   as arguments, messages to send come out. No sockets, clocks or tasks.
//! - [`store`] holds the data: redb for the service, memory for the simulator.
//! - [`topology`] reads and checks the topology file.
//! - [`sim`] drives many cores with a virtual clock and a simulated network.
//! - [`auth`] signs and checks requests and client tokens, in plain code.
//! - [`bench`] measures costs and throughput against same-run baselines.
//! - [`service`] is the thin shell that runs one node with a timer and a
//!   store, and reaches peers through a transport trait of its own.
//! - [`http`] is the only module that knows tide and surf: it implements
//!   that transport and serves the node's routes, importing [`service`]
//!   (never the reverse).
//! - [`proc_cluster`] runs a local cluster of real node processes, for the
//!   process tests and the benchmark.
#![forbid(unsafe_code)]

pub mod auth;
pub mod bench;
pub mod cli;
pub mod core;
pub mod http;
pub mod proc_cluster;
pub mod service;
pub mod sim;
pub mod store;
pub mod topology;
