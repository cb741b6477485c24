//! The classic group state machine, driven without sockets and with an explicit clock:
//! join/sync, KIP-394, heartbeats and session expiry, leave, stale generations, static
//! membership, cooperative rebalances, rebalance and sync timeouts.

mod coordinator_support;

use bytes::Bytes;
use coordinator_support::*;
use kafka_protocol::error::ResponseError;
use sluice_broker::coordinator::*;

const G: &str = "group";

/// A sim whose initial rebalance delay gathers members that join together.
fn delayed_sim() -> Sim {
    Sim::new(CoordinatorConfig {
        group_initial_rebalance_delay_ms: 100,
        ..config()
    })
}

#[test]
fn three_members_join_and_sync_in_one_generation() {
    let mut sim = delayed_sim();
    let a = sim.join(&join_req(G, "", "a"));
    let b = sim.join(&join_req(G, "", "b"));
    let c = sim.join(&join_req(G, "", "c"));
    assert!(a.ticket().is_some() && b.ticket().is_some() && c.ticket().is_some());
    assert_eq!(
        sim.coord.group(G).unwrap().state(),
        GroupState::PreparingRebalance
    );
    // The first delay ends but members arrived during it: Kafka waits one more delay.
    assert_eq!(sim.coord.next_deadline(), Some(sim.now + 100));
    sim.advance(100);
    assert!(sim.done.is_empty());
    sim.advance(100);
    let (a, b, c) = (sim.joined(a), sim.joined(b), sim.joined(c));
    for r in [&a, &b, &c] {
        assert_eq!(r.error, None);
        assert_eq!(r.generation_id, 1);
        assert_eq!(r.protocol_name.as_deref(), Some("range"));
        assert_eq!(r.protocol_type.as_deref(), Some("consumer"));
        assert_eq!(r.leader, a.member_id);
    }
    assert!(a.member_id.starts_with("a-"), "{}", a.member_id);
    // Only the leader gets the members and their metadata.
    assert_eq!(a.members.len(), 3);
    assert!(a.members.iter().all(|m| m.metadata == subscription(&["t"])));
    assert!(b.members.is_empty() && c.members.is_empty());
    assert_eq!(
        sim.coord.group(G).unwrap().state(),
        GroupState::CompletingRebalance
    );

    // Followers wait for the leader's assignment.
    let sb = sim.sync(&sync_req(G, 1, &b.member_id));
    let sc = sim.sync(&sync_req(G, 1, &c.member_id));
    assert!(sb.ticket().is_some() && sc.ticket().is_some());
    // A commit now is refused: the member has the generation but not its assignment.
    let r = sim.commit(&commit_req(G, 1, &b.member_id, &[("t", 0, 5)]));
    assert_eq!(
        commit_errors(&r),
        [Some(ResponseError::RebalanceInProgress)]
    );
    // Heartbeats are fine while completing.
    assert_eq!(sim.heartbeat(&hb_req(G, 1, &b.member_id)), None);

    let mut leader_sync = sync_req(G, 1, &a.member_id);
    leader_sync.assignments = vec![
        (a.member_id.clone(), assignment(&[("t", &[0])])),
        (b.member_id.clone(), assignment(&[("t", &[1])])),
        // c is missing: it gets an empty assignment.
    ];
    let writes_before = sim.log.records(sim.coord.partition_for(G));
    let sa = sim.sync(&leader_sync);
    let sa = sim.synced(sa);
    assert_eq!(sa.error, None);
    assert_eq!(sa.assignment, assignment(&[("t", &[0])]));
    assert_eq!(sa.protocol_name.as_deref(), Some("range"));
    let sb = sim.synced(sb);
    assert_eq!(sb.assignment, assignment(&[("t", &[1])]));
    let sc = sim.synced(sc);
    assert_eq!(sc.error, None);
    assert!(sc.assignment.is_empty());
    // The Stable group was written to __consumer_offsets.
    assert_eq!(
        sim.log.records(sim.coord.partition_for(G)),
        writes_before + 1
    );
    let group = sim.coord.group(G).unwrap();
    assert_eq!(group.state(), GroupState::Stable);
    assert_eq!(group.generation_id(), 1);
    // A follower syncing again in Stable gets its stored assignment at once.
    let again = sim.sync(&sync_req(G, 1, &b.member_id));
    assert_eq!(again.now().unwrap().assignment, assignment(&[("t", &[1])]));
    sim.assert_replay_matches();
}

