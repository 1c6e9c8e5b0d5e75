//! Storage behind the core's [`Store`] trait: the durable redb store for the
//! service, an in-memory one for the simulator and tests.

mod boxed;
pub mod closed;
pub mod gated;
pub mod memory;
pub mod redb;

pub use self::closed::Closed;
pub use self::gated::{Gate, Gated};
pub use self::memory::MemoryStore;
pub use self::redb::RedbStore;
pub use crate::core::store::{
    bucket_of, merge_decision, Merged, Reads, Stamp, Store, StoreError, WriteBatch,
};
