//! Committed offsets and group administration through the coordinator's domain API, and
//! persistence: replaying `__consumer_offsets` rebuilds the same state, before and after
//! the real log cleaner compacts it (also a log written with an earlier release's
//! restatements), offsets expire.

mod coordinator_support;

use bytes::Bytes;
use coordinator_support::*;
use kafka_protocol::error::ResponseError;
use sluice_broker::coordinator::*;

const G: &str = "group";

fn fetch(sim: &Sim, group: &str, topics: Option<&[FetchTopic]>) -> FetchResponse {
    sim.coord.fetch_offsets(group, topics)
}

fn topic(name: &str, partitions: &[i32]) -> FetchTopic {
    FetchTopic {
        name: name.to_owned(),
        partitions: partitions.to_vec(),
    }
}

#[test]
fn simple_commits_need_no_membership() {
    let mut sim = Sim::new(config());
    // Unknown group, generation -1, no member: a simple group is created.
    let mut req = commit_req("simple", -1, "", &[("t", 0, 10), ("t", 1, 20), ("u", 0, 5)]);
    req.topics[0].partitions[0].metadata = Some("checkpoint-a".to_owned());
    req.topics[0].partitions[1].leader_epoch = 7;
    let r = sim.commit(&req);
    assert_eq!(commit_errors(&r), [None, None, None]);
    let group = sim.coord.group("simple").unwrap();
    assert_eq!(group.state(), GroupState::Empty);
    assert_eq!(group.protocol_type(), None);

    let all = fetch(&sim, "simple", None);
    assert_eq!(all.error, None);
    let flat: Vec<(String, i32, i64, i32, String)> = all
        .topics
        .iter()
        .flat_map(|t| {
            t.partitions.iter().map(|p| {
                (
                    t.name.clone(),
                    p.partition,
                    p.offset,
                    p.leader_epoch,
                    p.metadata.clone(),
                )
            })
        })
        .collect();
    assert_eq!(
        flat,
        [
            ("t".to_owned(), 0, 10, -1, "checkpoint-a".to_owned()),
            ("t".to_owned(), 1, 20, 7, String::new()),
            ("u".to_owned(), 0, 5, -1, String::new()),
        ]
    );
    // Asked-for partitions without a commit get -1; so does an unknown group.
    let some = fetch(
        &sim,
        "simple",
        Some(&[topic("t", &[1, 9]), topic("zz", &[0])]),
    );
    assert_eq!(some.topics[0].partitions[0].offset, 20);
    assert_eq!(some.topics[0].partitions[1].offset, -1);
    assert_eq!(some.topics[0].partitions[1].metadata, "");
    assert_eq!(some.topics[1].partitions[0].offset, -1);
    let unknown = fetch(&sim, "nobody", Some(&[topic("t", &[0])]));
    assert_eq!(unknown.error, None);
    assert_eq!(unknown.topics[0].partitions[0].offset, -1);
    assert!(fetch(&sim, "nobody", None).topics.is_empty());

    // A second simple commit overwrites.
    let r = sim.commit(&commit_req("simple", -1, "", &[("t", 0, 11)]));
    assert_eq!(commit_errors(&r), [None]);
    assert_eq!(
        fetch(&sim, "simple", Some(&[topic("t", &[0])])).topics[0].partitions[0].offset,
        11
    );
    // The empty group id is accepted for commits, as Kafka does for old clients.
    let r = sim.commit(&commit_req("", -1, "", &[("t", 0, 1)]));
    assert_eq!(commit_errors(&r), [None]);
    sim.assert_replay_matches();
}

