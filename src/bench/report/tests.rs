//! Tests of the benchmark report's text.

use super::*;
use crate::bench::{machine, merge::Merge, Scale};

fn results() -> Results {
    let mut r = Results::empty(machine::describe(), Scale::new(false));
    r.seconds = 300.0;
    r
}

#[test]
fn a_missed_target_is_said_plainly_and_a_failed_section_says_why() {
    let mut r = results();
    r.merge = Some(Merge {
        entries: 10,
        batches: 1,
        node_seconds: 1.0,
        node_rate: 10.0,
        store_seconds: 0.5,
        store_rate: 20.0,
        close_seconds: 0.2,
        bare_seconds: 0.1,
        bare_rate: 100.0,
        ratio: 0.1,
        meets_target: false,
        rounds: 1,
    });
    r.errors.insert("join".into(), "no processes today".into());
    let md = markdown(&r);
    assert!(md.contains("| merge into redb | ≥ 40% of bare inserts | 10% | **missed** |"));
    assert!(md.contains("not measured: join: no processes today"));
    assert!(md.contains("| processors (`nproc`) |"));
}

fn join(key_order: &str, seconds: f64, limit_seconds: f64) -> crate::bench::join::Join {
    crate::bench::join::Join {
        peer_timeout_ms: 500,
        default_peer_timeout: true,
        key_order: key_order.into(),
        keys: 1_000_000,
        dataset_bytes: 127_874_944,
        seconds,
        mb_per_s: 127.874944 / seconds,
        payload_bytes: 128_000_000,
        wire_bytes: 128_100_000,
        baseline_seconds: 1.5,
        baseline_mb_per_s: 85.2,
        baseline_chunk: 520_192,
        disk_baseline_seconds: limit_seconds,
        limit_seconds,
        ratio: 1.5 / seconds,
        finished: true,
        meets_target: seconds <= 2.0 * limit_seconds,
    }
}

#[test]
fn the_join_in_random_key_order_has_its_rows() {
    let mut r = results();
    r.join = Some(join("sorted", 3.16, 3.30));
    r.join_shuffled = Some(join("shuffled", 23.7, 4.25));
    let md = markdown(&r);
    assert!(md.contains(
        "| join of 1,000,000 keys, default peer_timeout (500 ms) | ≤ 2 × the pipelined limit | 0.96 × (3.16 s / 3.30 s) | met |"
    ));
    assert!(md.contains(
        "| join of 1,000,000 keys written in random key order, default peer_timeout (500 ms) | ≤ 2 × the pipelined limit | 5.58 × (23.70 s / 4.25 s) | **missed** |"
    ));
    assert!(md.contains(
        "| join, keys written in random key order, default peer_timeout (500 ms) (payload 128,000,000, 1.00 × the data; on the wire 128,100,000) | 1,000,000 | 127,874,944 | 23.70 | 5.4 |"
    ));
    assert!(md.contains(
        "| bare redb inserts of the same entries (random key order), sorted by key, 65,536 per transaction | | | 4.25 | |"
    ));
    assert!(md.contains(
        "Join seconds / the pipelined limit (the larger of the two baselines), keys written in random key order, default peer_timeout (500 ms): **5.58 ×**"
    ));
    assert!(md.contains("p = i × 2,654,435,761 mod 1,000,000,007"));

    r.join_shuffled = None;
    r.errors
        .insert("join-shuffled".into(), "no processes today".into());
    let md = markdown(&r);
    assert!(!md.contains("random key order, default peer_timeout"));
    assert!(md.contains("not measured: join-shuffled: no processes today"));
}
