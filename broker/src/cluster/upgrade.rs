//! Upgrade in place: a data directory written by a single-node Sluice (topics, their
//! configs, `__consumer_offsets` with the committed offsets, producer state) joins a
//! cluster without losing anything.
//!
//! A single node keeps its topics in its data directory only. The first time it starts in
//! a cluster (its data directory has topics but no metadata quorum directory yet), it
//! writes the marker file `cluster-upgrade-pending` before the quorum starts, and once it
//! is registered and unfenced it *adopts* its topics:
//!
//! 1. it reserves the producer ids the single node handed out: one AllocateProducerIds
//!    block starting at or above the single node's `producer-id-block` (every id a client
//!    of the single node holds is below it), so no block of any broker ever gives out an
//!    id the adopted partitions hold producer state for;
//! 2. for each local topic the metadata does not know, it asks the controller to create it
//!    with the topic's **local id**, every partition assigned to this broker, and the
//!    topic's config overrides. The local partitions already carry that id
//!    (`partition.metadata`): nothing local is rewritten.
//!
//! Every step is idempotent and decided from the image, so a crash at any point resumes at
//! the next start: a topic whose id the image has under the same name is adopted; the
//! reservation is skipped once the image's next producer id is past the single node's.
//! The marker goes only when every topic is adopted or set aside and this broker's image
//! has applied every adoption; until then the reconciler deletes nothing and the group
//! coordinator waits, so no local replica is taken for a stray and the committed offsets
//! are kept.
//!
//! A topic the controller refuses for good (its name is another topic's, a config or name
//! rule, an id the cluster uses) is logged once and set aside: its name is recorded in the
//! marker file (`set.aside=<topic>`) so later passes and restarts skip it, and once the
//! upgrade completes the reconciler renames its local replicas as strays (kept on disk).
//! Other failures (no controller, a timeout, an image that does not catch up) leave the
//! upgrade incomplete and the next heartbeat tries again.
//!
//! `__consumer_offsets` is only created by a cluster when a client first asks for a group
//! coordinator (see `groups`), so the upgraded node's own copy wins unless a client asked
//! before the node had adopted its topics, about a second after the quorum has a leader:
//! start the upgraded node before pointing clients at the new cluster.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;

use sluice_metadata::controller::{CreateTopic, ReplicaAssignment};
use sluice_metadata::{MetadataError, MetadataImage};
use sluice_storage::fsutil;
use uuid::Uuid;

use super::ClusterNode;
use crate::errors::BrokerError;
use crate::producer_ids::ProducerIdAllocator;
use crate::state::BrokerState;

/// The marker of an upgrade not finished yet.
pub const UPGRADE_MARKER: &str = "cluster-upgrade-pending";

/// The marker line naming a topic set aside (one per topic).
const SET_ASIDE: &str = "set.aside=";

const MARKER_HEADER: &str =
    "# Topics of a single-node data directory are being adopted by the cluster.\n\
     # Written by sluice-broker; removed when the upgrade is complete.\n";

