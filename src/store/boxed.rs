//! A boxed store is a store, so the service can hold any store behind one
//! type (`Node<Box<dyn Store + Send>>`): redb on disk, memory in tests.

use super::{Merged, Reads, Stamp, Store, StoreError, WriteBatch};
use crate::core::entry::{Entry, Origin, Version};

impl<S: Store + ?Sized> Store for Box<S> {
    fn get(&self, key: &str) -> Result<Option<Entry>, StoreError> {
        (**self).get(key)
    }

    fn commit(&mut self, batch: WriteBatch) -> Result<Vec<Merged>, StoreError> {
        (**self).commit(batch)
    }

    fn range(
        &self,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Entry>, StoreError> {
        (**self).range(prefix, after, limit)
    }

    fn by_origin(
        &self,
        origin: Origin,
        after: Version,
        limit: usize,
    ) -> Result<Vec<Entry>, StoreError> {
        (**self).by_origin(origin, after, limit)
    }

    fn bucket(&self, bucket: u32, bits: u32) -> Result<Vec<Entry>, StoreError> {
        (**self).bucket(bucket, bits)
    }

    fn old_tombstones(
        &self,
        before_ms: u64,
        limit: usize,
    ) -> Result<Vec<(String, Version)>, StoreError> {
        (**self).old_tombstones(before_ms, limit)
    }

    fn for_each(&self, f: &mut dyn FnMut(&Entry)) -> Result<(), StoreError> {
        (**self).for_each(f)
    }

    fn for_each_stamp(&self, f: &mut dyn FnMut(&Stamp)) -> Result<(), StoreError> {
        (**self).for_each_stamp(f)
    }

    fn meta(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        (**self).meta(name)
    }

    fn reads(&self) -> Option<Box<dyn Reads>> {
        (**self).reads()
    }

    fn set_deferred(&mut self, on: bool) {
        (**self).set_deferred(on);
    }

    fn sync(&mut self) -> Result<(), StoreError> {
        (**self).sync()
    }
}
