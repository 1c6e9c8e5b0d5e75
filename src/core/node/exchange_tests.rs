//! Tests of `exchange.rs`: how a request's every ending is concluded.

use super::super::exchange::*;
use super::super::fixture::{
    ack_from, body, config, deliver_all, events, from_peer, in_repair, node, pushed_keys,
    relaying_node, ring, transmits,
};
use super::super::relay::RELAY_TRIES;
use crate::core::message::Digest;
use crate::core::schedule::Schedule;

fn refused(reason: Refusal) -> Body {
    Body::Refused {
        reason,
        digest: None,
    }
}

#[test]
fn a_reply_answers_only_the_request_it_fits() {
    let push = Awaiting::Push {
        kind: PushKind::Cycle,
    };
    let ack = Body::Ack {
        digest: Digest::default(),
    };
    assert_eq!(outcome_of(&push, &ack), Outcome::Answered);
    assert_eq!(outcome_of(&Awaiting::Syn, &ack), Outcome::Refused);
    assert_eq!(
        outcome_of(&push, &refused(Refusal::StoreFailed)),
        Outcome::Refused
    );
    let (n0, t) = in_repair();
    let tree = n0.outstanding[&t.id].what.clone();
    // Masks of no children, one per node asked (the root).
    let reply = |level, n: usize| Body::TreeReply {
        level,
        children: vec![0; 2 * n],
    };
    assert_eq!(outcome_of(&tree, &reply(0, 1)), Outcome::Answered);
    assert_eq!(outcome_of(&tree, &reply(1, 1)), Outcome::Refused);
    assert_eq!(outcome_of(&tree, &reply(0, 2)), Outcome::Refused);
}

#[test]
fn a_refused_relay_is_sent_again_then_dropped_after_its_tries() {
    let (mut n0, mut t) = relaying_node();
    // A failed relay is retried at once: dropped, "a" would become a
    // hole at the peer as soon as a later relay raised its hint.
    for tries in 1..RELAY_TRIES {
        n0.handle_reply(10, t.id, &from_peer(1, refused(Refusal::StoreFailed)));
        assert_eq!(n0.stats().relays_failed, u64::from(tries));
        let mut sent = transmits(&mut n0);
        assert_eq!(sent.len(), 1, "sent again");
        t = sent.remove(0);
        assert_eq!(pushed_keys(&t.payload), Some(vec!["a".to_string()]));
    }
    n0.handle_reply(10, t.id, &from_peer(1, refused(Refusal::StoreFailed)));
    assert!(transmits(&mut n0).is_empty(), "given up");
    assert!(n0.digest().quiet, "nothing is left queued");
    // Were the refused relay still holding the queue, this write would
    // wait behind it for good.
    n0.write(20, "b", Some(b"2".to_vec())).expect("write");
    let t = transmits(&mut n0);
    assert_eq!(t.len(), 1);
    assert_eq!(pushed_keys(&t[0].payload), Some(vec!["b".to_string()]));
}

#[test]
fn a_refused_cycle_push_leaves_its_items_for_the_next_cycle() {
    for (reply, again) in [
        (refused(Refusal::StoreFailed), true),
        (
            Body::TreeReply {
                level: 0,
                children: Vec::new(),
            },
            true,
        ),
        (
            Body::Ack {
                digest: Digest::default(),
            },
            false,
        ),
    ] {
        let mut n0 = node(config(4, 0, Schedule::Successor));
        n0.write(500, "k", Some(b"v".to_vec())).expect("write");
        n0.handle_timeout(1000);
        let t = transmits(&mut n0);
        assert_eq!(pushed_keys(&t[0].payload), Some(vec!["k".to_string()]));
        n0.handle_reply(1000, t[0].id, &from_peer(1, reply.clone()));
        // What followed (a tree comparison, after the ack) ends unanswered:
        // while it ran, the next cycle would start no exchange with node 1.
        for t in transmits(&mut n0) {
            n0.handle_failure(t.id);
        }
        n0.handle_timeout(2000);
        let t = transmits(&mut n0);
        let push = t.iter().find(|t| t.to == 1).expect("a push to node 1");
        let carried = pushed_keys(&push.payload).expect("a push");
        assert_eq!(!carried.is_empty(), again, "after {reply:?}");
    }
}

