//! The routes, by audience: the client API, the peers, the operator, and
//! the operator's look at the whole cluster (`/v1/cluster` and its page).
//! Each handler decodes, calls the node, and encodes; none locks the core.

pub mod admin;
pub mod cluster;
pub mod kv;
pub mod peer;