#[test]
fn member_id_required_handshake() {
    let mut sim = Sim::new(config());
    let mut req = join_req(G, "", "client");
    req.require_known_member_id = true;
    let first = sim.join(&req).now().expect("answered at once");
    assert_eq!(first.error, Some(ResponseError::MemberIdRequired));
    assert!(first.member_id.starts_with("client-"));
    assert_eq!(first.generation_id, -1);
    let group = sim.coord.group(G).unwrap();
    assert_eq!(group.member_count(), 0);
    assert_eq!(
        group.pending_member_ids().collect::<Vec<_>>(),
        [first.member_id.as_str()]
    );

    req.member_id = first.member_id.clone();
    let second = sim.join(&req);
    let second = sim.joined(second);
    assert_eq!(second.error, None);
    assert_eq!(second.member_id, first.member_id);
    assert_eq!(second.generation_id, 1);
    assert_eq!(second.leader, first.member_id);
    assert_eq!(sim.coord.group(G).unwrap().pending_member_ids().count(), 0);

    // A member id the group never handed out is unknown.
    req.member_id = "client-made-up".to_owned();
    let bogus = sim.join(&req).now().unwrap();
    assert_eq!(bogus.error, Some(ResponseError::UnknownMemberId));
    // So is any member id for a group that does not exist.
    let mut other = join_req("nope", "client-x", "client");
    other.require_known_member_id = true;
    assert_eq!(
        sim.join(&other).now().unwrap().error,
        Some(ResponseError::UnknownMemberId)
    );
    assert!(sim.coord.group("nope").is_none());
}

#[test]
fn a_pending_member_holds_the_rebalance_until_it_expires() {
    let mut sim = Sim::new(config());
    let (ids, generation) = sim.form_group(G, &[join_req(G, "", "a")], |_| Bytes::new());
    // A second client gets a member id but never comes back.
    let mut req = join_req(G, "", "b");
    req.require_known_member_id = true;
    let pending = sim.join(&req).now().unwrap();
    assert_eq!(pending.error, Some(ResponseError::MemberIdRequired));
    // The leader rejoins: the group rebalances but waits for the pending member too.
    let rejoin = sim.join(&join_req(G, &ids[0], "a"));
    assert!(rejoin.ticket().is_some());
    assert_eq!(
        sim.coord.group(G).unwrap().state(),
        GroupState::PreparingRebalance
    );
    // The pending id expires after its session timeout (10 s) and the join completes.
    sim.advance(9_999);
    assert!(sim.done.is_empty());
    sim.advance(1);
    let r = sim.joined(rejoin);
    assert_eq!(r.generation_id, generation + 1);
    assert_eq!(sim.coord.group(G).unwrap().pending_member_ids().count(), 0);
}

#[test]
fn session_expiry_removes_a_member_and_survivors_rebalance() {
    let mut sim = delayed_sim();
    let reqs = [
        join_req(G, "", "a"),
        join_req(G, "", "b"),
        join_req(G, "", "c"),
    ];
    let replies: Vec<_> = reqs.iter().map(|r| sim.join(r)).collect();
    sim.advance(100);
    sim.advance(100);
    let joined: Vec<JoinResponse> = replies.into_iter().map(|r| sim.joined(r)).collect();
    let ids: Vec<String> = joined.iter().map(|r| r.member_id.clone()).collect();
    let leader = joined[0].leader.clone();
    let mut syncs = Vec::new();
    for id in &ids {
        let mut s = sync_req(G, 1, id);
        if *id == leader {
            s.assignments = ids
                .iter()
                .map(|m| (m.clone(), Bytes::from_static(b"x")))
                .collect();
        }
        syncs.push(sim.sync(&s));
    }
    for s in syncs {
        assert_eq!(sim.synced(s).error, None);
    }
    // b and c heartbeat every 3 s; a never does. a's session (10 s) started when its
    // SyncGroup was answered.
    let expiry = sim.now + 10_000;
    for _ in 0..3 {
        sim.advance(3_000);
        assert_eq!(sim.heartbeat(&hb_req(G, 1, &ids[1])), None);
        assert_eq!(sim.heartbeat(&hb_req(G, 1, &ids[2])), None);
    }
    assert_eq!(sim.coord.group(G).unwrap().state(), GroupState::Stable);
    assert!(sim.coord.next_deadline().unwrap() <= expiry);
    sim.now = expiry - 1;
    sim.advance(1);
    let group = sim.coord.group(G).unwrap();
    assert!(group.member(&ids[0]).is_none());
    assert_eq!(group.state(), GroupState::PreparingRebalance);
    // Survivors learn about the rebalance from their heartbeats, then rejoin.
    assert_eq!(
        sim.heartbeat(&hb_req(G, 1, &ids[1])),
        Some(ResponseError::RebalanceInProgress)
    );
    assert_eq!(
        sim.heartbeat(&hb_req(G, 1, &ids[0])),
        Some(ResponseError::UnknownMemberId)
    );
    let rb = sim.join(&join_req(G, &ids[1], "b"));
    assert!(rb.ticket().is_some());
    let rc = sim.join(&join_req(G, &ids[2], "c"));
    let (rb, rc) = (sim.joined(rb), sim.joined(rc));
    assert_eq!(rb.generation_id, 2);
    assert_eq!(rc.generation_id, 2);
    // The old leader is gone: a survivor leads now and sees exactly the survivors.
    assert_ne!(rb.leader, ids[0]);
    let leader = if rb.leader == ids[1] { &rb } else { &rc };
    let mut members: Vec<&str> = leader
        .members
        .iter()
        .map(|m| m.member_id.as_str())
        .collect();
    members.sort_unstable();
    let mut expected = vec![ids[1].as_str(), ids[2].as_str()];
    expected.sort_unstable();
    assert_eq!(members, expected);
}

