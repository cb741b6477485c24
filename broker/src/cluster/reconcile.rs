//! Makes this broker's local replicas match the metadata image (KRaft's
//! `BrokerMetadataPublisher` + `ReplicaManager.applyDelta`, as one idempotent pass).
//!
//! Each pass compares what the image assigns to this broker with what the registry
//! holds, by topic id:
//! - a replica assigned here and missing locally: its log is created (with the topic's
//!   configs from the image);
//! - a local replica the image no longer assigns here: once this broker has caught up with
//!   the metadata (it was unfenced), its log is deleted if its topic was seen in an earlier
//!   image of this process (the topic was deleted, or the replica moved), or set aside as
//!   a stray if this process never saw the topic (see `topics::replicas`);
//! - topic configs: the image's overrides are applied to the local logs.
//!
//! Nothing is deleted before the broker caught up: while the log is being replayed at
//! start, a topic may be missing from the image only because its records are not applied
//! yet. A pass runs after every applied metadata change and once a second (which also
//! retries what failed, e.g. a full disk).

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::Arc;
use std::time::Duration;

use sluice_metadata::{LocalChanges, MetadataImage};
use tokio::sync::watch;
use uuid::Uuid;

use super::ClusterNode;
use crate::state::BrokerState;

/// How often a pass runs without a metadata change.
const PERIODIC_PASS: Duration = Duration::from_secs(1);

/// Runs until shutdown.
pub async fn run(
    state: Arc<BrokerState>,
    node: Arc<ClusterNode>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut offsets = node.service.subscribe();
    let mut seen: HashSet<Uuid> = HashSet::new();
    let mut complaints = Complaints::default();
    let mut previous = Arc::new(MetadataImage::new());
    loop {
        // Settled first, then the image: an image read before would be older than the
        // state that made the broker settled (it may lack the adopted topics).
        let caught_up = node.is_settled();
        let image = node.image();
        if !Arc::ptr_eq(&previous, &image) {
            log_leadership_changes(&previous, &image, node.node_id);
            seen.extend(image.topics().map(|t| t.id));
            forget_offsets_of_deleted_topics(&state, &previous, &image);
        }
        let pass_state = state.clone();
        let pass_image = image.clone();
        let pass_seen = std::mem::take(&mut seen);
        let mut pass_complaints = std::mem::take(&mut complaints);
        let me = node.node_id;
        // Creating and deleting logs writes and fsyncs files.
        let joined = tokio::task::spawn_blocking(move || {
            reconcile(
                &pass_state,
                &pass_image,
                me,
                caught_up,
                &pass_seen,
                &mut pass_complaints,
            );
            (pass_seen, pass_complaints)
        })
        .await;
        match joined {
            Ok((back_seen, back_complaints)) => {
                seen = back_seen;
                complaints = back_complaints;
            }
            Err(e) => tracing::error!(error = %e, "a reconciliation pass failed"),
        }
        node.set_reconciled(image.last_applied().map_or(-1, |p| p.offset));
        previous = image;
        tokio::select! {
            changed = offsets.changed() => if changed.is_err() { return },
            () = tokio::time::sleep(PERIODIC_PASS) => {}
            _ = shutdown.wait_for(|s| *s) => return,
        }
    }
}

/// Topics in `previous` and no longer in `image` (by id: a topic deleted and created
/// again under its name counts) lose their committed offsets in every group this
/// broker coordinates, as in Kafka. Runs in a task of its own: the removal waits for
/// replication.
fn forget_offsets_of_deleted_topics(
    state: &Arc<BrokerState>,
    previous: &MetadataImage,
    image: &MetadataImage,
) {
    let current: HashSet<Uuid> = image.topics().map(|t| t.id).collect();
    let deleted: Vec<String> = previous
        .topics()
        .filter(|t| !current.contains(&t.id))
        .map(|t| t.name.clone())
        .collect();
    if deleted.is_empty() {
        return;
    }
    let state = state.clone();
    tokio::spawn(async move {
        let _settled = state
            .groups
            .call(|coordinator, now| coordinator.forget_topics(&deleted, now))
            .await;
    });
}

