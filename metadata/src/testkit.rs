//! Test helpers: a controller and the image it commits to, with a simulated clock and
//! log. Every batch goes through the byte encoding, as it would through Raft.

use std::collections::BTreeMap;

use uuid::Uuid;

use crate::controller::{
    BrokerHeartbeatRequest, BrokerRegistrationRequest, Controller, ControllerConfig, CreateTopic,
    HeartbeatDecision,
};
use crate::error::Result;
use crate::image::{LogPosition, MetadataImage};
use crate::records::*;

pub(crate) const CLUSTER_ID: &str = "q1Sh-9_ISia_zwGINzRvyQ";

pub(crate) struct Harness {
    pub image: MetadataImage,
    pub controller: Controller,
    pub now: u64,
    /// Raft term used for new entries.
    pub term: i64,
    /// Incarnation ids in use, by broker.
    pub incarnations: BTreeMap<BrokerId, Uuid>,
    /// Every entry committed (rejected batches included), for replays.
    pub log: Vec<(LogPosition, Vec<MetadataRecord>)>,
}

pub(crate) fn endpoint(id: BrokerId) -> Vec<Endpoint> {
    vec![
        Endpoint {
            listener: "PLAINTEXT".into(),
            host: format!("127.0.0.{id}"),
            port: 9092,
            security_protocol: SecurityProtocol::Plaintext,
        },
        Endpoint {
            listener: "CONTROLLER".into(),
            host: format!("127.0.0.{id}"),
            port: 9093,
            security_protocol: SecurityProtocol::Plaintext,
        },
    ]
}

impl Harness {
    pub fn new() -> Self {
        let mut h = Harness {
            image: MetadataImage::new(),
            controller: Controller::new(ControllerConfig::default(), 7),
            now: 1_000_000,
            term: 1,
            incarnations: BTreeMap::new(),
            log: Vec::new(),
        };
        h.commit(Controller::bootstrap(&h.image, CLUSTER_ID))
            .unwrap();
        h
    }

    /// Commits a batch at the next offset (through the encoding); a rejected batch is
    /// skipped, as the quorum layer does. Returns the batch's offset.
    pub fn commit(&mut self, records: Vec<MetadataRecord>) -> Result<i64> {
        let position = LogPosition {
            offset: self.image.metadata_offset() + 1,
            epoch: self.term,
        };
        let decoded = decode_batch(&encode_batch(&records).unwrap()).unwrap();
        assert_eq!(decoded, records);
        self.log.push((position, decoded.clone()));
        match self.image.apply(position, &decoded) {
            Ok(()) => {
                self.image.check_invariants().unwrap();
                Ok(position.offset)
            }
            Err(e) => {
                self.image.skip(position).unwrap();
                Err(e)
            }
        }
    }

    /// Registers a broker (new incarnation) and commits it; returns its epoch.
    pub fn register(&mut self, id: BrokerId, rack: Option<&str>) -> i64 {
        let incarnation = Uuid::new_v4();
        self.incarnations.insert(id, incarnation);
        let decision = self
            .controller
            .register_broker(
                &self.image,
                self.now,
                &BrokerRegistrationRequest {
                    broker_id: id,
                    cluster_id: CLUSTER_ID.into(),
                    incarnation_id: incarnation,
                    previous_incarnation_id: None,
                    endpoints: endpoint(id),
                    rack: rack.map(str::to_owned),
                },
            )
            .unwrap();
        assert!(decision.existing_epoch.is_none());
        let epoch = self.commit(decision.records).unwrap();
        assert_eq!(self.image.broker(id).unwrap().epoch, epoch);
        epoch
    }

    pub fn epoch(&self, id: BrokerId) -> i64 {
        self.image.broker(id).unwrap().epoch
    }