#[test]
fn commit_validation_errors_are_kafkas() {
    let mut sim = Sim::new(config());
    // Unknown group with a generation: GROUP_ID_NOT_FOUND from v9, ILLEGAL_GENERATION before.
    let mut req = commit_req("ghost", 3, "m", &[("t", 0, 1)]);
    assert_eq!(
        commit_errors(&sim.commit(&req)),
        [Some(ResponseError::GroupIdNotFound)]
    );
    req.api_version = 8;
    assert_eq!(
        commit_errors(&sim.commit(&req)),
        [Some(ResponseError::IllegalGeneration)]
    );
    assert!(sim.coord.group("ghost").is_none());

    let (ids, generation) = sim.form_group(G, &[join_req(G, "", "a")], |_| Bytes::new());
    let m = ids[0].as_str();
    let cases = [
        (
            commit_req(G, generation, "stranger", &[("t", 0, 1)]),
            ResponseError::UnknownMemberId,
        ),
        (
            commit_req(G, generation + 1, m, &[("t", 0, 1)]),
            ResponseError::IllegalGeneration,
        ),
        // Simple commits are refused once the group has members.
        (
            commit_req(G, -1, "", &[("t", 0, 1)]),
            ResponseError::UnknownMemberId,
        ),
    ];
    for (req, error) in cases {
        assert_eq!(commit_errors(&sim.commit(&req)), [Some(error)], "{req:?}");
    }
    // A valid commit from the member; the metadata string is kept.
    let mut ok = commit_req(G, generation, m, &[("t", 0, 100), ("t", 1, 200)]);
    ok.topics[0].partitions[0].metadata = Some("{\"app\":1}".to_owned());
    assert_eq!(commit_errors(&sim.commit(&ok)), [None, None]);
    let f = fetch(&sim, G, Some(&[topic("t", &[0, 1])]));
    assert_eq!(f.topics[0].partitions[0].metadata, "{\"app\":1}");
    assert_eq!(f.topics[0].partitions[1].offset, 200);

    // Metadata over offset.metadata.max.bytes (counted in UTF-16 units) fails per partition.
    let mut big = commit_req(G, generation, m, &[("t", 0, 1), ("t", 1, 300)]);
    big.topics[0].partitions[0].metadata = Some("x".repeat(4097));
    big.topics[0].partitions[1].metadata = Some("é".repeat(4096));
    assert_eq!(
        commit_errors(&sim.commit(&big)),
        [Some(ResponseError::OffsetMetadataTooLarge), None]
    );
    assert_eq!(
        fetch(&sim, G, Some(&[topic("t", &[0])])).topics[0].partitions[0].offset,
        100
    );

    // During CompletingRebalance: REBALANCE_IN_PROGRESS. The leader rejoins: generation 2
    // completes at once (it is alone) and waits for its SyncGroup.
    let r = sim.join(&join_req(G, m, "a"));
    let g2 = sim.joined(r).generation_id;
    assert_eq!(
        commit_errors(&sim.commit(&commit_req(G, g2, m, &[("t", 0, 1)]))),
        [Some(ResponseError::RebalanceInProgress)]
    );
    sim.assert_replay_matches();
}

#[test]
fn a_commit_counts_as_a_heartbeat() {
    let mut sim = Sim::new(config());
    let (ids, generation) = sim.form_group(G, &[join_req(G, "", "a")], |_| Bytes::new());
    // No heartbeats, only commits every 6 s: the 10 s session never expires.
    for i in 0..5 {
        sim.advance(6_000);
        let r = sim.commit(&commit_req(G, generation, &ids[0], &[("t", 0, i)]));
        assert_eq!(commit_errors(&r), [None]);
    }
    assert!(sim.coord.group(G).unwrap().member(&ids[0]).is_some());
    sim.advance(10_000);
    assert!(sim.coord.group(G).unwrap().member(&ids[0]).is_none());
}

#[test]
fn delete_groups_only_deletes_empty_groups_and_their_offsets() {
    let mut sim = Sim::new(config());
    let (ids, generation) = sim.form_group(G, &[join_req(G, "", "a")], |_| Bytes::new());
    sim.commit(&commit_req(G, generation, &ids[0], &[("t", 0, 7)]));
    sim.commit(&commit_req("simple", -1, "", &[("t", 0, 3)]));
    let out = sim.coord.delete_groups(
        &[
            G.to_owned(),
            "simple".to_owned(),
            "ghost".to_owned(),
            "simple".to_owned(),
        ],
        sim.now,
    );
    let r = sim.apply(out);
    let results: Vec<(&str, Option<ResponseError>)> = r
        .results
        .iter()
        .map(|d| (d.group_id.as_str(), d.error))
        .collect();
    assert_eq!(
        results,
        [
            (G, Some(ResponseError::NonEmptyGroup)),
            ("simple", None),
            ("ghost", Some(ResponseError::GroupIdNotFound)),
        ]
    );
    assert!(sim.coord.group("simple").is_none());
    assert_eq!(
        fetch(&sim, "simple", Some(&[topic("t", &[0])])).topics[0].partitions[0].offset,
        -1
    );

    // Once the member leaves, the group is Empty and can be deleted with its offsets.
    sim.leave(
        G,
        &[LeaveMember {
            member_id: ids[0].clone(),
            group_instance_id: None,
            reason: None,
        }],
    );
    let out = sim.coord.delete_groups(&[G.to_owned()], sim.now);
    assert_eq!(sim.apply(out).results[0].error, None);
    assert!(sim.coord.group(G).is_none());
    assert!(sim.coord.persisted_state().is_empty());
    // The log says the same.
    let replayed = sim.assert_replay_matches();
    assert!(replayed.group(G).is_none());
}

