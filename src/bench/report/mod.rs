//! The benchmark's report: `docs/BENCHMARKS.md` and the chart.

mod format;
mod idle;
mod join;
mod staleness;
mod writes;

use std::fmt::Write as _;

use super::{convergence, digest, latency, merge, put, wire, Results};
use crate::core::schedule::log2_ceil;
use format::{bytes, duration, int, pct, unfinished, verdict};

/// The convergence chart of the run's simulator sweep.
pub fn chart(r: &Results) -> String {
    crate::sim::plot::svg(
        &format!(
            "Cycles to convergence (simulator: {} writes from {} writers, mean of {} runs)",
            super::convergence::SIM_WRITES,
            super::convergence::SIM_WRITERS,
            r.scale.sim_runs
        ),
        &r.sim,
    )
}

fn error(r: &Results, prefix: &str) -> String {
    let errs: Vec<String> = r
        .errors
        .iter()
        .filter(|(k, _)| k.starts_with(prefix))
        .map(|(k, v)| format!("{k}: {v}"))
        .collect();
    if errs.is_empty() {
        "not measured in this run.".into()
    } else {
        format!("not measured: {}", errs.join("; "))
    }
}

/// `docs/BENCHMARKS.md`.
pub fn markdown(r: &Results) -> String {
    let mut s = String::new();
    let m = &r.machine;
    let keys = int(r.scale.keys);
    let _ = writeln!(s, "# Benchmarks\n");
    let _ = writeln!(
        s,
        "Written by `ringsync bench` (run it with `cargo run --release -- bench`; \
         {} here). The raw figures are in \
         [`bench/results/latest.json`](../bench/results/latest.json). Every \
         figure is a count that does not depend on the machine's speed (cycles, \
         messages, bytes, entries), or a ratio against a baseline measured in \
         the same run on the same machine. Where a target is missed, the table \
         says so.{}\n",
        duration(r.seconds),
        if r.scale.quick {
            " **This is a `--quick` smoke run on small datasets: not the issue's sizes.**"
        } else {
            ""
        }
    );
    let _ = writeln!(s, "| machine | |\n|---|---|");
    let _ = writeln!(s, "| date (UTC) | {} |", m.date);
    let _ = writeln!(s, "| processors (`nproc`) | {} |", m.nproc);
    let _ = writeln!(s, "| CPU model | {} |", m.cpu);
    let _ = writeln!(s, "| memory | {} |", bytes(m.memory_bytes as f64));
    let _ = writeln!(s, "| kernel | {} |", m.kernel);
    let _ = writeln!(
        s,
        "| file system of the data (temp dir) | {} |",
        m.scratch_fs
    );
    let _ = writeln!(s, "| rustc | {} |", m.rustc);
    let _ = writeln!(s, "| build | {} |", m.profile);
    let _ = writeln!(s, "| run time | {} |\n", duration(r.seconds));

    // ----- targets at a glance
    let _ = writeln!(s, "## Targets\n");
    let _ = writeln!(s, "| figure | target | measured | |\n|---|---|---|---|");
    if let Some(w) = &r.join_idle_wire {
        let _ = writeln!(
            s,
            "| idle cycle on the wire (HTTP heads and bodies), {} processes, {} keys, {} | ≤ 1 KiB | {} | {} |",
            w.nodes,
            int(w.keys),
            w.schedule,
            bytes(w.wire_bytes),
            verdict(w.meets_target)
        );
    }
    for w in r.idle_wire.iter().flatten() {
        let _ = writeln!(
            s,
            "| idle bytes on the wire per node per interval, N = {}, {} | ≤ {} B, flat in N | {} | {} |",
            w.nodes,
            w.schedule,
            wire::PER_NODE_TARGET_BYTES,
            bytes(w.bytes_per_node_per_interval),
            verdict(w.meets_target)
        );
    }
    if let Some(idle) = &r.idle {
        for i in idle {
            let _ = writeln!(
                s,
                "| idle cycle, payload only (in-process, no HTTP heads), {} keys, {} | ≤ 1 KiB on the wire | {} | not the wire figure |",
                int(i.keys),
                i.schedule,
                bytes(i.bytes as f64)
            );
        }
    }
    if let Some(rep) = &r.repair {
        for x in rep {
            let _ = writeln!(
                s,
                "| repair of d = {} among {} keys | ≤ {} × entry bytes + 64 KiB = {}{} | {} ({:.2} × entry bytes) | {} |",
                int(x.d),
                int(x.keys),
                digest::REPAIR_FACTOR,
                bytes(digest::REPAIR_FACTOR * x.entry_bytes as f64 + digest::REPAIR_ALLOWANCE as f64),
                if x.d == 1 { ", and ≤ 4 KiB with heads" } else { "" },
                if x.d == 1 {
                    format!(
                        "{}; {} with heads ({} counting the two cycle pushes of an idle cycle too)",
                        bytes(x.bytes as f64),
                        bytes(x.repair_bytes_with_heads as f64),
                        bytes(x.bytes_with_heads as f64)
                    )
                } else {
                    bytes(x.bytes as f64)
                },
                x.ratio,
                verdict(x.meets_target)
            );
        }
    }
    join::targets(&mut s, r);
    if let Some(mg) = &r.merge {
        let _ = writeln!(
            s,
            "| merge into redb | ≥ 40% of bare inserts | {} | {} |",
            pct(mg.ratio),
            verdict(mg.meets_target)
        );
    }
    if let Some(mem) = &r.memory {
        let peak = mem.holder_peak_bytes.max(mem.joiner_peak_bytes);
        let _ = writeln!(
            s,
            "| peak memory of a node holding {} keys | ≤ {:.0} MB | {:.0} MB | {} |",
            int(mem.keys),
            mem.target_bytes as f64 / 1e6,
            peak as f64 / 1e6,
            verdict(mem.meets_target)
        );
    }
    if let Some(p) = &r.put {
        // One decimal: 29.6% reads as missed, where "30%" would not.
        let _ = writeln!(
            s,
            "| PUT rate, {} keep-alive clients | ≥ {} of a plain tide server | {:.1}% | {} |",
            p.clients,
            pct(put::TARGET_RATIO),
            p.ratio * 100.0,
            verdict(p.meets_target)
        );
    }
    if let Some(l) = &r.livez {
        let _ = writeln!(
            s,
            "| kept-alive `GET /livez`, p50 | ≤ {} ms | {:.2} ms | {} |",
            put::TARGET_LIVEZ_MS,
            l.p50_ms,
            verdict(l.meets_target)
        );
    }
    writes::visibility_targets(&mut s, r);
    let _ = writeln!(s);

    // ----- 1. convergence
    let _ = writeln!(s, "## 1. Convergence\n");
    let _ = writeln!(
        s,
        "![cycles to convergence against N](bench-convergence.svg)\n"
    );
    let _ = writeln!(
        s,
        "Simulator (`src/sim`, the real core over a virtual clock; {} writes \
         spread over {} writers before the first cycle; lossless, latency 1-5 ms \
         against 1 s cycles; {} run(s) per row, seeds 1 on). \"Redundancy\" is \
         entries sent over entries needed (each node's missing entries). The \
         chart above draws the whole sweep (N = 2, 4, ..., 512, 1000); eager \
         relay is off, so that the schedules' own cycles show.\n",
        super::convergence::SIM_WRITES,
        super::convergence::SIM_WRITERS,
        r.scale.sim_runs
    );
    let _ = writeln!(
        s,
        "| N | schedule | cycles (mean) | max | bound | messages | entries | payload bytes | redundancy |\n|---:|---|---:|---:|---|---:|---:|---:|---:|"
    );
    for n in [8u32, 64, 1000] {
        for row in r.sim.iter().filter(|x| x.nodes == n) {
            let bound = match row.schedule.as_str() {
                "successor" => format!("N-1 = {}", n - 1),
                "doubling" => format!("ceil(log2 N) = {}", log2_ceil(n)),
                _ => "none (log3 N + O(log log N) expected)".into(),
            };
            let _ = writeln!(
                s,
                "| {} | {} | {:.2} | {} | {} | {} | {} | {} | {:.2} |",
                n,
                row.schedule,
                row.cycles_mean,
                row.cycles_max,
                bound,
                int(row.messages.round() as u64),
                int(row.entries_sent.round() as u64),
                int(row.bytes.round() as u64),
                row.redundancy
            );
        }
    }
    let _ = writeln!(
        s,
        "\nReal processes (`ringsync node` children of the benchmark, on \
         127.0.0.1, {} ms cycles, peer_timeout {} ms, relay off, no secret): \
         one write at each node, counted from `/v1/status` and `/metrics` \
         until two cycles after every node serves every key. Cycles are the \
         most any write took, from the cycle of its version to the cycle its \
         last node got it in; that arrival is seen from outside, between two \
         poll rounds, and \"4-5\" means the rounds straddled a boundary (see \
         `src/proc_cluster/spread.rs`). Messages are requests sent times two.\n",
        convergence::INTERVAL_MS,
        convergence::PEER_TIMEOUT_MS
    );
    match &r.real {
        Some(rows) if !rows.is_empty() => {
            let _ = writeln!(
                s,
                "| N | schedule | cycles | messages | entries | payload bytes | redundancy |\n|---:|---|---:|---:|---:|---:|---:|"
            );
            for x in rows {
                let cycles = if x.cycles == x.cycles_at_most {
                    x.cycles.to_string()
                } else {
                    format!("{}-{}", x.cycles, x.cycles_at_most)
                };
                let _ = writeln!(
                    s,
                    "| {} | {} | {} | {} | {} | {} | {:.2} |",
                    x.nodes,
                    x.schedule,
                    cycles,
                    int(x.messages),
                    int(x.entries),
                    int(x.bytes),
                    x.redundancy
                );
            }
        }
        _ => {
            let _ = writeln!(s, "{}", error(r, "real"));
        }
    }
    let real_missing: Vec<&String> = r.errors.keys().filter(|k| k.starts_with("real")).collect();
    if !real_missing.is_empty() && r.real.as_ref().is_some_and(|v| !v.is_empty()) {
        let _ = writeln!(s, "\n{}", error(r, "real"));
    }
    let _ = writeln!(s);

    // ----- 2. idle
    let _ = writeln!(s, "## 2. Idle cost\n");
    let _ = writeln!(
        s,
        "Two converged core nodes over redb stores holding the same {keys} \
         keys (100-byte values), driven in-process: every request handed to the \
         peer at once, the encoded bytes of every request and reply counted. \
         That is the payload: the HTTP heads a node adds on the wire (request \
         line, headers, the signature headers of a cluster with a secret) are \
         not in it. One steady cycle (after a first): under successor each \
         node pushes its digest to the other and gets the other's back; under \
         random each starts one push-pull. Target: at most 1 KiB, counted as \
         the bytes cross the wire (the table after this one).\n"
    );
    match &r.idle {
        Some(rows) => {
            let _ = writeln!(
                s,
                "| schedule | keys | messages | payload bytes | entries |\n|---|---:|---:|---:|---:|"
            );
            for i in rows {
                let _ = writeln!(
                    s,
                    "| {} | {} | {} | {} | {} |",
                    i.schedule,
                    int(i.keys),
                    i.messages,
                    int(i.bytes),
                    i.entries
                );
            }
        }
        None => {
            let _ = writeln!(s, "{}", error(r, "digest"));
        }
    }
    let _ = writeln!(
        s,
        "\nOn the wire: the two `ringsync node` processes of the join below \
         (successor, {} ms cycles, the default peer_timeout, relay on, a \
         cluster secret: every peer request signed), once converged, each \
         holding {keys} keys; {} idle cycles, read in the middle of a cycle. \
         Payload is what the nodes count (`ringsync_bytes_sent_total`); on \
         the wire is the same requests and answers as they crossed the \
         listeners' sockets, heads and bodies \
         (`ringsync_peer_wire_bytes_total`), without TCP/IP framing.\n",
        super::join::INTERVAL_MS,
        wire::CYCLES
    );
    match &r.join_idle_wire {
        Some(w) => {
            let _ = writeln!(
                s,
                "| schedule | keys | messages | payload bytes | bytes on the wire | entries | target ≤ 1 KiB on the wire |\n|---|---:|---:|---:|---:|---:|---|"
            );
            let _ = writeln!(
                s,
                "| {} | {} | {:.1} | {} | {} | {} | {} |",
                w.schedule,
                int(w.keys),
                2.0 * w.requests,
                int(w.payload_bytes.round() as u64),
                int(w.wire_bytes.round() as u64),
                w.entries,
                verdict(w.meets_target)
            );
        }
        None => {
            let _ = writeln!(s, "{}", error(r, "idle-wire"));
        }
    }
    let _ = writeln!(s);
    idle::idle_sweep(&mut s, r);

    // ----- 3. repair
    let _ = writeln!(s, "## 3. Repair cost\n");
    let _ = writeln!(
        s,
        "The same two nodes; d entries are committed into one node's store \
         behind the protocol's back, with versions below what both nodes' \
         hints already cover (holes, as a lost relay leaves them), and that \
         node is reopened so that its digest is rebuilt. The hints then agree \
         and only the digest tree can find the difference: the hard case. \
         Bytes are the payload both nodes sent until their roots were equal \
         (encoded messages, without HTTP heads; with heads adds an estimated \
         290 bytes per message, as the idle cycle measured on the wire; the \
         repair's own leaves out what the same cycles cost idle, the two \
         nodes' cycle pushes and acks); entry bytes are the d entries' own \
         postcard encoding. Target: bytes at most 1.5 × entry bytes + 64 KiB, \
         and for d = 1 at most 4 KiB, the repair's own with heads.\n"
    );
    match &r.repair {
        Some(rows) => {
            let _ = writeln!(
                s,
                "| d | keys | cycles | messages | bytes | with heads | the repair's own, with heads | entry bytes | bytes / entry bytes | target |\n|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"
            );
            for x in rows {
                let _ = writeln!(
                    s,
                    "| {} | {} | {} | {} | {} | {} | {} | {} | {:.2} | {}{} |",
                    int(x.d),
                    int(x.keys),
                    x.cycles,
                    int(x.messages),
                    int(x.bytes),
                    int(x.bytes_with_heads),
                    int(x.repair_bytes_with_heads),
                    int(x.entry_bytes),
                    x.ratio,
                    verdict(x.meets_target),
                    if x.repaired { "" } else { " (never repaired)" }
                );
            }
            let _ = writeln!(
                s,
                "\nWhere the bytes went (messages, bytes), by message type:\n"
            );
            for x in rows {
                let parts: Vec<String> = x
                    .by_type
                    .iter()
                    .map(|(k, (m, b))| format!("{k} {m}, {}", bytes(*b as f64)))
                    .collect();
                let _ = writeln!(s, "- d = {}: {}", int(x.d), parts.join("; "));
            }
        }
        None => {
            let _ = writeln!(s, "{}", error(r, "digest"));
        }
    }
    let _ = writeln!(s);

    // ----- 4. join
    join::section(&mut s, r);

    // ----- 5. merge
    let _ = writeln!(s, "## 5. Merge throughput\n");
    let _ = writeln!(
        s,
        "A `Node<RedbStore>` receives the {keys} entries as the pushes of a \
         manual-sync hop from an in-memory node (one commit per push, redb's \
         default immediate durability); only the receiver's handling is timed: \
         decode, validate, merge under last writer wins, the record and its \
         change-list row (and the index folds that fall due), the digest \
         tree, the reply. Beside it, in the same run on the same disk: \
         the same entries inserted into one redb table, key to the same \
         record bytes, one transaction per batch of the same sizes. Between \
         them, for comparison only, `RedbStore::commit` alone on the same \
         batches: the store's share of the node's time. Each figure is the \
         fastest of {} rounds in new files. Target: at least 40% \
         of the bare rate.\n",
        r.merge.as_ref().map_or(1, |m| m.rounds)
    );
    match &r.merge {
        Some(mg) => {
            let _ = writeln!(
                s,
                "| | entries | batches | seconds | entries/s |\n|---|---:|---:|---:|---:|"
            );
            let _ = writeln!(
                s,
                "| node merging pushes | {} | {} | {:.2} | {} |",
                int(mg.entries),
                mg.batches,
                mg.node_seconds,
                int(mg.node_rate.round() as u64)
            );
            let _ = writeln!(
                s,
                "| the store alone: `RedbStore::commit` of the same batches (for comparison) | {} | {} | {:.2} | {} |",
                int(mg.entries),
                mg.batches,
                mg.store_seconds,
                int(mg.store_rate.round() as u64)
            );
            let _ = writeln!(
                s,
                "| bare redb inserts, one table | {} | {} | {:.2} | {} |",
                int(mg.entries),
                mg.batches,
                mg.bare_seconds,
                int(mg.bare_rate.round() as u64)
            );
            let _ = writeln!(
                s,
                "\nNode rate / bare rate: **{}**, target ≥ {:.0}%: {}.",
                pct(mg.ratio),
                merge::TARGET_RATIO * 100.0,
                verdict(mg.meets_target)
            );
            let _ = writeln!(
                s,
                "\nClosing the store after its commits took {:.2} s more: it folds \
                 into `by_origin` and `hashed` what the last commits left in the \
                 change list, work a node does before it next reads those indexes \
                 or when it stops. It is in neither rate.",
                mg.close_seconds
            );
        }
        None => {
            let _ = writeln!(s, "{}", error(r, "merge"));
        }
    }
    let _ = writeln!(s);

    // ----- 6. memory
    let _ = writeln!(s, "## 6. Memory\n");
    let _ = writeln!(
        s,
        "Peak resident memory (`VmHWM` in `/proc/PID/status`) of the two node \
         processes of the join with the default peer_timeout, read just \
         before they stop: the holder opened \
         a store of {keys} keys (rebuilding its digest from every entry) and \
         served the join; the new node received them all. Target: at most \
         150 MB (10^6 bytes).\n"
    );
    match &r.memory {
        Some(mem) => {
            let _ = writeln!(
                s,
                "| node | keys | peak RSS | target |\n|---|---:|---:|---|"
            );
            for (who, b) in [
                ("holder", mem.holder_peak_bytes),
                ("new node", mem.joiner_peak_bytes),
            ] {
                let _ = writeln!(
                    s,
                    "| {who} | {} | {:.0} MB | {} |",
                    int(mem.keys),
                    b as f64 / 1e6,
                    verdict(b <= mem.target_bytes)
                );
            }
        }
        None => {
            let _ = writeln!(s, "{}", error(r, "join"));
        }
    }
    let _ = writeln!(s);

    // ----- 7. latency
    let _ = writeln!(s, "## 7. Write-visibility latency (eager relay)\n");
    let _ = writeln!(
        s,
        "{} `ringsync node` processes on 127.0.0.1, {} ms cycles, peer_timeout \
         {} ms, no secret. A write is \
         a PUT at one node (writers 7 positions apart); its latency runs from \
         sending the PUT until every node serves the key: each other node has \
         a watcher waiting there for each key in turn (`GET ?wait=` on one \
         kept-alive connection), and the last of them to be answered ends it \
         (polling 31 nodes from outside took about 24 ms a round). With relay on under a ring \
         schedule, writes go one at a time, each once every watcher waits at its node \
         (`ringsync_waiting_reads`), so that their requests are not made while the write \
         travels; otherwise one every 250 ms. \
         Percentiles are nearest-rank over the writes measured, so below 100 \
         writes p99 is the largest. Bytes per write are the payload all \
         nodes sent during the writes (without HTTP heads), less what the same \
         cluster sent per second while idle. Entries per write: N-1 means each node got it once. \
         The watchers' answers share the 2 processors with the nodes.\n",
        r.scale.latency_nodes,
        latency::INTERVAL_MS,
        latency::PEER_TIMEOUT_MS
    );
    match &r.latency {
        Some(rows) if !rows.is_empty() => {
            let _ = writeln!(
                s,
                "| schedule | relay | writes | p50 | p99 | max | p50 in cycles | payload bytes / write | entries / write |\n|---|---|---:|---:|---:|---:|---:|---:|---:|"
            );
            for x in rows {
                let _ = writeln!(
                    s,
                    "| {} | {} | {}{} | {:.0} ms | {:.0} ms | {:.0} ms | {:.2} | {} | {:.1} |",
                    x.schedule,
                    if x.relay { "on" } else { "off" },
                    x.writes,
                    unfinished(x.unfinished),
                    x.p50_ms,
                    x.p99_ms,
                    x.max_ms,
                    x.p50_ms / x.interval_ms as f64,
                    int(x.bytes_per_write.round() as u64),
                    x.entries_per_write
                );
            }
            let _ = writeln!(
                s,
                "\nUnder random, relay sends a client write to 3 random peers at \
                 once; push-pull cycles do the rest."
            );
        }
        _ => {
            let _ = writeln!(s, "{}", error(r, "latency"));
        }
    }
    if r.latency.as_ref().is_some_and(|v| !v.is_empty())
        && r.errors.keys().any(|k| k.starts_with("latency"))
    {
        let _ = writeln!(s, "\n{}", error(r, "latency"));
    }
    writes::section(&mut s, r);
    staleness::section(&mut s, r);
    s
}

#[cfg(test)]
mod tests;
