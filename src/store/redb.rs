//! The durable store on redb (placeholder until implemented).
/// The durable store.
#[derive(Debug)]
pub struct RedbStore;
