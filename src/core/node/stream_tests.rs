//! Tests of streamed deltas and of one exchange per peer at a time.

use super::super::fixture::{
    body, config, node, pushed_keys, reopen, run_cycle_late, take_one, transmits, TestStore,
    INTERVAL,
};
use super::super::{Node, Transmit};
use super::*;
use crate::core::message::Body;
use crate::core::schedule::Schedule;

/// A holder of `keys` entries of 100-byte values and a fresh node that
/// catches up from it on start, a successor ring of two; batches of
/// `batch` entries.
fn holder_and_joiner(keys: usize, batch: usize) -> Vec<Node<TestStore>> {
    let mut nodes: Vec<Node<TestStore>> = (0..2)
        .map(|me| {
            let mut cfg = config(2, me, Schedule::Successor);
            cfg.batch_entries = batch;
            cfg.catch_up_on_start = me == 1;
            node(cfg)
        })
        .collect();
    for i in 0..keys {
        nodes[0]
            .write(100, &format!("k{i:06}"), Some(vec![b'v'; 100]))
            .expect("write");
    }
    // Opened over its data, as a node holding a dataset is: nothing of it
    // waits in a relay queue.
    nodes[0] = reopen(nodes[0].config().clone(), nodes[0].store().clone());
    nodes
}

/// As [`holder_and_joiner`], the holder's keys written in random order:
/// their versions rise in an order that is not the keys'.
fn shuffled_holder_and_joiner(keys: usize, batch: usize) -> Vec<Node<TestStore>> {
    let mut nodes = holder_and_joiner(0, batch);
    for i in 0..keys {
        let k = (i * 7919) % keys;
        nodes[0]
            .write(100, &format!("k{k:06}"), Some(vec![b'v'; 100]))
            .expect("write");
    }
    nodes[0] = reopen(nodes[0].config().clone(), nodes[0].store().clone());
    nodes
}

/// Serves every request of `sent` and the requests they lead to, at once;
/// returns every push the holder (`nodes[0]`) sent, in the order sent.
fn serve_all(nodes: &mut [Node<TestStore>], sent: Vec<Transmit>) -> Vec<Transmit> {
    let mut pushes = Vec::new();
    let mut queue: std::collections::VecDeque<Transmit> = sent.into();
    while let Some(t) = queue.pop_front() {
        let reply = nodes[1].handle_request(1000, &t.payload);
        nodes[0].handle_reply(1000, t.id, &reply);
        queue.extend(transmits(&mut nodes[0]));
        pushes.push(t);
    }
    pushes
}

/// The keys of `pushes` after the first (the exchange's own push), in
/// the order sent.
fn streamed_keys(pushes: &[Transmit]) -> Vec<String> {
    pushes
        .iter()
        .skip(1)
        .flat_map(|t| pushed_keys(&t.payload).unwrap_or_default())
        .collect()
}

/// The holder (`nodes[0]`) opens a sync with the joiner, which answers
/// its push: returns the first window of the holder's stream.
fn opened(nodes: &mut [Node<TestStore>]) -> Vec<Transmit> {
    nodes[0].sync_with(1);
    let push = transmits(&mut nodes[0]);
    let reply = nodes[1].handle_request(1000, &push[0].payload);
    nodes[0].handle_reply(1000, push[0].id, &reply);
    transmits(&mut nodes[0])
}

/// Runs cycles `from..from + cycles` of `nodes`: each request is served at
/// once, and its reply delivered `delay` cycles later. Stops after the
/// first cycle at whose end `done` holds; returns the cycles run.
fn run_slow(
    nodes: &mut [Node<TestStore>],
    from: u64,
    cycles: u64,
    delay: u64,
    done: impl Fn(&[Node<TestStore>]) -> bool,
) -> u64 {
    let mut late = Vec::new();
    for c in from..from + cycles {
        run_cycle_late(nodes, c, delay, &mut late);
        if done(nodes) {
            return c - from + 1;
        }
    }
    cycles
}

fn entries_sent(nodes: &[Node<TestStore>]) -> u64 {
    nodes.iter().map(|n| n.stats().entries_sent).sum()
}