#[test]
fn members_parked_in_join_are_kept_alive_until_the_rebalance_timeout() {
    let mut sim = Sim::new(config());
    let reqs = [join_req(G, "", "a"), join_req(G, "", "b")];
    let mut first = sim.join(&reqs[0]);
    let a_id = sim.joined(first).member_id;
    // b joins: the group (CompletingRebalance with a alone) rebalances.
    let b = sim.join(&reqs[1]);
    assert!(b.ticket().is_some());
    // a learns it must rejoin (its SyncGroup says so) and does.
    let s = sim.sync(&sync_req(G, 1, &a_id));
    assert_eq!(
        sim.synced(s).error,
        Some(ResponseError::RebalanceInProgress)
    );
    first = sim.join(&join_req(G, &a_id, "a"));
    let (ra, rb) = (sim.joined(first), sim.joined(b));
    assert_eq!((ra.generation_id, rb.generation_id), (2, 2));
    let b_id = rb.member_id.clone();

    // Stable at generation 3 with both, then a rejoins (leader): b must rejoin within the
    // rebalance timeout (30 s), while a, parked, needs no heartbeat.
    let mut leader = sync_req(G, 2, &ra.leader);
    leader.assignments = vec![(a_id.clone(), Bytes::new()), (b_id.clone(), Bytes::new())];
    let follower = if ra.leader == a_id {
        b_id.clone()
    } else {
        a_id.clone()
    };
    let fs = sim.sync(&sync_req(G, 2, &follower));
    let ls = sim.sync(&leader);
    sim.synced(ls);
    sim.synced(fs);
    let parked = sim.join(&join_req(G, &ra.leader, "x"));
    assert!(parked.ticket().is_some());
    // The follower heartbeats (learning about the rebalance) but never rejoins.
    for _ in 0..9 {
        sim.advance(3_000);
        assert_eq!(
            sim.heartbeat(&hb_req(G, 2, &follower)),
            Some(ResponseError::RebalanceInProgress)
        );
    }
    // The leader's session timeout (10 s) passed long ago; it is still there.
    assert!(sim.coord.group(G).unwrap().member(&ra.leader).is_some());
    sim.advance(3_000);
    // Rebalance timeout: the follower did not rejoin and is removed.
    let r = sim.joined(parked);
    assert_eq!(r.generation_id, 3);
    assert_eq!(r.members.len(), 1);
    assert!(sim.coord.group(G).unwrap().member(&follower).is_none());
}

#[test]
fn new_member_expires_if_its_first_join_waits_too_long() {
    // A new member's parked JoinGroup is bounded by the new-member join timeout, not by
    // the (possibly much longer) rebalance timeout.
    let mut sim = Sim::new(CoordinatorConfig {
        new_member_join_timeout_ms: 5_000,
        ..config()
    });
    let (ids, _) = sim.form_group(G, &[join_req(G, "", "a")], |_| Bytes::new());
    let mut slow = join_req(G, "", "b");
    slow.rebalance_timeout_ms = 60_000;
    let b = sim.join(&slow);
    // a keeps heartbeating but never rejoins; b waits.
    for _ in 0..2 {
        sim.advance(2_000);
        let _ = sim.heartbeat(&hb_req(G, 1, &ids[0]));
    }
    sim.advance(1_000);
    let answer = sim.joined(b);
    assert_eq!(answer.error, Some(ResponseError::UnknownMemberId));
    assert_eq!(answer.member_id, "");
}

