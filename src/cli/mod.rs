//! The command line's pieces that are more than argument parsing.

pub mod client;
pub mod cluster;
pub mod demo;
pub mod kv;
pub mod outcome;
pub mod target;