/// A join whose replies take three cycles each: every cycle started a new
/// exchange while the earlier ones ran, each sending the same delta from
/// the same hints (14 times the data with a 5 s peer timeout). One
/// exchange per peer, and a stream that sends each entry once.
#[test]
fn a_join_with_replies_slower_than_a_cycle_sends_each_entry_about_once() {
    slow_join_sends_each_entry_about_once(holder_and_joiner(8000, 256), 8000);
}

/// The same with keys written in random order: sent in key order, the
/// receiver's hints leap to the top at once, and it must not take that
/// for a sign to compare trees while the stream still runs.
#[test]
fn a_slow_join_in_key_order_sends_each_entry_about_once() {
    slow_join_sends_each_entry_about_once(shuffled_holder_and_joiner(8000, 256), 8000);
}

fn slow_join_sends_each_entry_about_once(mut nodes: Vec<Node<TestStore>>, keys: usize) {
    let cycles = run_slow(&mut nodes, 1, 200, 3, |n| {
        n[1].counts() == n[0].counts() && n[1].root() == n[0].root()
    });
    assert!(
        cycles < 200,
        "the join did not end: {:?}",
        nodes[1].counts()
    );
    let sent = entries_sent(&nodes);
    assert!(
        sent as f64 <= 1.10 * keys as f64,
        "{sent} entries sent for {keys}"
    );
    assert!(nodes[0].stats().skipped_busy > 0);
    // Several batches at once: far fewer round trips than batches.
    let batches = keys.div_ceil(256) as u64;
    assert!(
        cycles < batches * 3,
        "{cycles} cycles for {batches} batches"
    );
}

/// The holder's delta after the joiner's first answer: the window's
/// batches leave at once, one after the other by the cursor, and each
/// answer lets one more go.
fn streaming(batch: usize) -> (Vec<Node<TestStore>>, Vec<Transmit>) {
    let mut nodes = holder_and_joiner(batch * 10, batch);
    let ex = nodes[0].sync_with(1);
    let push = transmits(&mut nodes[0]);
    assert_eq!(push.len(), 1, "the sync's first push");
    let reply = nodes[1].handle_request(1000, &push[0].payload);
    nodes[0].handle_reply(1000, push[0].id, &reply);
    let sent = transmits(&mut nodes[0]);
    assert!(nodes[0].exchanges.contains_key(&ex));
    (nodes, sent)
}

fn keys_of(t: &Transmit) -> Vec<String> {
    match body(&t.payload) {
        Body::Push { entries, .. } => entries.into_iter().map(|e| e.key).collect(),
        other => panic!("expected a push, got {other:?}"),
    }
}

#[test]
fn a_stream_keeps_its_window_of_batches_in_flight_from_its_cursor() {
    let (mut nodes, sent) = streaming(50);
    assert_eq!(sent.len(), WINDOW);
    let all: Vec<String> = sent.iter().flat_map(keys_of).collect();
    let expected: Vec<String> = (0..WINDOW * 50).map(|i| format!("k{i:06}")).collect();
    assert_eq!(all, expected, "consecutive batches, nothing twice");
    // One answer, one more batch: the next 50 after the cursor, though
    // the receiver's hints (it took only the first) are far behind.
    let reply = nodes[1].handle_request(1000, &sent[0].payload);
    nodes[0].handle_reply(1000, sent[0].id, &reply);
    let next = transmits(&mut nodes[0]);
    assert_eq!(next.len(), 1);
    let expected: Vec<String> = (WINDOW * 50..(WINDOW + 1) * 50)
        .map(|i| format!("k{i:06}"))
        .collect();
    assert_eq!(keys_of(&next[0]), expected);
}