#[test]
fn offset_delete_rules() {
    let mut sim = Sim::new(config());
    // A consumer group subscribed to "t" (the subscription names only "t").
    let (ids, generation) = sim.form_group(G, &[join_req(G, "", "a")], |_| Bytes::new());
    sim.commit(&commit_req(
        G,
        generation,
        &ids[0],
        &[("t", 0, 7), ("old", 0, 9), ("old", 1, 9)],
    ));
    let out = sim
        .coord
        .delete_offsets(G, &[topic("t", &[0]), topic("old", &[0, 5])], sim.now);
    let r = sim.apply(out);
    assert_eq!(r.error, None);
    assert_eq!(
        r.topics[0].partitions,
        [(0, Some(ResponseError::GroupSubscribedToTopic))]
    );
    assert_eq!(r.topics[1].partitions, [(0, None), (5, None)]);
    let f = fetch(&sim, G, None);
    let left: Vec<(String, i32)> = f
        .topics
        .iter()
        .flat_map(|t| t.partitions.iter().map(|p| (t.name.clone(), p.partition)))
        .collect();
    assert_eq!(left, [("old".to_owned(), 1), ("t".to_owned(), 0)]);

    // Unknown group: GROUP_ID_NOT_FOUND.
    let out = sim
        .coord
        .delete_offsets("ghost", &[topic("t", &[0])], sim.now);
    assert_eq!(sim.apply(out).error, Some(ResponseError::GroupIdNotFound));

    // A non-empty group of another protocol type: NON_EMPTY_GROUP.
    let mut connect = join_req("workers", "", "w");
    connect.protocol_type = "connect".to_owned();
    connect.protocols = vec![Protocol::new("default", Bytes::from_static(b"cfg"))];
    let r = sim.join(&connect);
    sim.joined(r);
    let out = sim
        .coord
        .delete_offsets("workers", &[topic("t", &[0])], sim.now);
    assert_eq!(sim.apply(out).error, Some(ResponseError::NonEmptyGroup));

    // A simple (Empty) group deletes anything.
    sim.commit(&commit_req("simple", -1, "", &[("t", 0, 1)]));
    let out = sim
        .coord
        .delete_offsets("simple", &[topic("t", &[0])], sim.now);
    assert_eq!(sim.apply(out).topics[0].partitions, [(0, None)]);
    sim.assert_replay_matches();
}

