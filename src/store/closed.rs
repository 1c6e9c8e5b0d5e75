//! The store a stopping node holds once its real store is closed: every
//! call fails, so nothing can be read from or written to a file that is no
//! longer open, and the failure says why.

use super::{Merged, Store, StoreError, WriteBatch};
use crate::core::entry::{Entry, Origin, Version};

/// A store that has been closed.
#[derive(Debug, Default, Clone, Copy)]
pub struct Closed;

fn closed<T>() -> Result<T, StoreError> {
    Err(StoreError(
        "the store is closed: the node is stopping".into(),
    ))
}

impl Store for Closed {
    fn get(&self, _: &str) -> Result<Option<Entry>, StoreError> {
        closed()
    }

    fn commit(&mut self, _: WriteBatch) -> Result<Vec<Merged>, StoreError> {
        closed()
    }

    fn range(&self, _: &str, _: Option<&str>, _: usize) -> Result<Vec<Entry>, StoreError> {
        closed()
    }

    fn by_origin(&self, _: Origin, _: Version, _: usize) -> Result<Vec<Entry>, StoreError> {
        closed()
    }

    fn bucket(&self, _: u32, _: u32) -> Result<Vec<Entry>, StoreError> {
        closed()
    }

    fn old_tombstones(&self, _: u64, _: usize) -> Result<Vec<(String, Version)>, StoreError> {
        closed()
    }

    fn for_each(&self, _: &mut dyn FnMut(&Entry)) -> Result<(), StoreError> {
        closed()
    }

    fn meta(&self, _: &str) -> Result<Option<Vec<u8>>, StoreError> {
        closed()
    }
}
