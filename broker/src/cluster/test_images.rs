//! Metadata images built from records, for the cluster modules' unit tests.

use sluice_metadata::records::{
    Endpoint, MetadataRecord, PartitionRecord, RegisterBrokerRecord, SecurityProtocol, TopicRecord,
};
use sluice_metadata::{LogPosition, MetadataImage};
use uuid::Uuid;

/// Brokers 1..=n, registered and unfenced, with a PLAINTEXT endpoint on 127.0.0.id:9092.
pub fn brokers(n: i32) -> Vec<MetadataRecord> {
    (1..=n)
        .map(|id| {
            MetadataRecord::RegisterBroker(RegisterBrokerRecord {
                broker_id: id,
                incarnation_id: Uuid::from_u128(id as u128),
                endpoints: vec![Endpoint {
                    listener: "PLAINTEXT".into(),
                    host: format!("127.0.0.{id}"),
                    port: 9092,
                    security_protocol: SecurityProtocol::Plaintext,
                }],
                rack: None,
                fenced: false,
            })
        })
        .collect()
}

pub fn topic(name: &str, id: Uuid) -> MetadataRecord {
    MetadataRecord::Topic(TopicRecord {
        name: name.into(),
        topic_id: id,
    })
}

pub fn partition(
    topic: Uuid,
    p: i32,
    replicas: &[i32],
    isr: &[i32],
    leader: i32,
    epoch: i32,
) -> MetadataRecord {
    MetadataRecord::Partition(PartitionRecord {
        topic_id: topic,
        partition_id: p,
        replicas: replicas.to_vec(),
        isr: isr.to_vec(),
        leader,
        leader_epoch: epoch,
        partition_epoch: 0,
    })
}

/// An image of these records, applied as one batch at offset 0.
pub fn image(records: &[MetadataRecord]) -> MetadataImage {
    let mut image = MetadataImage::new();
    image
        .apply(
            LogPosition {
                offset: 0,
                epoch: 1,
            },
            records,
        )
        .expect("a consistent image");
    image
}