#[test]
fn list_and_describe_groups() {
    let mut sim = Sim::new(config());
    let (ids, _) = sim.form_group(G, &[join_req(G, "", "a")], |_| {
        assignment(&[("t", &[0, 1])])
    });
    sim.commit(&commit_req("simple", -1, "", &[("t", 0, 1)]));
    let all = sim.coord.list_groups(&[], &[]);
    assert_eq!(all.error, None);
    let listed: Vec<(&str, &str, GroupState)> = all
        .groups
        .iter()
        .map(|g| (g.group_id.as_str(), g.protocol_type.as_str(), g.state))
        .collect();
    assert_eq!(
        listed,
        [
            (G, "consumer", GroupState::Stable),
            ("simple", "", GroupState::Empty)
        ]
    );
    let stable = sim.coord.list_groups(&[" stable ".to_owned()], &[]);
    assert_eq!(stable.groups.len(), 1);
    let empty = sim.coord.list_groups(
        &["EMPTY".to_owned(), "Dead".to_owned()],
        &["Classic".to_owned()],
    );
    assert_eq!(empty.groups.len(), 1);
    assert_eq!(empty.groups[0].group_id, "simple");
    assert!(sim
        .coord
        .list_groups(&[], &["consumer".to_owned()])
        .groups
        .is_empty());

    let d = sim
        .coord
        .describe_groups(&[G.to_owned(), "simple".to_owned(), "ghost".to_owned()]);
    assert_eq!(d[0].state, GroupState::Stable);
    assert_eq!(d[0].protocol_type, "consumer");
    assert_eq!(d[0].protocol_data, "range");
    assert_eq!(d[0].members.len(), 1);
    let m = &d[0].members[0];
    assert_eq!(m.member_id, ids[0]);
    assert_eq!(m.client_id, "a");
    assert_eq!(m.client_host, "/127.0.0.1");
    assert_eq!(m.metadata, subscription(&["t"]));
    assert_eq!(m.assignment, assignment(&[("t", &[0, 1])]));
    assert_eq!(d[1].state, GroupState::Empty);
    assert!(d[1].members.is_empty());
    assert_eq!(d[2].state, GroupState::Dead);
    assert_eq!(d[2].error, Some(ResponseError::GroupIdNotFound));

    // While rebalancing, no protocol data and no member metadata.
    let r = sim.join(&join_req(G, &ids[0], "a"));
    let _ = sim.joined(r);
    let d = sim.coord.describe_groups(&[G.to_owned()]);
    assert_eq!(d[0].state, GroupState::CompletingRebalance);
    assert_eq!(d[0].protocol_data, "");
    assert!(d[0].members[0].metadata.is_empty());
}

#[test]
fn lag_is_log_end_minus_committed() {
    let mut sim = Sim::new(config());
    let (ids, generation) = sim.form_group(G, &[join_req(G, "", "a")], |_| {
        assignment(&[("t", &[0, 1, 2])])
    });
    sim.commit(&commit_req(
        G,
        generation,
        &ids[0],
        &[("t", 0, 90), ("t", 1, 100), ("gone", 0, 5)],
    ));
    let rows = sim
        .coord
        .group_lag(G, |topic, partition| match (topic, partition) {
            ("t", _) => Some(100),
            _ => None,
        })
        .unwrap();
    type Row<'a> = (&'a str, i32, Option<i64>, Option<i64>, Option<&'a str>);
    let view: Vec<Row> = rows
        .iter()
        .map(|r| {
            (
                r.topic.as_str(),
                r.partition,
                r.committed_offset,
                r.lag,
                r.member_id.as_deref(),
            )
        })
        .collect();
    assert_eq!(
        view,
        [
            ("gone", 0, Some(5), None, None),
            ("t", 0, Some(90), Some(10), Some(ids[0].as_str())),
            ("t", 1, Some(100), Some(0), Some(ids[0].as_str())),
            ("t", 2, None, None, Some(ids[0].as_str())),
        ]
    );
    assert_eq!(lag(5, 3), 0);
    assert!(sim.coord.group_lag("ghost", |_, _| None).is_none());
}

#[test]
fn replaying_the_log_rebuilds_the_same_state() {
    let mut sim = Sim::new(config());
    // Several groups across partitions, with rebalances, commits, deletions.
    let mut members = Vec::new();
    for g in 0..6 {
        let group = format!("group-{g}");
        let (ids, generation) = sim.form_group(&group, &[join_req(&group, "", "c")], |i| {
            assignment(&[("t", &[i as i32])])
        });
        for round in 0..5 {
            sim.commit(&commit_req(
                &group,
                generation,
                &ids[0],
                &[("t", 0, round), ("u", g, round * 2)],
            ));
        }
        members.push((group, ids[0].clone(), generation));
    }
    for s in 0..4 {
        sim.commit(&commit_req(
            &format!("simple-{s}"),
            -1,
            "",
            &[("t", s, 1000 + i64::from(s))],
        ));
    }
    let out = sim
        .coord
        .delete_offsets("simple-0", &[topic("t", &[0])], sim.now);
    sim.apply(out);
    let (group, member, _) = &members[5];
    let (group, member) = (group.clone(), member.clone());
    sim.leave(
        &group,
        &[LeaveMember {
            member_id: member,
            group_instance_id: None,
            reason: None,
        }],
    );
    let out = sim
        .coord
        .delete_groups(std::slice::from_ref(&group), sim.now);
    sim.apply(out);

    let replayed = sim.assert_replay_matches();
    assert_eq!(replayed.persisted_state().len(), 5 + 3);
    // Loaded groups are Stable with their members, who carry on heartbeating.
    let (group, member, generation) = &members[0];
    let g = replayed.group(group).unwrap();
    assert_eq!(g.state(), GroupState::Stable);
    assert_eq!(g.generation_id(), *generation);
    assert_eq!(
        g.member(member).unwrap().assignment(),
        &assignment(&[("t", &[0])])
    );
    let mut replayed = replayed;
    let now = sim.now;
    let out = replayed.heartbeat(&hb_req(group, *generation, member), now + 5_000);
    assert_eq!(out.reply.error, None);
    let out = replayed.sync_group(&sync_req(group, *generation, member), now + 5_000);
    assert_eq!(
        out.reply.now().unwrap().assignment,
        assignment(&[("t", &[0])])
    );
    // Another loaded member that never heartbeats expires one session after the load.
    let (other, other_member, _) = &members[1];
    assert!(replayed
        .group(other)
        .unwrap()
        .member(other_member)
        .is_some());
    let _ = replayed.tick(now + 10_000);
    assert!(replayed
        .group(other)
        .unwrap()
        .member(other_member)
        .is_none());
    assert!(replayed.group(group).unwrap().member(member).is_some());
}