/// One pass; see the module docs. Failures are logged and retried by the next pass.
pub fn reconcile(
    state: &BrokerState,
    image: &MetadataImage,
    me: i32,
    caught_up: bool,
    seen: &HashSet<Uuid>,
    complaints: &mut Complaints,
) {
    let registry = &state.topics;
    // (topic id, partition) assigned here.
    let mut assigned: BTreeSet<(Uuid, i32)> = BTreeSet::new();
    for p in image.partitions_on_broker(me) {
        assigned.insert((p.topic_id, p.partition));
    }
    // Removals first: a topic recreated under the same name can only be created once the
    // old one's replicas are gone.
    if caught_up {
        for topic in registry.list() {
            let in_image = image.topic_by_id(topic.id).is_some();
            for p in topic.partitions().iter() {
                if assigned.contains(&(topic.id, p.index)) {
                    continue;
                }
                let (what, result) = if in_image || seen.contains(&topic.id) {
                    ("deleted", registry.remove_replica(topic.id, p.index))
                } else {
                    ("set aside as stray", registry.mark_stray(topic.id, p.index))
                };
                match result {
                    Ok(()) if what == "deleted" => {
                        tracing::info!(topic = %topic.name, partition = p.index, "deleted local replica");
                    }
                    Ok(()) => tracing::warn!(
                        topic = %topic.name,
                        partition = p.index,
                        topic_id = %topic.id,
                        "the metadata does not know this replica's topic: its directory was renamed with the suffix {} and kept",
                        crate::topics::STRAY_SUFFIX
                    ),
                    Err(e) => {
                        tracing::error!(topic = %topic.name, partition = p.index, error = %e.message, "cannot remove local replica ({what})")
                    }
                }
            }
        }
    }
    let empty = BTreeMap::new();
    let mut created = 0usize;
    for &(topic_id, partition) in &assigned {
        let Some(topic) = image.topic_by_id(topic_id) else {
            continue;
        };
        let overrides = image.topic_configs(&topic.name).unwrap_or(&empty);
        let result = registry.ensure_replica(&topic.name, topic_id, partition, overrides);
        if let Some(node) = &state.cluster {
            node.set_replica_error(topic_id, partition, result.as_ref().err().cloned());
        }
        match result {
            Ok(true) => created += 1,
            Ok(false) => {}
            // While an upgrade is pending a local replica may not match the metadata yet
            // (a name the adoption has not reached): expected, retried next pass.
            Err(e) if !caught_up => {
                tracing::debug!(topic = %topic.name, partition, error = %e.message, "cannot create local replica yet");
            }
            Err(e) => {
                if complaints.is_new(format!("create {topic_id}-{partition}"), &e.message) {
                    tracing::warn!(topic = %topic.name, partition, error = %e.message, "cannot create local replica; retrying every second, logged again if the error changes");
                }
            }
        }
    }
    if created > 0 {
        tracing::info!(replicas = created, "created local replicas");
    }
    // After the removals above freed their descriptors: directories of failed creates
    // whose own cleanup found none.
    registry.remove_half_created();
    sync_dynamic_configs(state, image);
    for topic in registry.list() {
        let Some(in_image) = image.topic_by_id(topic.id) else {
            continue;
        };
        let overrides = image.topic_configs(&in_image.name).unwrap_or(&empty);
        if let Err(e) = registry.sync_overrides(topic.id, overrides) {
            if complaints.is_new(format!("configs {}", topic.id), &e.message) {
                tracing::warn!(topic = %topic.name, error = %e.message, "cannot apply topic configs");
            }
        }
    }
}

/// Takes the dynamic broker configs of the image (the cluster default and this broker's)
/// and applies them when they changed (see `dynamic_config`).
fn sync_dynamic_configs(state: &BrokerState, image: &MetadataImage) {
    use sluice_metadata::records::ConfigResource;
    let changed = state.dynamic.sync(
        image.configs(&ConfigResource::ClusterDefault),
        image.configs(&ConfigResource::Broker(state.node_id)),
    );
    if changed {
        crate::dynamic_config::apply(state);
    }
}

/// The errors already logged, so a failure that persists (a full disk, a refused
/// rename) is logged once, not once a second.
#[derive(Debug, Default)]
pub struct Complaints(std::collections::HashMap<String, String>);

impl Complaints {
    /// Records `message` for `key`; whether it differs from what was last logged for it.
    fn is_new(&mut self, key: String, message: &str) -> bool {
        if self.0.get(&key).is_some_and(|m| m == message) {
            return false;
        }
        // Bounded: a pathological number of distinct failures restarts the memory.
        if self.0.len() >= 10_000 {
            self.0.clear();
        }
        self.0.insert(key, message.to_owned());
        true
    }
}

