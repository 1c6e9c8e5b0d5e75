//! How an entry's value is (de)serialized: in a binary format (postcard,
//! the peer protocol) as one run of bytes, read with one copy, where
//! serde's default for `Vec<u8>` reads it a byte at a time (about half of
//! decoding a push of 100-byte values went there). The bytes on the wire
//! are the same: postcard writes a `Vec<u8>` as its length then its bytes
//! either way. Human-readable formats (JSON) keep serde's default, an array
//! of numbers.

use std::fmt;

use serde::de::{Deserializer, SeqAccess, Visitor};
use serde::{Deserialize, Serialize, Serializer};

/// Serializes a value (`None`: a tombstone).
pub fn serialize<S: Serializer>(value: &Option<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
    if s.is_human_readable() {
        return value.serialize(s);
    }
    match value {
        Some(v) => s.serialize_some(&Bytes(v)),
        None => s.serialize_none(),
    }
}

/// Deserializes what [`serialize`] wrote.
pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<u8>>, D::Error> {
    if d.is_human_readable() {
        return Option::<Vec<u8>>::deserialize(d);
    }
    d.deserialize_option(OptionalBytes)
}

struct Bytes<'a>(&'a [u8]);

impl Serialize for Bytes<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(self.0)
    }
}

struct OptionalBytes;

impl<'de> Visitor<'de> for OptionalBytes {
    type Value = Option<Vec<u8>>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an optional byte string")
    }

    fn visit_none<E>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_byte_buf(ByteBuf).map(Some)
    }
}

struct ByteBuf;

impl<'de> Visitor<'de> for ByteBuf {
    type Value = Vec<u8>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a byte string")
    }

    fn visit_bytes<E>(self, v: &[u8]) -> Result<Vec<u8>, E> {
        Ok(v.to_vec())
    }

    fn visit_byte_buf<E>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
        Ok(v)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<u8>, A::Error> {
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
        while let Some(b) = seq.next_element()? {
            out.push(b);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use serde::{Deserialize, Serialize};

    use crate::core::entry::{Entry, Version};

    /// An entry as serde's derive alone (de)serializes it: the wire format
    /// before this module, which must not change.
    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Plain {
        key: String,
        value: Option<Vec<u8>>,
        version: Version,
    }

    #[test]
    fn the_encoding_is_serdes_default_and_round_trips() {
        let version = Version {
            ms: 1 << 41,
            counter: 300,
            origin: 7,
        };
        for value in [None, Some(vec![]), Some(vec![7; 100]), Some(vec![1; 300])] {
            let e = Entry {
                key: "k/é".into(),
                value: value.clone(),
                version,
            };
            let plain = Plain {
                key: e.key.clone(),
                value,
                version,
            };
            let bytes = postcard::to_stdvec(&e).expect("encode");
            assert_eq!(bytes, postcard::to_stdvec(&plain).expect("encode"));
            assert_eq!(postcard::from_bytes::<Entry>(&bytes).expect("decode"), e);
            let json = serde_json::to_string(&e).expect("json");
            assert_eq!(json, serde_json::to_string(&plain).expect("json"));
            assert_eq!(serde_json::from_str::<Entry>(&json).expect("json"), e);
        }
        // A length past the end of the input is refused, not allocated.
        let mut bytes = postcard::to_stdvec(&Entry {
            key: "k".into(),
            value: Some(vec![1; 3]),
            version,
        })
        .expect("encode");
        bytes[3] = 0x7f;
        assert!(postcard::from_bytes::<Entry>(&bytes).is_err());
    }
}