/// Decides at start, before the metadata quorum creates its directory, whether this data
/// directory is being upgraded (or an upgrade was interrupted), and records it.
pub fn begin(data_dir: &Path, has_topics: bool, joined: bool) -> Result<bool, BrokerError> {
    let marker = data_dir.join(UPGRADE_MARKER);
    if marker.exists() {
        return Ok(true);
    }
    // A directory that joined a cluster before is never a single node's, even if its
    // metadata directory was lost: adopting its topics could bring back deleted ones.
    if joined || !has_topics || data_dir.join(super::METADATA_DIR).exists() {
        return Ok(false);
    }
    write_marker(&marker, &BTreeSet::new())?;
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
    let data_dir = state.config.data_dir.clone();
    let marker = data_dir.join(UPGRADE_MARKER);
    let mut set_aside = match blocking({
        let marker = marker.clone();
        move || read_marker(&marker)
    })
    .await
    {
        Ok(names) => names,
        Err(e) => {
            tracing::error!(error = %e, "cannot read {UPGRADE_MARKER}");
            return false;
        }
    };
    let before = set_aside.len();
    // The highest metadata offset this pass committed: the upgrade is complete only once
    // this broker's image has applied it.
    let mut last_offset = -1i64;
    let mut complete = match reserve_producer_ids(node, &data_dir).await {
        Ok(offset) => {
            last_offset = last_offset.max(offset);
            true
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot reserve the single node's producer ids yet");
            false
        }
    };

    let image = node.image();
    // (local topic id, request), in chunks that fit one controller operation.
    let mut chunks: Vec<Vec<(Uuid, CreateTopic)>> = vec![Vec::new()];
    let mut records = 0usize;
    for topic in state.topics.list() {
        if set_aside.contains(&*topic.name) {
            continue;
        }
        match adopted(&image, topic.id, &topic.name) {
            Adopted::Yes => continue,
            Adopted::Never(reason) => {
                refuse(&mut set_aside, &topic.name, topic.id, &reason);
                continue;
            }
            Adopted::NotYet => {}
        }
        let partitions: Vec<i32> = topic.partitions().iter().map(|p| p.index).collect();
        let contiguous = partitions.iter().enumerate().all(|(i, &p)| i as i32 == p);
        if partitions.is_empty() || !contiguous {
            refuse(
                &mut set_aside,
                &topic.name,
                topic.id,
                &format!("its local partitions {partitions:?} are not 0..n"),
            );
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
            // The local partitions keep their id: no local change, so no crash window.
            topic_id: Some(topic.id),
        };
        if let Some(chunk) = chunks.last_mut() {
            chunk.push((topic.id, request));
        }
    }

    for chunk in chunks.into_iter().filter(|c| !c.is_empty()) {
        let (ids, requests): (Vec<Uuid>, Vec<CreateTopic>) = chunk.into_iter().unzip();
        let names: Vec<String> = requests.iter().map(|r| r.name.clone()).collect();
        let committed = match node.service.create_topics(requests).await {
            Ok(committed) => committed,
            Err(e) => {
                tracing::warn!(topics = names.len(), error = %e, "cannot adopt topics yet");
                complete = false;
                continue;
            }
        };
        last_offset = last_offset.max(committed.offset);
        // The answers are checked against the image that has the change applied.
        let image = match node.wait_applied(committed.offset).await {
            Ok(image) => image,
            Err(e) => {
                tracing::warn!(error = %e, "the adopted topics are not applied here yet");
                complete = false;
                continue;
            }
        };
        if committed.value.len() != names.len() {
            tracing::warn!(
                asked = names.len(),
                answered = committed.value.len(),
                "the controller answered an adoption request for fewer topics than asked; trying again"
            );
            complete = false;
        }
        for ((id, name), answer) in ids.iter().zip(&names).zip(committed.value) {
            match (adopted(&image, *id, name), answer) {
                (Adopted::Yes, _) => {
                    tracing::info!(topic = %name, topic_id = %id, "adopted topic into the cluster");
                }
                // Created, but under another id: a controller that ignores the requested
                // id (an older build). The local replicas do not belong to it.
                (_, Ok(created)) if created.topic_id != *id => refuse(
                    &mut set_aside,
                    name,
                    *id,
                    &format!(
                        "the controller created it with topic id {} instead of the local one (a controller of an older version?)",
                        created.topic_id
                    ),
                ),
                (Adopted::Never(reason), _) => refuse(&mut set_aside, name, *id, &reason),
                (_, Err(e)) if refused_for_good(&e) => {
                    refuse(&mut set_aside, name, *id, &e.to_string())
                }
                (_, Err(e)) => {
                    tracing::warn!(topic = %name, error = %e, "cannot adopt topic yet");
                    complete = false;
                }
                (Adopted::NotYet, Ok(_)) => {
                    tracing::warn!(topic = %name, "an adopted topic is not in the applied image yet");
                    complete = false;
                }
            }
        }
    }

    if set_aside.len() != before {
        let (path, names) = (marker.clone(), set_aside.clone());
        if let Err(e) = blocking(move || write_marker(&path, &names)).await {
            // Only means the refusals are logged and asked again at the next pass.
            tracing::warn!(error = %e, "cannot record the topics set aside in {UPGRADE_MARKER}");
        }
    }
    if !complete {
        return false;
    }
    if node.image().metadata_offset() < last_offset {
        return false;
    }
    let removed = blocking(move || {
        match std::fs::remove_file(&marker) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(BrokerError::io(format!("remove {}", marker.display()), e)),
        }
        fsutil::sync_dir(&data_dir)?;
        Ok(())
    })
    .await;
    if let Err(e) = removed {
        tracing::warn!(error = %e, "cannot remove {UPGRADE_MARKER}");
        return false;
    }
    if set_aside.is_empty() {
        tracing::info!("upgrade complete: every local topic is part of the cluster");
    } else {
        tracing::warn!(
            set_aside = set_aside.len(),
            "upgrade complete; the local replicas of the topics set aside are kept as strays"
        );
    }
    true
}

/// Whether the image has a local topic.
enum Adopted {
    /// The image has the topic under its local id and name.
    Yes,
    /// The image has neither the id nor the name: to create.
    NotYet,
    /// The image has the name under another id, or the id under another name: the
    /// topic can never be adopted.
    Never(String),
}