#[test]
fn leave_group_triggers_a_rebalance_and_reports_per_member_errors() {
    let mut sim = delayed_sim();
    let reqs = [join_req(G, "", "a"), join_req(G, "", "b")];
    let (ids, generation) = {
        let replies: Vec<_> = reqs.iter().map(|r| sim.join(r)).collect();
        sim.advance(100);
        sim.advance(100);
        let joined: Vec<JoinResponse> = replies.into_iter().map(|r| sim.joined(r)).collect();
        let ids: Vec<String> = joined.iter().map(|r| r.member_id.clone()).collect();
        let mut leader = sync_req(G, 1, &joined[0].leader);
        leader.assignments = ids.iter().map(|i| (i.clone(), Bytes::new())).collect();
        let other = ids
            .iter()
            .find(|i| **i != joined[0].leader)
            .unwrap()
            .clone();
        let f = sim.sync(&sync_req(G, 1, &other));
        let l = sim.sync(&leader);
        sim.synced(l);
        sim.synced(f);
        (ids, 1)
    };
    let r = sim.leave(
        G,
        &[
            LeaveMember {
                member_id: ids[0].clone(),
                group_instance_id: None,
                reason: Some("bye".to_owned()),
            },
            LeaveMember {
                member_id: "stranger".to_owned(),
                group_instance_id: None,
                reason: None,
            },
        ],
    );
    assert_eq!(r.error, None);
    assert_eq!(r.members[0].error, None);
    assert_eq!(r.members[1].error, Some(ResponseError::UnknownMemberId));
    let group = sim.coord.group(G).unwrap();
    assert_eq!(group.member_count(), 1);
    assert_eq!(group.state(), GroupState::PreparingRebalance);
    // The remaining member rejoins alone: a new generation at once.
    let rb = sim.join(&join_req(G, &ids[1], "b"));
    let rb = sim.joined(rb);
    assert_eq!(rb.generation_id, generation + 1);
    assert_eq!(rb.leader, ids[1]);
    // The last member leaves: the group is Empty with the next generation, and that is
    // written down.
    let r = sim.leave(
        G,
        &[LeaveMember {
            member_id: ids[1].clone(),
            group_instance_id: None,
            reason: None,
        }],
    );
    assert_eq!(r.members[0].error, None);
    let group = sim.coord.group(G).unwrap();
    assert_eq!(group.state(), GroupState::Empty);
    assert_eq!(group.generation_id(), generation + 2);
    assert_eq!(group.persisted().unwrap().members.len(), 0);
    // Leaving a group that does not exist: UNKNOWN_MEMBER_ID per member.
    let r = sim.leave(
        "nope",
        &[LeaveMember {
            member_id: "m".to_owned(),
            group_instance_id: None,
            reason: None,
        }],
    );
    assert_eq!(r.error, None);
    assert_eq!(r.members[0].error, Some(ResponseError::UnknownMemberId));
    sim.assert_replay_matches();
}

#[test]
fn requests_with_a_stale_generation_are_refused() {
    let mut sim = Sim::new(config());
    let (ids, g1) = sim.form_group(G, &[join_req(G, "", "a")], |_| Bytes::new());
    // The leader rejoins: generation 2.
    let r = sim.join(&join_req(G, &ids[0], "a"));
    let r = sim.joined(r);
    assert_eq!(r.generation_id, g1 + 1);
    let stale = g1;
    assert_eq!(
        sim.heartbeat(&hb_req(G, stale, &ids[0])),
        Some(ResponseError::IllegalGeneration)
    );
    let s = sim.sync(&sync_req(G, stale, &ids[0]));
    assert_eq!(sim.synced(s).error, Some(ResponseError::IllegalGeneration));
    let c = sim.commit(&commit_req(G, stale, &ids[0], &[("t", 0, 1)]));
    assert_eq!(commit_errors(&c), [Some(ResponseError::IllegalGeneration)]);
    // A sync naming another protocol than the group's is inconsistent.
    let mut s = sync_req(G, g1 + 1, &ids[0]);
    s.protocol_name = Some("roundrobin".to_owned());
    let s = sim.sync(&s);
    assert_eq!(
        sim.synced(s).error,
        Some(ResponseError::InconsistentGroupProtocol)
    );
    // The current generation works.
    let s = sim.sync(&sync_req(G, g1 + 1, &ids[0]));
    assert_eq!(sim.synced(s).error, None);
    assert_eq!(sim.heartbeat(&hb_req(G, g1 + 1, &ids[0])), None);
}

