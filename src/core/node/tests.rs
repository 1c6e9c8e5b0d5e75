//! The node's own unit tests: opening, cycles, modes and hints.

use super::fixture::{ack_from, body, config, events, node, reopen, transmits};
use super::*;
use crate::core::message::Body;

#[test]
fn open_rebuilds_the_digest_and_raises_the_incarnation() {
    let cfg = config(4, 1, Schedule::Successor);
    let mut n1 = node(cfg.clone());
    n1.write(100, "a", Some(b"v".to_vec())).expect("write");
    n1.write(200, "b", None).expect("write");
    let again = reopen(cfg.clone(), n1.store().clone());
    assert_eq!(again.root(), n1.root());
    assert_eq!(again.counts(), (1, 1));
    assert_eq!(again.digest().hints, n1.digest().hints);
    assert_eq!(n1.view().incarnation(), 0);
    assert_eq!(again.view().incarnation(), 1);
    let third = reopen(cfg, again.store().clone());
    assert_eq!(third.view().incarnation(), 2);
}

#[test]
fn a_restart_with_the_clock_set_back_never_issues_a_lower_version() {
    // A ring of one collects by age alone.
    let mut cfg = config(1, 0, Schedule::Successor);
    cfg.tombstone_lifetime_ms = 1_000;
    let mut n0 = node(cfg.clone());
    n0.write(50_000, "a", Some(b"v".to_vec())).expect("write");
    let last = n0.write(50_001, "a", None).expect("write");
    // The delete is collected: no stored entry carries the last version.
    n0.handle_timeout(60_000);
    assert_eq!(n0.counts(), (0, 0));
    let mut again = reopen(cfg, n0.store().clone());
    let next = again.write(1_000, "b", Some(b"v".to_vec())).expect("write");
    assert!(
        next.version > last.version,
        "{} after {}",
        next.version,
        last.version
    );
}

#[test]
fn a_cycle_runs_once_per_interval() {
    let mut n0 = node(config(4, 0, Schedule::Successor));
    n0.handle_timeout(1000);
    n0.handle_timeout(1999);
    n0.handle_timeout(1500);
    let t = transmits(&mut n0);
    assert_eq!(t.len(), 1);
    assert_eq!(t[0].to, 1);
    assert!(matches!(
        body(&t[0].payload),
        Body::Push {
            kind: PushKind::Cycle,
            ..
        }
    ));
    // The first exchange with node 1 is still under way: none beside it.
    n0.handle_timeout(2000);
    assert!(transmits(&mut n0).is_empty());
    assert_eq!(n0.stats().skipped_busy, 1);
    n0.handle_reply(2000, t[0].id, &ack_from(1));
    n0.handle_timeout(3000);
    assert_eq!(transmits(&mut n0).len(), 1);
    assert_eq!(n0.stats().cycles, 3);
    assert_eq!(n0.cycle(), Some(3));
    assert_eq!(n0.next_timeout(3500), 4000);
}

#[test]
fn doubling_cycles_walk_the_offsets() {
    let mut n0 = node(config(8, 3, Schedule::Doubling));
    let mut to = Vec::new();
    for c in 3..6 {
        n0.handle_timeout(c * 1000);
        to.extend(transmits(&mut n0).iter().map(|t| t.to));
    }
    // Cycle c pushes to offset 2^(c mod 3).
    assert_eq!(to, vec![4, 5, 7]);
}

#[test]
fn misses_fail_a_member_and_switch_to_fallback_and_back() {
    let mut n0 = node(config(4, 0, Schedule::Successor));
    // Each miss is confirmed by an indirect probe that no one answers
    // (its asks fail too), judged at the next cycle: the third
    // confirmed miss, at the fourth cycle, fails the member.
    for c in 1..=4u64 {
        assert_eq!(n0.mode().0, Mode::Ring, "after {} misses", c - 1);
        n0.handle_timeout(c * 1000);
        for t in transmits(&mut n0) {
            n0.handle_failure(t.id);
        }
    }
    assert_eq!(n0.mode().0, Mode::Fallback);
    assert!(n0.view().is_failed(1));
    assert!(events(&mut n0).iter().any(|e| matches!(
        e,
        Event::ModeChanged {
            mode: Mode::Fallback,
            ..
        }
    )));
    // Fallback: a random live peer, and a probe of the failed one.
    n0.handle_timeout(5000);
    let to: Vec<u32> = transmits(&mut n0)
        .iter()
        .filter(|t| matches!(body(&t.payload), Body::Syn { .. }))
        .map(|t| t.to)
        .collect();
    assert_eq!(to.len(), 2);
    assert!(to.contains(&1));
}

#[test]
fn a_restarted_node_first_pulls_from_its_predecessor() {
    let mut cfg = config(4, 2, Schedule::Successor);
    cfg.catch_up_on_start = true;
    let mut n2 = node(cfg);
    n2.handle_timeout(1000);
    let t = transmits(&mut n2);
    assert_eq!(t.len(), 1);
    assert_eq!(t[0].to, 1);
    assert!(matches!(body(&t[0].payload), Body::Syn { .. }));
}

#[test]
fn hints_only_rise() {
    let v = |ms| Version {
        ms,
        counter: 0,
        origin: 1,
    };
    let mut hints = BTreeMap::new();
    bump(&mut hints, 1, v(3));
    bump(&mut hints, 1, v(2));
    assert_eq!(hints.get(&1), Some(&v(3)));
}

#[test]
fn the_mode_began_in_the_first_cycle_run_not_in_cycle_0() {
    // Cycles are numbered from the clock: the first one run is far from 0.
    let mut cfg = config(3, 0, Schedule::Successor);
    cfg.interval_ms = 1_000;
    let mut n0 = node(cfg);
    n0.handle_timeout(1_796_048_644_250);
    assert_eq!(n0.mode(), (Mode::Ring, 1_796_048_644, "started"));
    n0.handle_timeout(1_796_048_645_100);
    assert_eq!(n0.mode().1, 1_796_048_644);
}