#[test]
fn requests_wait_for_the_load() {
    let mut coordinator = GroupCoordinator::new_loading(config());
    let join = coordinator
        .join_group(&join_req(G, "", "a"), 0)
        .reply
        .now()
        .unwrap();
    assert_eq!(join.error, Some(ResponseError::CoordinatorLoadInProgress));
    let commit = coordinator.commit_offsets(&commit_req(G, -1, "", &[("t", 0, 1)]), 0);
    assert_eq!(
        commit_errors(&commit.reply),
        [Some(ResponseError::CoordinatorLoadInProgress)]
    );
    assert_eq!(
        coordinator.fetch_offsets(G, None).error,
        Some(ResponseError::CoordinatorLoadInProgress)
    );
    // Heartbeats are answered blindly while loading, as Kafka does.
    assert_eq!(
        coordinator.heartbeat(&hb_req(G, 1, "m"), 0).reply.error,
        None
    );
    let out = coordinator.finish_load(0);
    assert!(out.writes.is_empty());
    assert!(!coordinator.is_loading());
    let join = coordinator
        .join_group(&join_req(G, "", "a"), 0)
        .reply
        .now()
        .unwrap();
    assert_eq!(join.error, None);
}

/// The records of `partition` of `log`, decoded.
fn records_of(log: &SimLog, partition: i32) -> Vec<Record> {
    let p = &log.partitions[&partition];
    p.batches
        .iter()
        .flat_map(|(_, batch)| store::decode_batch(partition, batch.clone(), p.log_start).unwrap())
        .map(|(_, record)| record)
        .collect()
}

/// The live state of one `__consumer_offsets` partition, as a coordinator knows it.
fn state_of(
    coordinator: &GroupCoordinator,
    partition: i32,
) -> std::collections::BTreeMap<String, PersistedGroup> {
    coordinator
        .persisted_state()
        .into_iter()
        .filter(|(g, _)| coordinator.partition_for(g) == partition)
        .collect()
}

#[test]
fn the_cleaner_keeps_the_offsets_topic_bounded() {
    let mut sim = Sim::new(CoordinatorConfig {
        offsets_batch_bytes: 300,
        ..config()
    });
    let (ids, generation) = sim.form_group(G, &[join_req(G, "", "a")], |_| {
        assignment(&[("t", &[0, 1])])
    });
    let partition = sim.coord.partition_for(G);
    for i in 0..2_000 {
        let r = sim.commit(&commit_req(
            G,
            generation,
            &ids[0],
            &[("t", 0, i), ("t", 1, i * 2)],
        ));
        assert_eq!(commit_errors(&r), [None, None]);
    }
    assert!(records_of(&sim.log, partition).len() > 4_000);
    // The coordinator deletes nothing itself; the cleaner leaves one record per live key:
    // the group's and its two offsets.
    let (cleaned, removed) = sim.log.cleaned(1_000, sim.now);
    assert!(removed >= 4_000 - 3, "{removed} records removed");
    let kept = records_of(&cleaned, partition);
    assert_eq!(kept.len(), 3, "{kept:?}");
    let (replayed, writes) = cleaned.replay(sim.config.clone(), sim.now);
    assert!(writes.is_empty());
    assert_eq!(replayed.persisted_state(), sim.coord.persisted_state());
    let f = replayed.fetch_offsets(G, Some(&[topic("t", &[0, 1])]));
    assert_eq!(f.topics[0].partitions[0].offset, 1_999);
    assert_eq!(f.topics[0].partitions[1].offset, 3_998);
    assert_eq!(replayed.group(G).unwrap().state(), GroupState::Stable);
}

