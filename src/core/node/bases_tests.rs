//! Tests of the digests between fixed partners: sent as changes, idle
//! cost flat in N, and a base one side lost found out, never guessed.

use super::super::fixture::{
    config, from_peer, node, reopen, ring, run_cycle_late, TestStore, INTERVAL,
};
use super::super::{Node, Refusal};
use super::KEPT;
use crate::core::config::Config;
use crate::core::digest_diff::{diff, fingerprint, Coded, Form};
use crate::core::message::PushKind;
use crate::core::message::{decode, Body};
use crate::core::schedule::{self, Schedule};

/// One cycle of `nodes` at `c`: every request delivered, and its reply,
/// until none are left. Returns the bytes of them all.
fn run_cycle(nodes: &mut [Node<TestStore>], c: u64) -> usize {
    run_cycle_late(nodes, c, 0, &mut Vec::new())
}

/// A ring of `n` in which every node wrote one key, run until every root
/// agrees; returns it and the next cycle.
fn converged(n: u32, schedule: Schedule) -> (Vec<Node<TestStore>>, u64) {
    converged_with(n, schedule, |_| {})
}

/// As [`converged`], each configuration adjusted by `tune`.
fn converged_with(
    n: u32,
    schedule: Schedule,
    tune: impl Fn(&mut Config),
) -> (Vec<Node<TestStore>>, u64) {
    let mut nodes = ring(n, schedule, tune);
    for (i, node) in nodes.iter_mut().enumerate() {
        node.write(500, &format!("k{i}"), Some(b"v".to_vec()))
            .expect("write");
    }
    let mut c = 1;
    while nodes.iter().any(|x| x.root() != nodes[0].root()) {
        run_cycle(&mut nodes, c);
        c += 1;
        assert!(c < 4 * u64::from(n), "no convergence in {c} cycles");
    }
    assert!(nodes.iter().all(|x| x.digest().hints.len() == n as usize));
    (nodes, c)
}

/// Bytes per node per cycle of a converged, idle ring of `n`, over one
/// round of the schedule's offsets, after one such round settles.
fn idle_bytes(n: u32, schedule: Schedule) -> usize {
    let (mut nodes, mut c) = converged(n, schedule);
    let round = u64::from(schedule::log2_ceil(n));
    for _ in 0..round + 1 {
        run_cycle(&mut nodes, c);
        c += 1;
    }
    let mut bytes = 0;
    for _ in 0..round {
        bytes += run_cycle(&mut nodes, c);
        c += 1;
    }
    bytes / (n as usize * round as usize)
}

#[test]
fn an_idle_cycle_costs_the_same_bytes_whatever_n() {
    for schedule in [Schedule::Successor, Schedule::Doubling] {
        let (small, large) = (idle_bytes(8, schedule), idle_bytes(64, schedule));
        // A push and its ack, each some 15 bytes of message and 20 of
        // digest: 67 in all. Whole, the two digests of 64 writers were
        // some 1.4 KB.
        assert!(small <= 90, "{schedule}: {small} bytes at N = 8");
        assert!(
            large <= small + 4,
            "{schedule}: {large} bytes at N = 64, {small} at N = 8"
        );
    }
}

/// The digest form of the request `bytes`, if it is a partner push.
fn form(bytes: &[u8]) -> Option<Form> {
    match decode(bytes).map(|m| m.body) {
        Ok(Body::PartnerPush { digest, .. }) => Some(digest.digest),
        _ => None,
    }
}

/// Node 0's cycle push to node 1 at cycle `c`, and node 1's reply; the
/// reply is dropped (as lost) unless `deliver`. What else node 0 sends
/// (follow-ups, probes) goes as it would.
fn push_0_to_1(nodes: &mut [Node<TestStore>], c: u64, deliver: bool) -> (Vec<u8>, Vec<u8>) {
    let now = c * INTERVAL;
    nodes[0].handle_timeout(now);
    let t = nodes[0].poll_transmit().expect("a cycle push");
    assert_eq!(t.to, 1);
    let reply = nodes[1].handle_request(now, &t.payload);
    if deliver {
        nodes[0].handle_reply(now, t.id, &reply);
    } else {
        nodes[0].handle_failure(t.id);
    }
    while let Some(t) = nodes[0].poll_transmit() {
        let r = nodes[t.to as usize].handle_request(now, &t.payload);
        nodes[0].handle_reply(now, t.id, &r);
    }
    (t.payload, reply)
}