/// Batches taken out of order by the receiver, one of them lost: the
/// lost one goes again, exactly, and nothing else does.
#[test]
fn a_lost_batch_goes_again_and_only_it() {
    let (mut nodes, sent) = streaming(50);
    // The later batches arrive first; the receiver takes them.
    for t in sent.iter().skip(2).rev() {
        let reply = nodes[1].handle_request(1000, &t.payload);
        assert!(
            matches!(body(&reply), Body::Ack { .. }),
            "taken out of order"
        );
        nodes[0].handle_reply(1000, t.id, &reply);
    }
    let more = transmits(&mut nodes[0]);
    assert_eq!(more.len(), 2, "two answers, two more batches");
    // The second batch is lost: the window halves, and it goes again once
    // there is room, before anything new.
    nodes[0].handle_failure(sent[1].id);
    assert_eq!(nodes[0].stats().batches_lost, 1);
    let reply = nodes[1].handle_request(1000, &sent[0].payload);
    nodes[0].handle_reply(1000, sent[0].id, &reply);
    for t in &more {
        let reply = nodes[1].handle_request(1000, &t.payload);
        nodes[0].handle_reply(1000, t.id, &reply);
    }
    let again = transmits(&mut nodes[0]);
    assert!(!again.is_empty());
    assert_eq!(
        keys_of(&again[0]),
        keys_of(&sent[1]),
        "the lost batch, again"
    );
    // The rest of the stream, answered at once, brings the receiver level
    // with each entry sent once but the lost batch's.
    let mut queue = again;
    while let Some(t) = queue.pop() {
        let reply = nodes[1].handle_request(1000, &t.payload);
        nodes[0].handle_reply(1000, t.id, &reply);
        queue.extend(transmits(&mut nodes[0]));
    }
    assert_eq!(nodes[1].root(), nodes[0].root());
    assert_eq!(nodes[0].stats().entries_sent, 500 + 50);
}

/// A peer that never answers is still judged failed by the timeouts of
/// the one exchange at a time, and no exchange is started beside one
/// under way.
#[test]
fn a_peer_that_never_answers_is_failed_by_timeouts_of_one_exchange_at_a_time() {
    let mut n0 = node(config(2, 0, Schedule::Successor));
    let threshold = u64::from(n0.config().failure_threshold);
    let mut sent = 0;
    let mut c = 1;
    while !n0.view().is_failed(1) && c < 100 {
        // A request times out two cycles after it left.
        n0.handle_timeout(c * INTERVAL);
        let out = transmits(&mut n0);
        assert!(out.len() <= 1, "one exchange at a time: {out:?}");
        sent += out.len() as u64;
        n0.handle_timeout((c + 1) * INTERVAL);
        assert!(transmits(&mut n0).is_empty(), "busy: no exchange beside it");
        for t in out {
            n0.handle_failure(t.id);
        }
        c += 2;
    }
    assert!(n0.view().is_failed(1), "never failed");
    assert_eq!(sent, threshold);
    assert_eq!(n0.stats().skipped_busy, threshold);
}

/// Keys written in random order, a peer that holds none of them: our keys
/// go in key order (its inserts run along its key index, not all over
/// it), each once, and the peer ends level.
#[test]
fn a_peer_that_holds_little_is_sent_our_keys_in_key_order_each_once() {
    let keys = 1000;
    let mut nodes = shuffled_holder_and_joiner(keys, 50);
    nodes[0].sync_with(1);
    let push = transmits(&mut nodes[0]);
    let pushes = serve_all(&mut nodes, push);
    let sent = streamed_keys(&pushes);
    let mut sorted = sent.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sent.len(), keys, "each once");
    assert_eq!(sent, sorted, "in key order");
    assert_eq!(nodes[1].root(), nodes[0].root());
    assert_eq!(nodes[1].counts(), nodes[0].counts());
}

/// A peer that holds most of what we hold is sent the rest in version
/// order, as ever: a key-order walk would read every key to find a few.
#[test]
fn a_peer_that_holds_most_is_sent_the_rest_in_version_order() {
    let keys = 1000;
    let mut nodes = shuffled_holder_and_joiner(keys, 50);
    nodes[0].sync_with(1);
    let push = transmits(&mut nodes[0]);
    // The joiner takes the first 600 entries by version, then falls
    // behind: the rest goes in version order.
    let mut written = Vec::new();
    nodes[0]
        .store()
        .for_each(&mut |e| written.push(e.clone()))
        .expect("read");
    written.sort_by_key(|e| e.version);
    for e in &written[..600] {
        take_one(&mut nodes[1], 1000, 0, e);
    }
    let pushes = serve_all(&mut nodes, push);
    let sent = streamed_keys(&pushes);
    let expected: Vec<String> = written[600..].iter().map(|e| e.key.clone()).collect();
    assert_eq!(sent, expected, "the 400 newest, in version order");
    assert_eq!(nodes[1].root(), nodes[0].root());
}