#[test]
fn cleaning_keeps_the_live_state_with_or_without_its_tombstones() {
    let mut sim = Sim::new(config());
    for i in 0..60 {
        let group = format!("g{}", i % 7);
        sim.commit(&commit_req(&group, -1, "", &[("t", i % 5, i64::from(i))]));
        if i % 11 == 0 {
            let out = sim
                .coord
                .delete_offsets(&group, &[topic("t", &[0, 1])], sim.now);
            sim.apply(out);
        }
    }
    // A whole group goes: its offsets (and group record, if any) are tombstoned.
    let out = sim.coord.delete_groups(&["g3".to_owned()], sim.now);
    sim.apply(out);
    assert!(sim.coord.group("g3").is_none());
    // With the tombstones still in the retention window, and past it: every partition of
    // the cleaned log rebuilds exactly its live state, deleted keys stay deleted.
    let mut tombstones_left = Vec::new();
    for retention in [86_400_000, 0] {
        let (cleaned, _) = sim.log.cleaned(retention, sim.now);
        let mut tombstones = 0;
        for partition in cleaned.partitions.keys() {
            let mut only_this = SimLog::default();
            only_this
                .partitions
                .insert(*partition, cleaned.partitions[partition].clone());
            let (replayed, _) = only_this.replay(sim.config.clone(), sim.now);
            assert_eq!(
                replayed.persisted_state(),
                state_of(&sim.coord, *partition),
                "partition {partition}, delete.retention.ms {retention}"
            );
            tombstones += records_of(&cleaned, *partition)
                .iter()
                .filter(|r| {
                    matches!(
                        r,
                        Record::Offset { value: None, .. } | Record::Group { value: None, .. }
                    )
                })
                .count();
        }
        tombstones_left.push(tombstones);
    }
    // Tombstones past their retention were dropped by the later cleans (those of the last
    // part were seen by one clean only, and stay).
    assert!(
        tombstones_left[1] < tombstones_left[0],
        "tombstones left: {tombstones_left:?}"
    );
}

#[test]
fn a_log_written_with_restatements_replays_the_same_before_and_after_cleaning() {
    // An earlier release bounded the topic by restating a partition (a marker, then a copy
    // of every live record) and deleting what came before the marker once it was durable.
    // A data directory it left must load unchanged, and clean to the same state.
    let mut sim = Sim::new(config());
    let restate = |sim: &mut Sim, partition: i32, delete: bool| {
        let live: Vec<Record> = state_of(&sim.coord, partition)
            .into_iter()
            .flat_map(|(group, persisted)| {
                let metadata = persisted.metadata.map(|value| Record::Group {
                    group: group.clone(),
                    value: Some(value),
                });
                let offsets =
                    persisted
                        .offsets
                        .into_iter()
                        .map(move |((t, p), v)| Record::Offset {
                            group: group.clone(),
                            topic: t,
                            partition: p,
                            value: Some(v),
                        });
                metadata.into_iter().chain(offsets)
            })
            .collect();
        let mut records = vec![Record::Restatement {
            records: live.len() as u64,
        }];
        records.extend(live);
        let base = sim.log.partitions.get(&partition).map_or(0, |p| p.log_end);
        let bytes = store::encode_batches(&records, sim.now, 512 * 1024).unwrap();
        sim.log.append_records(partition, &bytes);
        if delete {
            sim.log.delete_before(partition, base);
        }
    };
    let mut restated = std::collections::BTreeSet::new();
    for i in 0..90 {
        let group = format!("g{}", i % 6);
        sim.commit(&commit_req(&group, -1, "", &[("t", i % 4, i64::from(i))]));
        if i % 13 == 12 {
            let partition = sim.coord.partition_for(&group);
            // The last restatement of a partition may have crashed before its deletion.
            restate(&mut sim, partition, i < 80);
            restated.insert(partition);
        }
    }
    assert!(restated.len() >= 2);
    for partition in &restated {
        assert!(records_of(&sim.log, *partition)
            .iter()
            .any(|r| matches!(r, Record::Restatement { .. })));
    }
    // Loading as it is: the markers are skipped, and nothing is restated any more.
    let (replayed, writes) = sim.log.replay(sim.config.clone(), sim.now);
    assert!(writes.is_empty());
    assert_eq!(replayed.persisted_state(), sim.coord.persisted_state());
    // Cleaned (a log with a log start offset past 0 among them): the same state, and the
    // markers, all of one key, are down to one per partition.
    let (cleaned, _) = sim.log.cleaned(0, sim.now);
    let (replayed, _) = cleaned.replay(sim.config.clone(), sim.now);
    assert_eq!(replayed.persisted_state(), sim.coord.persisted_state());
    for partition in &restated {
        let markers = records_of(&cleaned, *partition)
            .iter()
            .filter(|r| matches!(r, Record::Restatement { .. }))
            .count();
        assert_eq!(markers, 1, "partition {partition}");
    }
}