/// A converged successor ring of 3 that relays only by its cycles and
/// fails no member for a few lost replies.
fn quiet_ring() -> (Vec<Node<TestStore>>, u64) {
    converged_with(3, Schedule::Successor, |cfg| {
        cfg.relay = false;
        cfg.failure_threshold = 100;
    })
}

fn refusal(reply: &[u8]) -> Option<Refusal> {
    match decode(reply).map(|m| m.body) {
        Ok(Body::Refused { reason, .. }) => Some(reason),
        _ => None,
    }
}

#[test]
fn a_restarted_partner_refuses_a_delta_and_the_next_push_goes_whole() {
    let (mut nodes, c) = quiet_ring();
    let (first, _) = push_0_to_1(&mut nodes, c, true);
    assert!(
        matches!(form(&first), Some(Form::Delta(_))),
        "settled: a delta"
    );
    let cfg = nodes[1].config().clone();
    let store = nodes[1].store().clone();
    nodes[1] = reopen(cfg, store);
    let (pushed, reply) = push_0_to_1(&mut nodes, c + 1, true);
    assert!(matches!(form(&pushed), Some(Form::Delta(_))));
    assert_eq!(refusal(&reply), Some(Refusal::UnknownBase));
    assert_eq!(nodes[1].stats().refused.get("unknown_base"), Some(&1));
    let (whole, reply) = push_0_to_1(&mut nodes, c + 2, true);
    assert!(
        matches!(form(&whole), Some(Form::Full(_))),
        "after a refusal"
    );
    assert_eq!(refusal(&reply), None);
    let (again, reply) = push_0_to_1(&mut nodes, c + 3, true);
    assert!(
        matches!(form(&again), Some(Form::Delta(_))),
        "and deltas again"
    );
    assert_eq!(refusal(&reply), None);
}

#[test]
fn lost_acks_leave_both_sides_on_a_base_they_share() {
    let (mut nodes, mut c) = quiet_ring();
    for round in 0..KEPT - 1 {
        // The digest moves each round, and every ack is lost.
        nodes[0]
            .write(c * INTERVAL, &format!("new{round}"), Some(b"v".to_vec()))
            .expect("write");
        let (pushed, reply) = push_0_to_1(&mut nodes, c, false);
        assert!(
            matches!(form(&pushed), Some(Form::Delta(_))),
            "round {round}"
        );
        assert_eq!(refusal(&reply), None, "round {round}");
        c += 1;
    }
    let (_, reply) = push_0_to_1(&mut nodes, c, true);
    assert_eq!(refusal(&reply), None);
    match decode(&reply).map(|m| m.body) {
        Ok(Body::PartnerAck { digest }) => {
            assert!(matches!(digest.digest, Form::Delta(_)));
            assert_ne!(digest.have, 0);
        }
        other => panic!("expected a partner ack, got {other:?}"),
    }
    let (pushed, reply) = push_0_to_1(&mut nodes, c + 1, true);
    assert!(matches!(form(&pushed), Some(Form::Delta(_))));
    assert_eq!(refusal(&reply), None);
    assert_eq!(nodes[1].digest().hints, nodes[0].digest().hints);
}

#[test]
fn a_delta_that_does_not_fit_its_base_is_refused_and_changes_nothing() {
    let (mut nodes, c) = quiet_ring();
    push_0_to_1(&mut nodes, c, true);
    let base = nodes[0].digest();
    let push = |delta| Body::PartnerPush {
        kind: PushKind::Repair,
        digest: Coded {
            have: 0,
            digest: Form::Delta(delta),
        },
        entries: Vec::new(),
        complete: false,
    };
    let root = nodes[1].root();
    let mut bad = diff(&base, fingerprint(&base), &base);
    bad.hints = vec![(9999, None)];
    let reply = nodes[1].handle_request(c * INTERVAL, &from_peer(0, push(bad)));
    assert_eq!(refusal(&reply), Some(Refusal::Malformed));
    let mut unknown = diff(&base, fingerprint(&base), &base);
    unknown.base ^= 1;
    let reply = nodes[1].handle_request(c * INTERVAL, &from_peer(0, push(unknown)));
    assert_eq!(refusal(&reply), Some(Refusal::UnknownBase));
    // Not a partner of node 1 in a successor ring of 4: never kept.
    let mut far = ring(4, Schedule::Successor, |_| {});
    let fits = diff(&base, fingerprint(&base), &base);
    let reply = far[1].handle_request(0, &from_peer(3, push(fits)));
    assert_eq!(refusal(&reply), Some(Refusal::UnknownBase));
    assert_eq!(nodes[1].root(), root);
    let good = diff(&base, fingerprint(&base), &base);
    let reply = nodes[1].handle_request(c * INTERVAL, &from_peer(0, push(good)));
    assert_eq!(refusal(&reply), None, "the base it holds still fits");
}