/// Logs the partitions this broker started or stopped leading.
fn log_leadership_changes(old: &MetadataImage, new: &MetadataImage, me: i32) {
    let changes = LocalChanges::between(old, new, me);
    if changes.leaders.is_empty() && changes.followers.is_empty() {
        return;
    }
    for p in &changes.leaders {
        tracing::debug!(topic = %p.topic_name, partition = p.partition, leader_epoch = p.registration.leader_epoch, "leading partition");
    }
    let lost: Vec<_> = changes
        .followers
        .iter()
        .filter(|p| {
            old.partition(p.topic_id, p.partition)
                .is_some_and(|o| o.leader == me)
        })
        .collect();
    for p in &lost {
        tracing::debug!(topic = %p.topic_name, partition = p.partition, leader = p.registration.leader, "no longer leading partition");
    }
    tracing::info!(
        leading = changes.leaders.len(),
        lost_leadership = lost.len(),
        metadata_offset = new.metadata_offset(),
        "partition leadership changed"
    );
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::path::Path;

    use sluice_storage::Flusher;

    use super::*;
    use crate::cluster::test_images::{brokers, image, partition, topic};
    use crate::config::BrokerConfig;
    use crate::datadir;
    use crate::topics::{Layout, TopicRegistry, STRAY_SUFFIX};

    const ME: i32 = 1;

    fn state(dir: &Path) -> BrokerState {
        let props: BTreeMap<String, String> =
            [("log.dirs".to_owned(), dir.to_string_lossy().into_owned())].into();
        let config = BrokerConfig::from_properties(&props).unwrap();
        let flusher = Flusher::start("test").unwrap();
        let (registry, _) = TopicRegistry::load(
            dir,
            flusher,
            config.topic_defaults.clone(),
            config.flush_mode,
            true,
            Layout::Replicas,
        )
        .unwrap();
        BrokerState::for_tests(config, registry)
    }

    fn local(state: &BrokerState) -> Vec<(String, Uuid, i32)> {
        let mut out = Vec::new();
        for t in state.topics.list() {
            for p in t.partitions().iter() {
                out.push((t.name.to_string(), t.id, p.index));
            }
        }
        out
    }

    fn pass(state: &BrokerState, image: &MetadataImage, caught_up: bool, seen: &HashSet<Uuid>) {
        reconcile(
            state,
            image,
            ME,
            caught_up,
            seen,
            &mut Complaints::default(),
        );
    }

    #[test]
    fn replicas_follow_the_image_and_nothing_goes_before_catching_up() {
        let dir = tempfile::tempdir().unwrap();
        let state = state(dir.path());
        let (a, b) = (Uuid::from_u128(1), Uuid::from_u128(2));
        let none = BTreeMap::new();
        // Local replicas: a-0 (stays), a-1 (moves to broker 2), b-0 (unknown topic).
        state.topics.ensure_replica("a", a, 0, &none).unwrap();
        state.topics.ensure_replica("a", a, 1, &none).unwrap();
        state.topics.ensure_replica("b", b, 0, &none).unwrap();

        let mut records = brokers(2);
        records.push(topic("a", a));
        records.push(partition(a, 0, &[1], &[1], 1, 0));
        records.push(partition(a, 1, &[2], &[2], 2, 0));
        records.push(partition(a, 2, &[1], &[1], 1, 0));
        let img = image(&records);

        // Not caught up: only creations.
        pass(&state, &img, false, &HashSet::new());
        let mut expect = vec![
            ("a".to_owned(), a, 0),
            ("a".to_owned(), a, 1),
            ("a".to_owned(), a, 2),
            ("b".to_owned(), b, 0),
        ];
        assert_eq!(local(&state), expect);

        // Caught up: the moved replica is deleted, the unknown topic set aside.
        pass(&state, &img, true, &HashSet::from([a]));
        expect.retain(|(name, _, p)| name == "a" && *p != 1);
        assert_eq!(local(&state), expect);
        assert!(!dir.path().join("a-1").exists());
        assert!(dir
            .path()
            .join(datadir::renamed_partition_dir("b", 0, b, STRAY_SUFFIX))
            .exists());
    }

    #[test]
    fn a_topic_recreated_under_its_name_replaces_the_old_replicas_in_one_pass() {
        let dir = tempfile::tempdir().unwrap();
        let state = state(dir.path());
        let (old, new) = (Uuid::from_u128(1), Uuid::from_u128(2));
        state
            .topics
            .ensure_replica("t", old, 0, &BTreeMap::new())
            .unwrap();
        let mut records = brokers(1);
        records.push(topic("t", new));
        records.push(partition(new, 0, &[1], &[1], 1, 0));
        records.push(retention_config("t"));
        let img = image(&records);
        // The old id was seen in an earlier image: its replica is deleted, not kept.
        pass(&state, &img, true, &HashSet::from([old, new]));
        assert_eq!(local(&state), vec![("t".to_owned(), new, 0)]);
        let t = state.topics.get("t").unwrap();
        assert_eq!(t.config().retention_ms, 1000, "the image's configs apply");
        assert!(!dir
            .path()
            .join(datadir::renamed_partition_dir("t", 0, old, STRAY_SUFFIX))
            .exists());
    }

    /// `retention.ms=1000` on `topic`.
    fn retention_config(topic: &str) -> sluice_metadata::MetadataRecord {
        sluice_metadata::MetadataRecord::Config(sluice_metadata::records::ConfigRecord {
            resource: sluice_metadata::records::ConfigResource::Topic(topic.to_owned()),
            name: "retention.ms".to_owned(),
            value: Some("1000".to_owned()),
        })
    }
}
