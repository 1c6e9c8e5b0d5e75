//! Eager relay: a write reaches every node along the schedule's relay tree,
//! in hops rather than cycles, each entry sent once per receiving node.

use std::collections::VecDeque;

use ringsync::core::schedule::log2_ceil;
use ringsync::core::{Config, Node, Schedule};
use ringsync::store::MemoryStore;

const T0: u64 = 1_800_000_000_000;

fn cluster(n: u32, schedule: Schedule, relay: bool) -> Vec<Node<MemoryStore>> {
    (0..n)
        .map(|me| {
            let mut cfg = Config::new(7, n, me, schedule, 1000);
            cfg.relay = relay;
            Node::open(cfg, MemoryStore::new(), u64::from(me)).expect("memory store opens")
        })
        .collect()
}

/// Delivers messages in rounds: round k carries what round k-1's deliveries
/// made the nodes send. Returns the round after which every node's root
/// equals the writer's, with no timer firing in between.
fn rounds_to_converge(
    nodes: &mut [Node<MemoryStore>],
    from: usize,
    max_rounds: u32,
) -> Option<u32> {
    let now = T0 + 100;
    let mut wave: VecDeque<(usize, ringsync::core::Transmit)> = VecDeque::new();
    while let Some(t) = nodes[from].poll_transmit() {
        wave.push_back((from, t));
    }
    for round in 1..=max_rounds {
        let mut next = VecDeque::new();
        for (sender, t) in wave.drain(..) {
            let to = t.to as usize;
            let reply = nodes[to].handle_request(now, &t.payload);
            while let Some(x) = nodes[to].poll_transmit() {
                next.push_back((to, x));
            }
            nodes[sender].handle_reply(now, t.id, &reply);
            while let Some(x) = nodes[sender].poll_transmit() {
                next.push_back((sender, x));
            }
        }
        let root = nodes[from].root();
        if nodes.iter().all(|n| n.root() == root) {
            return Some(round);
        }
        wave = next;
        if wave.is_empty() {
            return None;
        }
    }
    None
}

fn sent(nodes: &[Node<MemoryStore>]) -> u64 {
    nodes.iter().map(|n| n.stats().entries_sent).sum()
}

#[test]
fn successor_relay_reaches_all_in_n_minus_1_hops_with_redundancy_one() {
    for n in [2u32, 3, 5, 8, 17, 32] {
        let mut nodes = cluster(n, Schedule::Successor, true);
        let w = (n / 2) as usize;
        nodes[w].write(T0, "k", Some(b"v".to_vec())).expect("write");
        let hops = rounds_to_converge(&mut nodes, w, 2 * n);
        // A round is one request and its reply: a hop.
        assert_eq!(hops, Some(n - 1), "n={n}");
        assert_eq!(sent(&nodes), u64::from(n - 1), "n={n}: redundancy 1.00");
    }
}

#[test]
fn doubling_relay_reaches_all_in_log2_n_hops_with_redundancy_one() {
    for n in [2u32, 3, 5, 8, 9, 17, 32, 100] {
        let mut nodes = cluster(n, Schedule::Doubling, true);
        let w = (n / 3) as usize;
        nodes[w].write(T0, "k", Some(b"v".to_vec())).expect("write");
        let hops = rounds_to_converge(&mut nodes, w, 2 * n);
        assert!(
            hops.is_some_and(|h| h <= log2_ceil(n)),
            "n={n}: {hops:?} hops, bound {}",
            log2_ceil(n)
        );
        assert_eq!(sent(&nodes), u64::from(n - 1), "n={n}: redundancy 1.00");
    }
}

#[test]
fn many_writes_coalesce_into_few_relays() {
    let n = 5;
    let mut nodes = cluster(n, Schedule::Successor, true);
    for i in 0..200 {
        nodes[0]
            .write(T0, &format!("k{i}"), Some(b"v".to_vec()))
            .expect("write");
    }
    // One relay in flight per target: the first write's relay goes alone,
    // the other 199 ride together in the next.
    let hops = rounds_to_converge(&mut nodes, 0, 100);
    assert!(hops.is_some(), "converged");
    assert_eq!(sent(&nodes), 200 * u64::from(n - 1));
    let relays: u64 = nodes.iter().map(|x| x.stats().relays_sent).sum();
    assert!(
        relays <= 2 * u64::from(n - 1),
        "{relays} relays for 200 writes"
    );
}

#[test]
fn without_relay_a_write_waits_for_the_cycle() {
    let mut nodes = cluster(4, Schedule::Successor, false);
    nodes[0].write(T0, "k", Some(b"v".to_vec())).expect("write");
    assert!(
        nodes[0].poll_transmit().is_none(),
        "nothing is sent before a cycle"
    );
}