#[test]
fn follower_rejoining_a_stable_group_with_the_same_metadata_gets_the_current_generation() {
    let mut sim = delayed_sim();
    let replies: Vec<_> = [join_req(G, "", "a"), join_req(G, "", "b")]
        .iter()
        .map(|r| sim.join(r))
        .collect();
    sim.advance(100);
    sim.advance(100);
    let joined: Vec<JoinResponse> = replies.into_iter().map(|r| sim.joined(r)).collect();
    let leader = joined[0].leader.clone();
    let follower = joined
        .iter()
        .find(|r| r.member_id != leader)
        .unwrap()
        .member_id
        .clone();
    let mut l = sync_req(G, 1, &leader);
    l.assignments = vec![
        (leader.clone(), Bytes::new()),
        (follower.clone(), Bytes::new()),
    ];
    let f = sim.sync(&sync_req(G, 1, &follower));
    let l = sim.sync(&l);
    sim.synced(l);
    sim.synced(f);

    let again = sim
        .join(&join_req(G, &follower, "b"))
        .now()
        .expect("no rebalance");
    assert_eq!(again.error, None);
    assert_eq!(again.generation_id, 1);
    assert_eq!(again.leader, leader);
    assert!(again.members.is_empty());
    assert_eq!(sim.coord.group(G).unwrap().state(), GroupState::Stable);

    // With changed metadata it is a rebalance.
    let mut changed = join_req(G, &follower, "b");
    changed.protocols = vec![Protocol::new("range", subscription(&["t", "u"]))];
    assert!(sim.join(&changed).ticket().is_some());
    assert_eq!(
        sim.coord.group(G).unwrap().state(),
        GroupState::PreparingRebalance
    );
}

#[test]
fn static_member_restart_keeps_its_assignment_without_a_rebalance() {
    let mut sim = delayed_sim();
    let mut ra = join_req(G, "", "a");
    ra.group_instance_id = Some("instance-a".to_owned());
    let mut rb = join_req(G, "", "b");
    rb.group_instance_id = Some("instance-b".to_owned());
    let replies = [sim.join(&ra), sim.join(&rb)];
    sim.advance(100);
    sim.advance(100);
    let [ja, jb] = replies.map(|r| sim.joined(r));
    assert!(ja.member_id.starts_with("instance-a-"));
    let (a, b) = (ja.member_id.clone(), jb.member_id.clone());
    assert_eq!(ja.leader, a);
    let mut l = sync_req(G, 1, &a);
    l.group_instance_id = Some("instance-a".to_owned());
    l.assignments = vec![
        (a.clone(), assignment(&[("t", &[0])])),
        (b.clone(), assignment(&[("t", &[1])])),
    ];
    let mut f = sync_req(G, 1, &b);
    f.group_instance_id = Some("instance-b".to_owned());
    let f = sim.sync(&f);
    let l = sim.sync(&l);
    sim.synced(l);
    sim.synced(f);

    // b's process restarts: it joins with no member id and its instance id.
    let restarted = sim.join(&rb).now().expect("answered without a rebalance");
    assert_eq!(restarted.error, None);
    assert_ne!(restarted.member_id, b);
    assert_eq!(restarted.generation_id, 1);
    assert_eq!(restarted.leader, a);
    let new_b = restarted.member_id.clone();
    let group = sim.coord.group(G).unwrap();
    assert_eq!(group.state(), GroupState::Stable);
    assert_eq!(group.static_member_id("instance-b"), Some(new_b.as_str()));
    // Its SyncGroup returns the assignment it had.
    let mut s = sync_req(G, 1, &new_b);
    s.group_instance_id = Some("instance-b".to_owned());
    let s = sim.sync(&s);
    assert_eq!(sim.synced(s).assignment, assignment(&[("t", &[1])]));
    // The old member id is fenced.
    let mut old = hb_req(G, 1, &b);
    old.group_instance_id = Some("instance-b".to_owned());
    assert_eq!(sim.heartbeat(&old), Some(ResponseError::FencedInstanceId));
    let mut old_commit = commit_req(G, 1, &b, &[("t", 1, 10)]);
    old_commit.group_instance_id = Some("instance-b".to_owned());
    assert_eq!(
        commit_errors(&sim.commit(&old_commit)),
        [Some(ResponseError::FencedInstanceId)]
    );
    // a noticed nothing.
    let mut hb = hb_req(G, 1, &a);
    hb.group_instance_id = Some("instance-a".to_owned());
    assert_eq!(sim.heartbeat(&hb), None);
    // The new member id is persisted: a restart of the broker knows it.
    let replayed = sim.assert_replay_matches();
    let g = replayed.group(G).unwrap();
    assert_eq!(g.static_member_id("instance-b"), Some(new_b.as_str()));
    assert_eq!(g.state(), GroupState::Stable);

    // The static leader restarts, speaking JoinGroup v9: it is told it leads, may skip
    // the assignment, and gets the members.
    let mut ra9 = ra.clone();
    ra9.supports_skip_assignment = true;
    let leader_again = sim.join(&ra9).now().unwrap();
    assert!(leader_again.skip_assignment);
    assert_eq!(leader_again.leader, leader_again.member_id);
    assert_eq!(leader_again.members.len(), 2);
    // Before v9 a restarted static leader is told the old leader id, so it just syncs.
    let leader_v8 = sim.join(&ra).now().unwrap();
    assert!(!leader_v8.skip_assignment);
    assert_eq!(leader_v8.leader, leader_again.member_id);
    assert_ne!(leader_v8.member_id, leader_v8.leader);
    assert_eq!(sim.coord.group(G).unwrap().state(), GroupState::Stable);
}

