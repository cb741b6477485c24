//! Upgrade in place: a data directory written by a single-node Sluice (topics, their
//! configs, `__consumer_offsets` with the committed offsets) joins a cluster without losing
//! anything.
//!
//! A single node keeps its topics in its data directory only. The first time it starts in
//! a cluster (its data directory has topics but no metadata quorum directory yet), it
//! writes the marker file `cluster-upgrade-pending` before the quorum starts, and once it
//! is registered and unfenced it *adopts* its topics: for each local topic the metadata
//! does not know, it asks the controller to create it with every partition assigned to
//! this broker and the topic's config overrides, then gives the local partitions the new
//! topic id (`partition.metadata`). The marker goes when every topic is adopted, so a
//! crash part-way resumes at the next start. Until then the reconciler deletes nothing and
//! the group coordinator waits, so no local replica is taken for a stray and the committed
//! offsets are kept.
//!
//! A topic whose name another broker created in the meantime is not adopted (an error
//! says so; its replicas are set aside as strays and kept on disk). `__consumer_offsets`
//! is only created by a cluster when a client first asks for a group coordinator (see
//! `groups`), so the upgraded node's own copy wins unless a client asked before the node
//! had adopted its topics, about a second after the quorum has a leader: start the
//! upgraded node before pointing group consumers at the new cluster.

use std::path::Path;
use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use sluice_metadata::controller::{CreateTopic, ReplicaAssignment};
use sluice_storage::fsutil;
use uuid::Uuid;

use super::ClusterNode;
use crate::state::BrokerState;
use crate::topics::AdminError;

/// The marker of an upgrade not finished yet.
pub const UPGRADE_MARKER: &str = "cluster-upgrade-pending";

/// Decides at start, before the metadata quorum creates its directory, whether this data
/// directory is being upgraded (or an upgrade was interrupted), and records it.
pub fn begin(
    data_dir: &Path,
    has_topics: bool,
    joined: bool,
) -> Result<bool, crate::errors::BrokerError> {
    let marker = data_dir.join(UPGRADE_MARKER);
    if marker.exists() {
        return Ok(true);
    }
    // A directory that joined a cluster before is never a single node's, even if its
    // metadata directory was lost: adopting its topics could bring back deleted ones.
    if joined || !has_topics || data_dir.join(super::METADATA_DIR).exists() {
        return Ok(false);
    }
    fsutil::write_atomically(
        &marker,
        b"topics of a single-node data directory are being adopted by the cluster\n",
    )?;
    tracing::info!(
        "upgrading a single-node data directory: its topics will be adopted by the cluster"
    );
    Ok(true)
}

/// Records one adoption request may carry (the controller refuses more than 10,000 per
/// operation).
const RECORDS_PER_REQUEST: usize = 5_000;

/// Adopts the local topics the metadata does not know (see the module docs). Returns
/// whether the upgrade is complete; on `false` the caller tries again later.
pub async fn adopt(state: &Arc<BrokerState>, node: &ClusterNode) -> bool {
    let mut complete = true;
    let image = node.image();
    // (local topic id, request), in chunks that fit one controller operation.
    let mut chunks: Vec<Vec<(Uuid, CreateTopic)>> = vec![Vec::new()];
    let mut records = 0usize;
    for topic in state.topics.list() {
        if image.topic_by_id(topic.id).is_some() {
            continue;
        }
        if let Some(other) = image.topic(&topic.name) {
            tracing::error!(
                topic = %topic.name,
                cluster_topic_id = %other.id,
                "cannot adopt this topic: the cluster already has a topic of this name; its local replicas will be kept aside as strays"
            );
            continue;
        }
        let partitions: Vec<i32> = topic.partitions().iter().map(|p| p.index).collect();
        let contiguous = partitions.iter().enumerate().all(|(i, &p)| i as i32 == p);
        if partitions.is_empty() || !contiguous {
            tracing::error!(topic = %topic.name, ?partitions, "cannot adopt a topic whose partitions are not 0..n");
            continue;
        }
        let overrides = topic.overrides();
        let weight = 1 + partitions.len() + overrides.len();
        if records + weight > RECORDS_PER_REQUEST && records > 0 {
            chunks.push(Vec::new());
            records = 0;
        }
        records += weight;
        let request = CreateTopic {
            name: topic.name.to_string(),
            num_partitions: -1,
            replication_factor: -1,
            assignments: partitions
                .iter()
                .map(|&partition| ReplicaAssignment {
                    partition,
                    replicas: vec![node.node_id],
                })
                .collect(),
            configs: overrides,
        };
        if let Some(chunk) = chunks.last_mut() {
            chunk.push((topic.id, request));
        }
    }
    for chunk in chunks.into_iter().filter(|c| !c.is_empty()) {
        let (old_ids, requests): (Vec<Uuid>, Vec<CreateTopic>) = chunk.into_iter().unzip();
        let names: Vec<String> = requests.iter().map(|r| r.name.clone()).collect();
        let answers = match node.service.create_topics(requests).await {
            Ok(committed) => {
                let _ = node.wait_applied(committed.offset).await;
                committed.value
            }
            Err(e) => {
                tracing::warn!(topics = names.len(), error = %e, "cannot adopt topics yet");
                complete = false;
                continue;
            }
        };
        for ((old_id, name), answer) in old_ids.into_iter().zip(names).zip(answers) {
            let new_id = match answer {
                Ok(created) => created.topic_id,
                Err(e) => {
                    tracing::warn!(topic = %name, error = %e, "the controller refused to adopt topic");
                    complete = false;
                    continue;
                }
            };
            let retag_state = state.clone();
            let retagged =
                tokio::task::spawn_blocking(move || retag_state.topics.retag_topic(old_id, new_id))
                    .await
                    .unwrap_or_else(|e| {
                        Err(AdminError::new(
                            ResponseError::UnknownServerError,
                            e.to_string(),
                        ))
                    });
            match retagged {
                Ok(()) => {
                    tracing::info!(topic = %name, topic_id = %new_id, "adopted topic into the cluster")
                }
                Err(e) => {
                    tracing::error!(topic = %name, error = %e.message, "cannot give the local partitions their cluster topic id");
                    complete = false;
                }
            }
        }
    }
    if complete {
        let marker = state.config.data_dir.join(UPGRADE_MARKER);
        if let Err(e) = std::fs::remove_file(&marker) {
            if e.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!(error = %e, "cannot remove {UPGRADE_MARKER}");
                return false;
            }
        }
        let _ = fsutil::sync_dir(&state.config.data_dir);
        tracing::info!("upgrade complete: every local topic is part of the cluster");
    }
    complete
}