/// In key order too, a lost batch goes again, exactly, and nothing else
/// does twice.
#[test]
fn a_lost_batch_in_key_order_goes_again_and_only_it() {
    let keys = 1000;
    let mut nodes = shuffled_holder_and_joiner(keys, 50);
    let sent = opened(&mut nodes);
    assert_eq!(sent.len(), WINDOW);
    nodes[0].handle_failure(sent[1].id);
    assert_eq!(nodes[0].stats().batches_lost, 1);
    let mut rest = sent;
    let lost = rest.remove(1);
    let pushes = serve_all(&mut nodes, rest);
    let again: Vec<&Transmit> = pushes
        .iter()
        .filter(|t| pushed_keys(&t.payload) == pushed_keys(&lost.payload))
        .collect();
    assert_eq!(again.len(), 1, "the lost batch went again, once");
    assert_eq!(nodes[1].root(), nodes[0].root());
    assert_eq!(nodes[0].stats().entries_sent as usize, keys + 50);
}

/// Writes behind the cursor while a key-order stream runs are holes below
/// the receiver's leapt hints: the cycles after it find and fill them.
#[test]
fn writes_behind_a_key_order_cursor_are_found_after_it() {
    let keys = 2000;
    let mut nodes = shuffled_holder_and_joiner(keys, 50);
    let first = opened(&mut nodes);
    // The first batches left; now the low keys change at the holder.
    for k in 0..20 {
        nodes[0]
            .write(1500, &format!("k{k:06}"), Some(b"new".to_vec()))
            .expect("write");
    }
    serve_all(&mut nodes, first);
    let cycles = run_slow(&mut nodes, 2, 60, 0, |n| n[1].root() == n[0].root());
    assert!(cycles < 60, "the holes were never filled");
    let got = nodes[1].store().get("k000003").expect("read");
    assert_eq!(got.and_then(|e| e.value), Some(b"new".to_vec()));
}

/// A key-order stream given up after losses (the receiver's hints leapt
/// with its first batches): the cycles after it still bring the rest.
#[test]
fn a_key_order_stream_given_up_is_finished_by_the_cycles_after_it() {
    let keys = 2000;
    let mut nodes = shuffled_holder_and_joiner(keys, 50);
    let mut sent = opened(&mut nodes);
    // The first batch arrives, the rest are lost, round after round.
    let reply = nodes[1].handle_request(1000, &sent[0].payload);
    nodes[0].handle_reply(1000, sent[0].id, &reply);
    sent.remove(0);
    sent.extend(transmits(&mut nodes[0]));
    let mut lost = 0;
    let mut lost_batches = Vec::new();
    for _ in 0..10 {
        if sent.is_empty() {
            break;
        }
        for t in std::mem::take(&mut sent) {
            let k = pushed_keys(&t.payload).unwrap_or_default();
            lost += k.len();
            lost_batches.push(k);
            nodes[0].handle_failure(t.id);
        }
        sent = transmits(&mut nodes[0]);
    }
    assert!(
        nodes[1].counts().0 < keys as u64 / 2,
        "{:?}",
        nodes[1].counts()
    );
    // The holder's next cycle: its stream to the joiner resumes the walk,
    // lost batches first, though the joiner's hints now stand far above
    // most of what it lacks.
    nodes[0].handle_timeout(2 * INTERVAL);
    let push = transmits(&mut nodes[0]);
    let reply = nodes[1].handle_request(2 * INTERVAL, &push[0].payload);
    nodes[0].handle_reply(2 * INTERVAL, push[0].id, &reply);
    let resumed = transmits(&mut nodes[0]);
    let first = resumed.first().and_then(|t| pushed_keys(&t.payload));
    assert!(
        first.as_ref().is_some_and(|k| lost_batches.contains(k)),
        "resumed with a lost batch: {first:?}"
    );
    serve_all(&mut nodes, resumed);
    let cycles = run_slow(&mut nodes, 3, 100, 0, |n| n[1].root() == n[0].root());
    assert!(cycles < 10, "{cycles} cycles: {:?}", nodes[1].counts());
    // Nothing crossed twice but what was lost, and the joiner's own pull
    // (a batch at most).
    let sent = entries_sent(&nodes) as usize;
    assert!(
        sent <= keys + lost + 50,
        "{sent} sent for {keys}, {lost} lost"
    );
}