#[test]
fn static_member_that_does_not_rejoin_stays_until_its_session_expires() {
    let mut sim = delayed_sim();
    let mut ra = join_req(G, "", "a");
    ra.group_instance_id = Some("ia".to_owned());
    let mut rb = join_req(G, "", "b");
    rb.group_instance_id = Some("ib".to_owned());
    rb.session_timeout_ms = 60_000;
    let replies = [sim.join(&ra), sim.join(&rb)];
    sim.advance(100);
    sim.advance(100);
    let [ja, jb] = replies.map(|r| sim.joined(r));
    let (a, b) = (ja.member_id.clone(), jb.member_id.clone());
    let mut l = sync_req(G, 1, &a);
    l.assignments = vec![(a.clone(), Bytes::new()), (b.clone(), Bytes::new())];
    let f = sim.sync(&sync_req(G, 1, &b));
    let l = sim.sync(&l);
    sim.synced(l);
    sim.synced(f);
    // The leader rejoins; b (static) does not. At the rebalance timeout a static member
    // is not dropped: the generation proceeds with it still a member.
    let mut ra_known = ra.clone();
    ra_known.member_id = a.clone();
    let parked = sim.join(&ra_known);
    sim.advance(30_000);
    let r = sim.joined(parked);
    assert_eq!(r.generation_id, 2);
    assert_eq!(r.members.len(), 2);
    assert!(sim.coord.group(G).unwrap().member(&b).is_some());
}

#[test]
fn static_member_rejoining_during_a_rebalance_replaces_the_old_id() {
    let mut sim = Sim::new(config());
    let mut ra = join_req(G, "", "a");
    ra.group_instance_id = Some("ia".to_owned());
    let first = sim.join(&ra);
    let first = sim.joined(first);
    assert_eq!(first.generation_id, 1);
    // CompletingRebalance: the same instance comes back with a new process.
    // It is the only member, so the new generation completes at once.
    let second = sim.join(&ra);
    let second = sim.joined(second);
    assert_eq!(second.error, None);
    assert_eq!(second.generation_id, 2);
    assert_ne!(second.member_id, first.member_id);
    let mut s = sync_req(G, 2, &first.member_id);
    s.group_instance_id = Some("ia".to_owned());
    let s = sim.sync(&s);
    assert_eq!(sim.synced(s).error, Some(ResponseError::FencedInstanceId));
}

#[test]
fn leave_by_instance_id_removes_a_static_member() {
    let mut sim = Sim::new(config());
    let mut ra = join_req(G, "", "a");
    ra.group_instance_id = Some("ia".to_owned());
    let r = sim.join(&ra);
    let id = sim.joined(r).member_id;
    let r = sim.leave(
        G,
        &[
            LeaveMember {
                member_id: String::new(),
                group_instance_id: Some("ia".to_owned()),
                reason: None,
            },
            LeaveMember {
                member_id: String::new(),
                group_instance_id: Some("unknown".to_owned()),
                reason: None,
            },
        ],
    );
    assert_eq!(r.members[0].error, None);
    assert_eq!(r.members[1].error, Some(ResponseError::UnknownMemberId));
    assert!(sim.coord.group(G).unwrap().member(&id).is_none());
    assert_eq!(sim.coord.group(G).unwrap().state(), GroupState::Empty);
}