#[test]
fn offsets_of_empty_groups_expire_and_the_group_goes() {
    let retention = 60_000;
    let mut sim = Sim::new(CoordinatorConfig {
        offsets_retention_ms: retention,
        offsets_retention_check_interval_ms: 10_000,
        ..config()
    });
    let (ids, generation) = sim.form_group(G, &[join_req(G, "", "a")], |_| Bytes::new());
    sim.commit(&commit_req(G, generation, &ids[0], &[("t", 0, 5)]));
    sim.commit(&commit_req("simple", -1, "", &[("t", 0, 1)]));
    // While the consumer group is Stable and subscribed to "t", its offsets stay.
    for _ in 0..24 {
        sim.advance(5_000);
        let _ = sim.heartbeat(&hb_req(G, generation, &ids[0]));
    }
    assert!(sim.coord.group(G).unwrap().committed_offsets().len() == 1);
    // The simple group's offset expired (retention counts from its commit).
    assert!(sim.coord.group("simple").is_none());
    // The member leaves: retention now counts from when the group became Empty.
    sim.leave(
        G,
        &[LeaveMember {
            member_id: ids[0].clone(),
            group_instance_id: None,
            reason: None,
        }],
    );
    sim.advance(50_000);
    assert!(sim.coord.group(G).is_some());
    sim.advance(20_000);
    assert!(sim.coord.group(G).is_none());
    let replayed = sim.assert_replay_matches();
    assert!(replayed.persisted_state().is_empty());
}

#[test]
fn failed_appends_turn_answers_into_errors() {
    let mut coordinator = GroupCoordinator::new(config());
    let mut out = coordinator.commit_offsets(&commit_req("s", -1, "", &[("t", 0, 1)]), 0);
    assert_eq!(out.writes.len(), 1);
    out.fail(ResponseError::KafkaStorageError);
    assert!(out.writes.is_empty());
    assert_eq!(
        commit_errors(&out.reply),
        [Some(ResponseError::NotCoordinator)]
    );
    assert_eq!(
        append_error(ResponseError::RequestTimedOut),
        ResponseError::CoordinatorNotAvailable
    );
    assert_eq!(
        append_error(ResponseError::MessageTooLarge),
        ResponseError::UnknownServerError
    );

    // A leader's SyncGroup whose group record cannot be written: every parked member
    // hears NOT_COORDINATOR (and goes looking for the coordinator again).
    let r = coordinator
        .join_group(&join_req("g", "", "a"), 0)
        .reply
        .now()
        .unwrap();
    let mut sync = sync_req("g", r.generation_id, &r.member_id);
    sync.assignments = vec![(r.member_id.clone(), Bytes::from_static(b"a"))];
    let mut out = coordinator.sync_group(&sync, 0);
    assert_eq!(out.writes.len(), 1);
    out.fail(ResponseError::KafkaStorageError);
    let reply = out.reply.now().unwrap();
    assert_eq!(reply.error, Some(ResponseError::NotCoordinator));
    assert!(reply.assignment.is_empty());
}