fn adopted(image: &MetadataImage, id: Uuid, name: &str) -> Adopted {
    if let Some(topic) = image.topic_by_id(id) {
        return if topic.name == name {
            Adopted::Yes
        } else {
            Adopted::Never(format!(
                "the cluster's topic '{}' has its topic id",
                topic.name
            ))
        };
    }
    match image.topic(name) {
        Some(other) => Adopted::Never(format!(
            "the cluster already has a topic of this name, with topic id {}",
            other.id
        )),
        None => Adopted::NotYet,
    }
}

/// Whether the controller refused a topic for a reason asking again cannot change.
fn refused_for_good(e: &MetadataError) -> bool {
    matches!(
        e,
        MetadataError::InvalidTopic(_)
            | MetadataError::TopicAlreadyExists(_)
            | MetadataError::InvalidConfig(_)
            | MetadataError::InvalidRequest(_)
            | MetadataError::InvalidPartitions(_)
            | MetadataError::InvalidReplicationFactor(_)
    )
}

/// Logs (once: the topic is then skipped) why a topic is not adopted.
fn refuse(set_aside: &mut BTreeSet<String>, name: &str, id: Uuid, reason: &str) {
    if set_aside.insert(name.to_owned()) {
        tracing::error!(
            topic = %name,
            topic_id = %id,
            reason,
            "cannot adopt this topic into the cluster; its local replicas will be kept aside as strays"
        );
    }
}

/// Reserves the producer ids the single node handed out (see the module docs). Returns
/// the metadata offset of the reservation, or -1 if none was needed.
async fn reserve_producer_ids(node: &ClusterNode, data_dir: &Path) -> Result<i64, BrokerError> {
    let dir = data_dir.to_owned();
    // Every id the single node handed out is below the start of its next block.
    let floor = blocking(move || ProducerIdAllocator::new(&dir).load()).await?;
    if node.image().next_producer_id() >= floor {
        return Ok(-1);
    }
    let epoch = node.broker_epoch();
    let committed = node
        .service
        .reserve_producer_ids_above(node.node_id, epoch, floor)
        .await
        .map_err(|e| BrokerError::Cluster(format!("reserve producer ids above {floor}: {e}")))?;
    tracing::info!(
        above = floor,
        first = committed.value.first_id,
        "reserved the producer ids the single node handed out"
    );
    Ok(committed.offset)
}

/// The topics recorded as set aside in the marker.
fn read_marker(path: &Path) -> Result<BTreeSet<String>, BrokerError> {
    let bytes = fsutil::read_optional(path)?.unwrap_or_default();
    // Anything else in it (comments, the one-line marker of earlier versions) is ignored:
    // it only lists topics to skip.
    Ok(String::from_utf8_lossy(&bytes)
        .lines()
        .filter_map(|line| line.trim().strip_prefix(SET_ASIDE))
        .filter(|name| !name.is_empty())
        .map(str::to_owned)
        .collect())
}

fn write_marker(path: &Path, set_aside: &BTreeSet<String>) -> Result<(), BrokerError> {
    let mut text = MARKER_HEADER.to_owned();
    for name in set_aside {
        text.push_str(SET_ASIDE);
        text.push_str(name);
        text.push('\n');
    }
    fsutil::write_atomically(path, text.as_bytes())?;
    Ok(())
}

/// Runs file work off the async threads.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, BrokerError> + Send + 'static,
) -> Result<T, BrokerError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| BrokerError::Cluster(format!("file task failed: {e}")))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_marker_keeps_the_topics_set_aside_and_reads_older_markers() {
        let dir = tempfile::tempdir().unwrap();
        assert!(begin(dir.path(), true, false).unwrap());
        let marker = dir.path().join(UPGRADE_MARKER);
        assert!(read_marker(&marker).unwrap().is_empty());
        let names = BTreeSet::from(["a.b".to_owned(), "c_d".to_owned()]);
        write_marker(&marker, &names).unwrap();
        assert_eq!(read_marker(&marker).unwrap(), names);
        assert!(
            begin(dir.path(), true, true).unwrap(),
            "a pending upgrade resumes"
        );
        std::fs::write(
            &marker,
            "topics of a single-node data directory are being adopted by the cluster\n",
        )
        .unwrap();
        assert!(read_marker(&marker).unwrap().is_empty());
        // Not a single node's: joined before, no topics, or a metadata directory.
        let other = tempfile::tempdir().unwrap();
        assert!(!begin(other.path(), true, true).unwrap());
        assert!(!begin(other.path(), false, false).unwrap());
        std::fs::create_dir(other.path().join(super::super::METADATA_DIR)).unwrap();
        assert!(!begin(other.path(), true, false).unwrap());
        assert!(!other.path().join(UPGRADE_MARKER).exists());
    }
}