#[test]
fn only_fixed_partners_are_kept_and_few_of_them() {
    let n0 = node(config(64, 0, Schedule::Doubling));
    let partners: Vec<u32> = (0..64).filter(|&p| n0.is_partner(p)).collect();
    assert_eq!(partners, vec![1, 2, 4, 8, 16, 32, 48, 56, 60, 62, 63]);
    let succ = node(config(64, 5, Schedule::Successor));
    let partners: Vec<u32> = (0..64).filter(|&p| succ.is_partner(p)).collect();
    assert_eq!(partners, vec![4, 6]);
    let random = node(config(64, 5, Schedule::Random));
    assert!((0..64).all(|p| !random.is_partner(p)));
    // Busy cycles leave at most KEPT digests per stream and side: ours
    // and its, of our pushes to a target and of a source's to us (a
    // partner both is both).
    let (mut nodes, mut c) = converged(16, Schedule::Doubling);
    for round in 0..12u64 {
        for (i, x) in nodes.iter_mut().enumerate() {
            x.write(c * INTERVAL, &format!("r{round}-{i}"), Some(b"v".to_vec()))
                .expect("write");
        }
        run_cycle(&mut nodes, c);
        c += 1;
    }
    let streams = (1..16u32)
        .map(|p| [p, 16 - p].iter().filter(|&&d| d.is_power_of_two()).count())
        .sum::<usize>();
    assert_eq!(streams, 8, "4 targets and 4 sources");
    for x in &nodes {
        assert!(x.bases_kept() <= 2 * KEPT * streams, "{}", x.bases_kept());
        assert!(x.bases_kept() >= 2 * streams, "{}", x.bases_kept());
    }
}

/// The kinds of the pushes among `sent` whose digest went as changes
/// against a base.
fn coded_kinds(sent: &[(u32, Vec<u8>)]) -> Vec<PushKind> {
    sent.iter()
        .filter_map(|(_, p)| match decode(p).map(|m| m.body) {
            Ok(Body::PartnerPush {
                kind,
                digest:
                    Coded {
                        digest: Form::Delta(_),
                        ..
                    },
                ..
            }) => Some(kind),
            _ => None,
        })
        .collect()
}

#[test]
fn a_sync_hop_after_a_partner_lost_its_bases_repairs_whole_and_ends_ok() {
    // Found on real processes: a manual sync just after one node reloaded
    // a new ring (which drops its bases) failed a hop, because the tree
    // repair inside the hop pushed a delta against a base the partner had
    // dropped.
    let (mut nodes, mut c) = quiet_ring();
    for key in ["old", "new"] {
        nodes[0]
            .write(c * INTERVAL, key, Some(b"v".to_vec()))
            .expect("write");
        c += 1;
    }
    while nodes.iter().any(|x| x.root() != nodes[0].root()) {
        run_cycle(&mut nodes, c);
        c += 1;
        assert!(c < 40, "no convergence");
    }
    push_0_to_1(&mut nodes, c, true);
    // Node 1 restarts (its bases are gone) having lost a key below its
    // hints on the way: only the trees can show it.
    let cfg = nodes[1].config().clone();
    let mut store = nodes[1].store().clone();
    store.lose("old");
    nodes[1] = reopen(cfg, store);
    assert_ne!(nodes[0].root(), nodes[1].root());
    let now = (c + 1) * INTERVAL;
    let ex = nodes[0].sync_with(1);
    let mut sent = Vec::new();
    while let Some(t) = nodes[0].poll_transmit() {
        let reply = nodes[t.to as usize].handle_request(now, &t.payload);
        sent.push((t.to, t.payload.clone()));
        nodes[0].handle_reply(now, t.id, &reply);
    }
    assert_eq!(coded_kinds(&sent), Vec::new(), "a sync hop goes whole");
    assert_eq!(nodes[0].root(), nodes[1].root());
    let done = std::iter::from_fn(|| nodes[0].poll_event()).find_map(|e| match e {
        super::super::Event::ExchangeDone { exchange, ok, .. } if exchange == ex => Some(ok),
        _ => None,
    });
    assert_eq!(done, Some(true));
}
