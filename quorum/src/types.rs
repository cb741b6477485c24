//! The openraft type configuration of the quorum, and [`Payload`], the opaque bytes it
//! replicates.
//!
//! Everything openraft-specific that other modules name goes through the aliases here, so an
//! openraft upgrade touches this file and the adapters, not the public API.

use std::fmt;
use std::io::Cursor;

use serde::de::{SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A node id: Kafka's `node.id`.
pub type NodeId = u64;

openraft::declare_raft_types!(
    /// The type configuration: opaque byte payloads in, opaque byte responses out.
    pub TypeConfig:
        D = Payload,
        R = Payload,
        NodeId = NodeId,
        Node = openraft::BasicNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = openraft::TokioRuntime,
);

pub(crate) type LogId = openraft::LogId<NodeId>;
pub(crate) type Entry = openraft::Entry<TypeConfig>;
pub(crate) type Vote = openraft::Vote<NodeId>;
pub(crate) type StorageError = openraft::StorageError<NodeId>;
pub(crate) type StoredMembership = openraft::StoredMembership<NodeId, openraft::BasicNode>;
pub(crate) type SnapshotMeta = openraft::SnapshotMeta<NodeId, openraft::BasicNode>;
pub(crate) type Raft = openraft::Raft<TypeConfig>;

/// Opaque bytes: an entry's payload, or the applier's response to it.
///
/// It serializes as a byte string (a CBOR major type 2 item), not as a list of numbers, so an
/// entry costs its length plus a few bytes of framing on disk and on the wire.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Payload(pub Vec<u8>);

impl fmt::Debug for Payload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Payload({} bytes)", self.0.len())
    }
}

impl fmt::Display for Payload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} bytes", self.0.len())
    }
}

impl Serialize for Payload {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(&self.0)
    }
}

impl<'de> Deserialize<'de> for Payload {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_byte_buf(PayloadVisitor)
    }
}

struct PayloadVisitor;

impl<'de> Visitor<'de> for PayloadVisitor {
    type Value = Payload;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a byte string")
    }

    fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Payload, E> {
        Ok(Payload(v.to_vec()))
    }

    fn visit_byte_buf<E: serde::de::Error>(self, v: Vec<u8>) -> Result<Payload, E> {
        Ok(Payload(v))
    }

    // Accepted for encoders that write bytes as a sequence (e.g. a human-readable format).
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Payload, A::Error> {
        let mut out = Vec::new();
        while let Some(b) = seq.next_element::<u8>()? {
            out.push(b);
        }
        Ok(Payload(out))
    }
}

/// Encodes a value as CBOR (the encoding of log entries, snapshot headers and RPC bodies).
pub(crate) fn to_cbor<T: Serialize>(value: &T) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    ciborium::into_writer(value, &mut out).map_err(|e| e.to_string())?;
    Ok(out)
}

/// Decodes CBOR; bad bytes give an error, never a panic (ciborium bounds recursion, and
/// preallocation follows serde's cautious size hints).
pub(crate) fn from_cbor<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    let mut reader = bytes;
    let value = ciborium::from_reader(&mut reader).map_err(|e| e.to_string())?;
    if !reader.is_empty() {
        return Err(format!("{} trailing bytes", reader.len()));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_is_a_cbor_byte_string() {
        let bytes = to_cbor(&Payload(vec![7; 100])).unwrap();
        // Major type 2 with a one-byte length (0x58 0x64), then the bytes themselves.
        assert_eq!(&bytes[..2], &[0x58, 100]);
        assert_eq!(bytes.len(), 102);
        assert_eq!(from_cbor::<Payload>(&bytes).unwrap(), Payload(vec![7; 100]));
    }

    #[test]
    fn trailing_bytes_are_rejected() {
        let mut bytes = to_cbor(&Payload(vec![1, 2])).unwrap();
        bytes.push(0);
        assert!(from_cbor::<Payload>(&bytes).is_err());
    }
}