#[test]
fn cooperative_incremental_rebalance_is_two_consecutive_rebalances() {
    // From the coordinator's view, cooperative-sticky is ordinary rebalancing: a member
    // joins, the leader revokes partitions from the current owner (who then rejoins
    // right away), and the second rebalance hands them out.
    let mut sim = Sim::new(config());
    let coop = |member: &str, client: &str, owned: &[i32]| {
        let mut r = join_req(G, member, client);
        let owned_marker: Vec<u8> = owned.iter().flat_map(|p| p.to_be_bytes()).collect();
        let mut meta = subscription(&["t"]).to_vec();
        meta.extend_from_slice(&owned_marker);
        r.protocols = vec![Protocol::new("cooperative-sticky", meta)];
        r
    };
    let a = sim.join(&coop("", "a", &[]));
    let a = sim.joined(a);
    let a_id = a.member_id.clone();
    let mut s = sync_req(G, 1, &a_id);
    s.assignments = vec![(a_id.clone(), assignment(&[("t", &[0, 1, 2, 3])]))];
    let s = sim.sync(&s);
    assert_eq!(
        sim.synced(s).assignment,
        assignment(&[("t", &[0, 1, 2, 3])])
    );

    // b joins; a keeps consuming until it hears about the rebalance.
    let b = sim.join(&coop("", "b", &[]));
    assert!(b.ticket().is_some());
    assert_eq!(
        sim.heartbeat(&hb_req(G, 1, &a_id)),
        Some(ResponseError::RebalanceInProgress)
    );
    // Cooperative members may commit while the group prepares the rebalance.
    let c = sim.commit(&commit_req(G, 1, &a_id, &[("t", 0, 42)]));
    assert_eq!(commit_errors(&c), [None]);
    // First rebalance: a rejoins declaring what it owns.
    let a2 = sim.join(&coop(&a_id, "a", &[0, 1, 2, 3]));
    let (a2, b2) = (sim.joined(a2), sim.joined(b));
    assert_eq!((a2.generation_id, b2.generation_id), (2, 2));
    assert_eq!(a2.protocol_name.as_deref(), Some("cooperative-sticky"));
    let b_id = b2.member_id.clone();
    // The leader revokes 2 and 3 from itself and gives b nothing yet.
    let fb = sim.sync(&sync_req(G, 2, &b_id));
    let mut s = sync_req(G, 2, &a_id);
    s.assignments = vec![
        (a_id.clone(), assignment(&[("t", &[0, 1])])),
        (b_id.clone(), assignment(&[])),
    ];
    let s = sim.sync(&s);
    assert_eq!(sim.synced(s).assignment, assignment(&[("t", &[0, 1])]));
    assert_eq!(sim.synced(fb).assignment, assignment(&[]));
    assert_eq!(sim.coord.group(G).unwrap().state(), GroupState::Stable);

    // Having revoked, a rejoins at once (its owned partitions changed): second rebalance.
    let a3 = sim.join(&coop(&a_id, "a", &[0, 1]));
    assert!(a3.ticket().is_some());
    let b3 = sim.join(&coop(&b_id, "b", &[]));
    let (a3, b3) = (sim.joined(a3), sim.joined(b3));
    assert_eq!((a3.generation_id, b3.generation_id), (3, 3));
    let fb = sim.sync(&sync_req(G, 3, &b_id));
    let mut s = sync_req(G, 3, &a_id);
    s.assignments = vec![
        (a_id.clone(), assignment(&[("t", &[0, 1])])),
        (b_id.clone(), assignment(&[("t", &[2, 3])])),
    ];
    let s = sim.sync(&s);
    sim.synced(s);
    assert_eq!(sim.synced(fb).assignment, assignment(&[("t", &[2, 3])]));
    assert_eq!(sim.coord.group(G).unwrap().generation_id(), 3);
    sim.assert_replay_matches();
}

#[test]
fn protocol_selection_and_consistency() {
    let mut sim = delayed_sim();
    let mut a = join_req(G, "", "a");
    a.protocols = vec![
        Protocol::new("range", Bytes::from_static(b"ra")),
        Protocol::new("roundrobin", Bytes::from_static(b"rr-a")),
    ];
    let mut b = join_req(G, "", "b");
    b.protocols = vec![
        Protocol::new("roundrobin", Bytes::from_static(b"rr-b")),
        Protocol::new("range", Bytes::from_static(b"rb")),
    ];
    let mut c = join_req(G, "", "c");
    c.protocols = vec![
        Protocol::new("roundrobin", Bytes::from_static(b"rr-c")),
        Protocol::new("sticky", Bytes::new()),
        Protocol::new("range", Bytes::new()),
    ];
    // Inconsistent: another protocol type, or nothing in common with the first member.
    let mut wrong_type = join_req(G, "", "x");
    wrong_type.protocol_type = "connect".to_owned();
    let mut nothing_common = join_req(G, "", "y");
    nothing_common.protocols = vec![Protocol::new("sticky", Bytes::new())];

    let replies = [sim.join(&a), sim.join(&b), sim.join(&c)];
    assert_eq!(
        sim.join(&wrong_type).now().unwrap().error,
        Some(ResponseError::InconsistentGroupProtocol)
    );
    assert_eq!(
        sim.join(&nothing_common).now().unwrap().error,
        Some(ResponseError::InconsistentGroupProtocol)
    );
    sim.advance(100);
    sim.advance(100);
    let [ja, _, _] = replies.map(|r| sim.joined(r));
    // Votes: a -> range, b -> roundrobin, c -> roundrobin.
    assert_eq!(ja.protocol_name.as_deref(), Some("roundrobin"));
    // The leader sees each member's metadata for the chosen protocol.
    let mut metadata: Vec<Bytes> = ja.members.iter().map(|m| m.metadata.clone()).collect();
    metadata.sort();
    assert_eq!(metadata, [&b"rr-a"[..], b"rr-b", b"rr-c"]);

    // An empty protocol list or type is refused even by an Empty group.
    let mut empty = join_req("other", "", "z");
    empty.protocols.clear();
    assert_eq!(
        sim.join(&empty).now().unwrap().error,
        Some(ResponseError::InconsistentGroupProtocol)
    );
    assert!(sim.coord.group("other").is_none());
}

