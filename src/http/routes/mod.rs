//! The routes, by audience: the client API, the peers, and the operator.
//! Each handler decodes, calls the node, and encodes; none locks the core.

pub mod admin;
pub mod kv;
pub mod peer;