/// The same, given up near its end: the receiver now holds most, its
/// hints at the top, and what it lacks are holes only the trees show.
#[test]
fn a_key_order_stream_given_up_near_its_end_is_finished_by_tree_repair() {
    let keys = 2000;
    let mut nodes = shuffled_holder_and_joiner(keys, 50);
    nodes[0].sync_with(1);
    let push = transmits(&mut nodes[0]);
    let mut queue: std::collections::VecDeque<Transmit> = push.into();
    while let Some(t) = queue.pop_front() {
        if nodes[1].counts().0 >= 1800 {
            nodes[0].handle_failure(t.id);
        } else {
            let reply = nodes[1].handle_request(1000, &t.payload);
            nodes[0].handle_reply(1000, t.id, &reply);
        }
        queue.extend(transmits(&mut nodes[0]));
    }
    assert!(nodes[1].counts().0 < keys as u64, "{:?}", nodes[1].counts());
    let cycles = run_slow(&mut nodes, 2, 100, 0, |n| n[1].root() == n[0].root());
    assert!(cycles < 100, "never level: {:?}", nodes[1].counts());
}

/// A walk kept for a position is dropped when the ring changes: the
/// position then names another node, which the walk's cursor says nothing
/// of.
#[test]
fn a_kept_walk_goes_with_a_ring_change() {
    let mut nodes = shuffled_holder_and_joiner(2000, 50);
    let mut sent = opened(&mut nodes);
    while !sent.is_empty() {
        for t in std::mem::take(&mut sent) {
            nodes[0].handle_failure(t.id);
        }
        sent = transmits(&mut nodes[0]);
    }
    assert!(nodes[0].key_walks.contains_key(&1), "the walk was kept");
    let c = nodes[0].config().cluster;
    nodes[0]
        .change_ring(c + 1, 1, vec![0, 1], 0)
        .expect("a new ring");
    assert!(nodes[0].key_walks.is_empty());
}

/// Fails every request `node` has to send, and those that follows from
/// it, until it has none: its peer cannot be reached.
fn drop_all(node: &mut Node<TestStore>) {
    let mut out = transmits(node);
    while !out.is_empty() {
        for t in out {
            node.handle_failure(t.id);
        }
        out = transmits(node);
    }
}

/// A node fed one batch in key order that its peer then cannot reach (a
/// one-way cut): its hints leapt with that batch, so its pulls bring
/// nothing, and once no batch has come for a few cycles its own
/// exchanges fill the rest by comparing trees.
#[test]
fn a_sparse_node_its_peer_cannot_reach_fills_in_by_its_own_exchanges() {
    let keys = 2000;
    let mut nodes = shuffled_holder_and_joiner(keys, 50);
    let first = opened(&mut nodes);
    let reply = nodes[1].handle_request(1000, &first[0].payload);
    nodes[0].handle_reply(1000, first[0].id, &reply);
    for t in &first[1..] {
        nodes[0].handle_failure(t.id);
    }
    drop_all(&mut nodes[0]);
    let mut level = false;
    for c in 2..80 {
        let now = c * INTERVAL;
        nodes[0].handle_timeout(now);
        drop_all(&mut nodes[0]);
        nodes[1].handle_timeout(now);
        let mut queue = transmits(&mut nodes[1]);
        while let Some(t) = queue.pop() {
            let reply = nodes[0].handle_request(now, &t.payload);
            nodes[1].handle_reply(now, t.id, &reply);
            queue.extend(transmits(&mut nodes[1]));
            drop_all(&mut nodes[0]);
        }
        if nodes[1].root() == nodes[0].root() {
            level = true;
            break;
        }
    }
    assert!(level, "never filled: {:?}", nodes[1].counts());
}