    /// A heartbeat from a caught-up broker; its records are committed.
    pub fn heartbeat_with(
        &mut self,
        id: BrokerId,
        want_fence: bool,
        want_shut_down: bool,
    ) -> HeartbeatDecision {
        let request = BrokerHeartbeatRequest {
            broker_id: id,
            broker_epoch: self.epoch(id),
            current_metadata_offset: self.image.metadata_offset(),
            want_fence,
            want_shut_down,
            storage_unavailable: false,
        };
        self.send_heartbeat(&request)
    }

    /// A heartbeat from a caught-up broker reporting whether its storage is unavailable
    /// (a full disk); its records are committed.
    pub fn heartbeat_storage(&mut self, id: BrokerId, unavailable: bool) -> HeartbeatDecision {
        let request = BrokerHeartbeatRequest {
            broker_id: id,
            broker_epoch: self.epoch(id),
            current_metadata_offset: self.image.metadata_offset(),
            want_fence: false,
            want_shut_down: false,
            storage_unavailable: unavailable,
        };
        self.send_heartbeat(&request)
    }

    fn send_heartbeat(&mut self, request: &BrokerHeartbeatRequest) -> HeartbeatDecision {
        let decision = self
            .controller
            .heartbeat(&self.image, self.now, request)
            .unwrap();
        if !decision.records.is_empty() {
            self.commit(decision.records.clone()).unwrap();
        }
        decision
    }

    pub fn heartbeat(&mut self, id: BrokerId) -> HeartbeatDecision {
        self.heartbeat_with(id, false, false)
    }

    /// Registers and unfences a broker.
    pub fn add_broker(&mut self, id: BrokerId, rack: Option<&str>) -> i64 {
        let epoch = self.register(id, rack);
        let decision = self.heartbeat(id);
        assert!(!decision.is_fenced && decision.is_caught_up);
        assert!(!self.image.broker(id).unwrap().fenced);
        epoch
    }

    pub fn create_topic(&mut self, name: &str, partitions: i32, rf: i16) -> Uuid {
        let outcome = self.controller.create_topics(
            &self.image,
            &[CreateTopic {
                name: name.into(),
                num_partitions: partitions,
                replication_factor: rf,
                assignments: vec![],
                configs: BTreeMap::new(),
                topic_id: None,
            }],
        );
        let created = outcome.results.into_iter().next().unwrap().unwrap();
        self.commit(outcome.records).unwrap();
        let topic = self.image.topic(name).unwrap();
        assert_eq!(topic.id, created.topic_id);
        assert_eq!(topic.partitions.len(), partitions as usize);
        created.topic_id
    }

    /// Every broker but `silent` heartbeats while the clock moves past the session
    /// timeout; returns the fence records the controller decided (already committed).
    pub fn expire(&mut self, silent: &[BrokerId]) -> Vec<MetadataRecord> {
        let step = 1_000;
        let mut fenced = Vec::new();
        let deadline = self.now + self.controller.config().session_timeout_ms + 2 * step;
        while self.now < deadline {
            self.now += step;
            let ids: Vec<BrokerId> = self.image.brokers().map(|b| b.id).collect();
            for id in ids {
                if !silent.contains(&id) {
                    self.heartbeat(id);
                }
            }
            let records = self.controller.fence_expired_brokers(&self.image, self.now);
            if !records.is_empty() {
                self.commit(records.clone()).unwrap();
                fenced.extend(records);
            }
        }
        fenced
    }
}

/// An empty image whose log set `metadata.version` to `level`: a cluster an earlier build
/// started (the level never goes down in a real log, so a lower one needs its own image).
pub fn image_at_metadata_version(level: u16) -> MetadataImage {
    let mut image = MetadataImage::new();
    image
        .apply(
            LogPosition {
                offset: 0,
                epoch: 1,
            },
            &[MetadataRecord::FeatureLevel(FeatureLevelRecord {
                name: METADATA_VERSION.into(),
                feature_level: level,
            })],
        )
        .expect("a feature level record applies to an empty image");
    image
}
