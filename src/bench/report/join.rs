//! The report's join rows: the targets table's and section 4.

use std::fmt::Write as _;

use super::error;
use super::format::{bytes, int, join_settings, pct, verdict};
use crate::bench::data::{SHUFFLE_FACTOR, SHUFFLE_MODULUS};
use crate::bench::{join, Results};

/// The run's joins: in key order with the default peer_timeout and the
/// long one, then in random key order.
fn joins(r: &Results) -> Vec<&join::Join> {
    [&r.join, &r.join_long_timeout, &r.join_shuffled]
        .into_iter()
        .flatten()
        .collect()
}

fn shuffled(j: &join::Join) -> bool {
    j.key_order == "shuffled"
}

/// The settings of a join, and its key order when not key order.
fn label(j: &join::Join) -> String {
    if shuffled(j) {
        format!("keys written in random key order, {}", join_settings(j))
    } else {
        join_settings(j)
    }
}

/// The targets table's rows for the joins (issue 15: at most 2 × the
/// pipelined limit).
pub(super) fn targets(s: &mut String, r: &Results) {
    for j in joins(r) {
        let _ = writeln!(
            s,
            "| join of {} keys{}, {} | ≤ {} × the pipelined limit | {:.2} × ({:.2} s / {:.2} s) | {} |",
            int(j.keys),
            if shuffled(j) {
                " written in random key order"
            } else {
                ""
            },
            join_settings(j),
            join::TARGET_LIMITS,
            j.seconds / j.limit_seconds.max(1e-9),
            j.seconds,
            j.limit_seconds,
            verdict(j.meets_target)
        );
    }
}

/// Section 4: join throughput.
pub(super) fn section(s: &mut String, r: &Results) {
    let keys = int(r.scale.keys);
    let _ = writeln!(s, "## 4. Join throughput\n");
    let _ = writeln!(
        s,
        "Two `ringsync node` processes on 127.0.0.1 (successor, {} ms cycles, \
         relay on, a cluster secret: every peer request signed): one holds \
         {keys} entries of 100-byte values, the other starts empty and \
         catches up (its start-up push-pull with its predecessor, and the \
         holder's cycle pushes of what it lacks). It runs twice: with the \
         default peer_timeout (half the interval), as a user gets it, and with \
         {} ms, which leaves a loaded disk time to commit a batch of 4096 \
         entries before the push times out. Time runs from starting the new \
         process (whose catch-up pull starts as it binds its listener) until \
         its digest root equals the holder's, polled every 20 ms. MB are 10^6 \
         bytes of the entries' encoding; payload is the protocol's messages, \
         on the wire the same with their HTTP heads. Beside it, in the same \
         run: a tide server answering a surf client's POSTs with one protocol \
         batch's worth of bytes each, until the same bytes have moved \
         (`src/http/bench_baseline.rs`), and bare redb inserts of the same \
         entries in transactions of {}. Target (issue 15): at most 2.0 x \
         the pipelined limit, the larger of those two.\n",
        join::INTERVAL_MS,
        join::LONG_PEER_TIMEOUT_MS,
        int(join::DISK_BATCH)
    );
    let _ = writeln!(
        s,
        "Those keys were written in key order (entry i has key \
         `bench/{{i:09}}`, versions rising with i). A third run, with the \
         default peer_timeout, joins the same number of entries written in \
         random key order: entry i has key `bench/{{p:010}}`, p = i × {} mod \
         {} (one key per entry), with entry i's value and version, so that \
         in version order the keys come in random order, as real data's do. \
         The holder's store is committed in that order, and the new node, \
         which inserts what it fetches in version order, inserts in random \
         key order. That run's disk baseline is bare inserts of its entries \
         sorted by key, what the disk does at best; its plain transfer is \
         its own, of its bytes.\n",
        int(SHUFFLE_FACTOR),
        int(SHUFFLE_MODULUS)
    );
    let joins = joins(r);
    if !joins.is_empty() {
        let _ = writeln!(
            s,
            "| | keys | bytes | seconds | MB/s |\n|---|---:|---:|---:|---:|"
        );
        for j in &joins {
            let _ = writeln!(
                s,
                "| join, {} (payload {}, {:.2} × the data; on the wire {}){} | {} | {} | {:.2} | {:.1} |",
                label(j),
                int(j.payload_bytes),
                j.payload_bytes as f64 / j.dataset_bytes.max(1) as f64,
                int(j.wire_bytes),
                if j.finished { "" } else { ", **unfinished**" },
                int(j.keys),
                int(j.dataset_bytes),
                j.seconds,
                j.mb_per_s
            );
        }
        // The baselines of the first key-order run, and of the
        // random-order run, each measured in its own run.
        let sorted = joins.iter().find(|j| !shuffled(j));
        let random = joins.iter().find(|j| shuffled(j));
        for (j, which) in [
            (sorted, ("", "")),
            (
                random,
                (", random-order run", " (random key order), sorted by key"),
            ),
        ] {
            let Some(j) = j else { continue };
            let _ = writeln!(
                s,
                "| plain HTTP, tide + surf, {} per answer{} | | {} | {:.2} | {:.1} |",
                bytes(j.baseline_chunk as f64),
                which.0,
                int(j.dataset_bytes),
                j.baseline_seconds,
                j.baseline_mb_per_s
            );
            let _ = writeln!(
                s,
                "| bare redb inserts of the same entries{}, {} per transaction | | | {:.2} | |",
                which.1,
                int(join::DISK_BATCH),
                j.disk_baseline_seconds
            );
        }
        let _ = writeln!(s);
        for j in &joins {
            let _ = writeln!(
                s,
                "Join seconds / the pipelined limit (the larger of the two baselines), {}: **{:.2} ×** (join rate / plain rate {}), target ≤ {} ×: {}.{}",
                label(j),
                j.seconds / j.limit_seconds.max(1e-9),
                pct(j.ratio),
                join::TARGET_LIMITS,
                verdict(j.meets_target),
                if j.finished {
                    ""
                } else {
                    " The new node had not caught up when the benchmark stopped waiting."
                }
            );
        }
    }
    if r.errors.keys().any(|k| k.starts_with("join")) {
        let _ = writeln!(s, "\n{}", error(r, "join"));
    }
    let _ = writeln!(s);
}