#[test]
fn a_failure_ends_the_exchange_once_and_counts_against_the_peer() {
    let mut n0 = node(config(4, 0, Schedule::Successor));
    let ex = n0.sync_with(2);
    let t = transmits(&mut n0);
    n0.handle_failure(t[0].id);
    n0.handle_failure(t[0].id);
    n0.handle_reply(5, t[0].id, &[]);
    let done: Vec<Event> = events(&mut n0)
        .into_iter()
        .filter(|e| matches!(e, Event::ExchangeDone { .. }))
        .collect();
    assert_eq!(
        done,
        vec![Event::ExchangeDone {
            exchange: ex,
            peer: 2,
            ok: false,
            entries: 0,
            bytes: t[0].payload.len() as u64,
        }]
    );
    assert_eq!(n0.stats().pushes_failed, 1);
    assert_eq!(n0.peers()[2].failures, 1);
    // What is left in flight is the miss's indirect probe, not the hop.
    let probes: Vec<Body> = transmits(&mut n0)
        .iter()
        .map(|t| body(&t.payload))
        .collect();
    assert!(!probes.is_empty());
    assert!(probes.iter().all(|b| *b == Body::ProbeReq { target: 2 }));
}

#[test]
fn an_undecodable_reply_is_a_miss_and_a_misfit_one_a_refusal() {
    let mut n0 = node(config(4, 0, Schedule::Successor));
    n0.sync_with(1);
    let t = transmits(&mut n0);
    n0.handle_reply(5, t[0].id, b"garbage");
    assert_eq!(n0.stats().pushes_failed, 1);
    assert_eq!(n0.peers()[1].failures, 1);

    n0.sync_with(1);
    // The first miss's indirect probe went first.
    let t: Vec<Transmit> = transmits(&mut n0)
        .into_iter()
        .filter(|t| t.to == 1)
        .collect();
    n0.handle_reply(
        6,
        t[0].id,
        &from_peer(
            1,
            Body::Fetched {
                entries: Vec::new(),
            },
        ),
    );
    assert_eq!(n0.stats().pushes_failed, 1, "the peer answered");
    assert_eq!(n0.peers()[1].failures, 0);
    assert_eq!(n0.stats().refused.get("malformed"), Some(&2));
    let oks: Vec<bool> = events(&mut n0)
        .into_iter()
        .filter_map(|e| match e {
            Event::ExchangeDone { ok, .. } => Some(ok),
            _ => None,
        })
        .collect();
    assert_eq!(oks, vec![false, false]);
}

#[test]
fn a_reply_from_another_node_is_not_taken() {
    let mut n0 = node(config(4, 0, Schedule::Successor));
    n0.sync_with(1);
    let t = transmits(&mut n0);
    n0.handle_reply(5, t[0].id, &ack_from(2));
    assert_eq!(n0.stats().pushes_ok, 0);
    assert_eq!(n0.stats().pushes_failed, 1);
}

#[test]
fn a_sync_hop_moves_the_delta_and_ends_ok() {
    let mut nodes = ring(2, Schedule::Successor, |_| {});
    for i in 0..3 {
        nodes[0]
            .write(10 + i, &format!("k{i}"), Some(b"v".to_vec()))
            .expect("write");
    }
    let ex = nodes[0].sync_with(1);
    deliver_all(&mut nodes, 20);
    assert_eq!(nodes[1].counts(), (3, 0));
    assert_eq!(nodes[0].root(), nodes[1].root());
    let done = events(&mut nodes[0]).into_iter().find_map(|e| match e {
        Event::ExchangeDone {
            exchange,
            ok,
            entries,
            ..
        } if exchange == ex => Some((ok, entries)),
        _ => None,
    });
    assert_eq!(done, Some((true, 3)));
}