#[test]
fn session_timeout_bounds_and_group_id_are_checked() {
    let mut sim = Sim::new(config());
    let mut r = join_req(G, "", "a");
    r.session_timeout_ms = 5_999;
    assert_eq!(
        sim.join(&r).now().unwrap().error,
        Some(ResponseError::InvalidSessionTimeout)
    );
    r.session_timeout_ms = 1_800_001;
    assert_eq!(
        sim.join(&r).now().unwrap().error,
        Some(ResponseError::InvalidSessionTimeout)
    );
    let r = join_req("", "", "a");
    assert_eq!(
        sim.join(&r).now().unwrap().error,
        Some(ResponseError::InvalidGroupId)
    );
    assert!(sim.coord.groups().next().is_none());
}

#[test]
fn group_max_size_is_enforced() {
    let mut sim = Sim::new(CoordinatorConfig {
        group_max_size: 1,
        ..config()
    });
    let (_, _) = sim.form_group(G, &[join_req(G, "", "a")], |_| Bytes::new());
    let r = sim.join(&join_req(G, "", "b")).now().unwrap();
    assert_eq!(r.error, Some(ResponseError::GroupMaxSizeReached));
}

#[test]
fn members_that_never_sync_are_removed_after_the_rebalance_timeout() {
    let mut sim = delayed_sim();
    let replies = [
        sim.join(&join_req(G, "", "a")),
        sim.join(&join_req(G, "", "b")),
    ];
    sim.advance(100);
    sim.advance(100);
    let [ja, jb] = replies.map(|r| sim.joined(r));
    let leader = ja.leader.clone();
    let follower = if ja.member_id == leader {
        jb.member_id.clone()
    } else {
        ja.member_id.clone()
    };
    // The leader syncs, the follower never does (but heartbeats).
    let mut l = sync_req(G, 1, &leader);
    l.assignments = vec![
        (leader.clone(), Bytes::new()),
        (follower.clone(), Bytes::new()),
    ];
    let l = sim.sync(&l);
    sim.synced(l);
    for _ in 0..10 {
        sim.advance(3_000);
        let _ = sim.heartbeat(&hb_req(G, 1, &leader));
        let _ = sim.heartbeat(&hb_req(G, 1, &follower));
    }
    let group = sim.coord.group(G).unwrap();
    assert!(group.member(&follower).is_none(), "follower should be gone");
    assert_eq!(group.state(), GroupState::PreparingRebalance);
}

#[test]
fn timers_fire_on_time_even_when_ticks_are_late() {
    // A request arriving after a deadline the I/O layer has not ticked for yet sees the
    // world as if the timer had fired on time.
    let mut sim = Sim::new(config());
    let (ids, generation) = sim.form_group(G, &[join_req(G, "", "a")], |_| Bytes::new());
    sim.now += 20_000;
    assert_eq!(
        sim.heartbeat(&hb_req(G, generation, &ids[0])),
        Some(ResponseError::UnknownMemberId)
    );
    assert_eq!(sim.coord.group(G).unwrap().state(), GroupState::Empty);
}

#[test]
fn next_deadline_tracks_the_earliest_timer() {
    let mut sim = Sim::new(config());
    assert_eq!(sim.coord.next_deadline(), None);
    let (ids, generation) = sim.form_group(G, &[join_req(G, "", "a")], |_| Bytes::new());
    let deadline = sim.coord.next_deadline().unwrap();
    assert_eq!(deadline, sim.now + 10_000);
    sim.advance(4_000);
    assert_eq!(sim.heartbeat(&hb_req(G, generation, &ids[0])), None);
    // A stale (earlier) deadline may be reported; ticking at it changes nothing and the
    // next one is the real expiry.
    let mut wakeups = 0;
    while let Some(d) = sim.coord.next_deadline() {
        if d > sim.now + 10_000 {
            break;
        }
        wakeups += 1;
        assert!(wakeups < 5, "too many wake-ups");
        sim.now = d;
        let out = sim.coord.tick(sim.now);
        sim.apply(out);
        if sim.coord.group(G).unwrap().member(&ids[0]).is_none() {
            break;
        }
    }
    assert!(sim.coord.group(G).unwrap().member(&ids[0]).is_none());
}
