//! Random walks over the coordinator's API (seeded, reproducible), checking two
//! invariants after every step: replaying the simulated `__consumer_offsets` log rebuilds
//! exactly the live persisted state, before and after the real log cleaner compacts it
//! (with tombstones kept and dropped), and every parked request is eventually answered
//! exactly once.

mod coordinator_support;

use std::collections::{BTreeMap, BTreeSet};

use coordinator_support::*;
use sluice_broker::coordinator::*;

/// A small deterministic generator (SplitMix64).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// What the simulated clients know.
#[derive(Default)]
struct Client {
    member_id: String,
    generation: i32,
    join: Option<Ticket>,
    sync: Option<Ticket>,
    instance: Option<String>,
}

fn walk(seed: u64, steps: usize) {
    let config = CoordinatorConfig {
        group_initial_rebalance_delay_ms: 50,
        offsets_retention_ms: 40_000,
        offsets_retention_check_interval_ms: 5_000,
        ..config()
    };
    let mut sim = Sim::new(config);
    let mut rng = Rng(seed);
    let groups = ["g0", "g1", "g2"];
    let mut clients: BTreeMap<(usize, usize), Client> = BTreeMap::new();
    let mut parked: BTreeSet<Ticket> = BTreeSet::new();

    for step in 0..steps {
        let g = rng.below(groups.len() as u64) as usize;
        let c = rng.below(4) as usize;
        let group = groups[g];
        let client = clients.entry((g, c)).or_default();
        if c == 3 && client.instance.is_none() {
            client.instance = Some(format!("static-{g}"));
        }
        match rng.below(10) {
            0 | 1 => {
                let mut req = join_req(group, &client.member_id, &format!("c{c}"));
                req.group_instance_id = client.instance.clone();
                req.require_known_member_id = rng.below(2) == 0;
                if rng.below(3) == 0 {
                    req.protocols = vec![Protocol::new("range", subscription(&["t", "u"]))];
                }
                let out = sim.coord.join_group(&req, sim.now);
                match sim.apply(out) {
                    Reply::Now(r) => {
                        if !r.member_id.is_empty() {
                            client.member_id = r.member_id;
                        }
                        client.generation = r.generation_id;
                    }
                    Reply::Pending(t) => {
                        parked.insert(t);
                        client.join = Some(t);
                    }
                }
            }
            2 => {
                let mut req = sync_req(group, client.generation, &client.member_id);
                req.group_instance_id = client.instance.clone();
                if let Some(g) = sim.coord.group(group) {
                    if g.leader() == Some(client.member_id.as_str()) {
                        req.assignments = g
                            .members()
                            .map(|m| (m.member_id().to_owned(), assignment(&[("t", &[0])])))
                            .collect();
                    }
                }
                let out = sim.coord.sync_group(&req, sim.now);
                if let Reply::Pending(t) = sim.apply(out) {
                    parked.insert(t);
                    client.sync = Some(t);
                }
            }
            3 | 4 => {
                let mut req = hb_req(group, client.generation, &client.member_id);
                req.group_instance_id = client.instance.clone();
                let _ = sim.heartbeat(&req);
            }
            5 => {
                let offset = rng.below(1000) as i64;
                let partition = rng.below(3) as i32;
                let req = if rng.below(2) == 0 {
                    commit_req(
                        group,
                        client.generation,
                        &client.member_id,
                        &[("t", partition, offset)],
                    )
                } else {
                    commit_req(group, -1, "", &[("u", partition, offset)])
                };
                let _ = sim.commit(&req);
            }
            6 => {
                let member = LeaveMember {
                    member_id: client.member_id.clone(),
                    group_instance_id: client.instance.clone(),
                    reason: None,
                };
                let _ = sim.leave(group, &[member]);
                client.member_id.clear();
            }
            7 => {
                let out = sim.coord.delete_offsets(
                    group,
                    &[FetchTopic {
                        name: "u".to_owned(),
                        partitions: vec![0, 1],
                    }],
                    sim.now,
                );
                sim.apply(out);
            }
            8 => {
                let out = sim.coord.delete_groups(&[group.to_owned()], sim.now);
                sim.apply(out);
            }
            _ => {
                let ms = [0, 10, 60, 1_000, 4_000, 12_000][rng.below(6) as usize];
                sim.advance(ms);
            }
        }
        // Collect answers to parked requests.
        let answered: Vec<Ticket> = sim.done.keys().copied().collect();
        for t in answered {
            assert!(
                parked.remove(&t),
                "seed {seed} step {step}: unknown ticket {t:?}"
            );
            let completion = sim.done.remove(&t).unwrap();
            for client in clients.values_mut() {
                match &completion {
                    Completion::Join { response, .. } if client.join == Some(t) => {
                        client.join = None;
                        if !response.member_id.is_empty() {
                            client.member_id = response.member_id.clone();
                        }
                        client.generation = response.generation_id;
                    }
                    Completion::Sync { .. } if client.sync == Some(t) => client.sync = None,
                    _ => {}
                }
            }
        }
        let (replayed, _) = sim.log.replay(sim.config.clone(), sim.now);
        assert_eq!(
            replayed.persisted_state(),
            sim.coord.persisted_state(),
            "seed {seed} step {step}"
        );
        if step == steps / 2 {
            assert_cleaned_replay_matches(&sim, &format!("seed {seed} step {step}"));
        }
    }

    // Everyone goes silent: sessions and rebalance timeouts expire, so every parked
    // request gets its answer.
    for _ in 0..20 {
        sim.advance(30_000);
    }
    let answered: Vec<Ticket> = sim.done.keys().copied().collect();
    for t in answered {
        assert!(parked.remove(&t), "seed {seed}: unknown ticket {t:?}");
    }
    assert!(parked.is_empty(), "seed {seed}: never answered: {parked:?}");
    for g in sim.coord.groups() {
        assert_eq!(g.member_count(), 0, "seed {seed}: {} kept members", g.id());
    }
    sim.assert_replay_matches();
    assert_cleaned_replay_matches(&sim, &format!("seed {seed} at the end"));
}

/// The log as the real cleaner leaves it replays to the live state, whether its
/// tombstones are still kept or already dropped.
fn assert_cleaned_replay_matches(sim: &Sim, context: &str) {
    for tombstone_retention_ms in [86_400_000, 0] {
        let (cleaned, _) = sim.log.cleaned(tombstone_retention_ms, sim.now);
        let (replayed, _) = cleaned.replay(sim.config.clone(), sim.now);
        assert_eq!(
            replayed.persisted_state(),
            sim.coord.persisted_state(),
            "{context}, delete.retention.ms {tombstone_retention_ms}"
        );
    }
}

#[test]
fn random_walks_keep_the_log_and_memory_in_step() {
    for seed in 0..40 {
        walk(seed, 300);
    }
}
