//! The report's section on staleness under a steady load.

use std::fmt::Write as _;

use super::error;
use super::format::{unfinished, verdict};
use crate::bench::Results;
use crate::core::schedule::log2_ceil;

/// The target for one simulated row, as text, and whether it holds.
fn target(schedule: &str, n: u32, loss: f64, p99: u64, max: u64) -> (String, bool) {
    let l = u64::from(log2_ceil(n));
    let lossy = loss > 0.0;
    match schedule {
        "successor" => {
            let b = if lossy { u64::from(n - 1) + 3 } else { 3 };
            (format!("max <= {b}"), max <= b)
        }
        "doubling" => {
            let b = if lossy { l + 3 } else { 3 };
            (format!("max <= {b}"), max <= b)
        }
        _ => {
            let b = if lossy { 2 * l } else { l + 3 };
            (format!("p99 <= {b}"), p99 <= b)
        }
    }
}

/// Section 9: staleness under load.
pub(super) fn section(s: &mut String, r: &Results) {
    let _ = writeln!(s, "\n## 9. Staleness under a steady load\n");
    let (n, load, cycles) = r.scale.staleness_sim;
    let _ = writeln!(
        s,
        "Simulator (`ringsync sim --nodes {n} --load {load} --cycles {cycles} --runs 1 \
         [--loss 0.1]`, relay on, seed 1): {load} writes per cycle spread over every \
         node for {cycles} cycles. A write's time runs from its acknowledgement to \
         the end of the cycle in which every live node holds it or a newer version \
         (0: within its own cycle), in cycles.\n"
    );
    match &r.staleness_sim {
        Some(rows) if !rows.is_empty() => {
            let _ = writeln!(
                s,
                "| schedule | loss | p50 | p99 | max | target | lost | resurrected |\n|---|---:|---:|---:|---:|---|---:|---:|"
            );
            for x in rows {
                let (t, ok) = target(&x.schedule, x.nodes, x.loss, x.p99, x.max);
                let _ = writeln!(
                    s,
                    "| {} | {:.0} % | {} | {} | {}{} | {t}: {} | {} | {} |",
                    x.schedule,
                    x.loss * 100.0,
                    x.p50,
                    x.p99,
                    x.max,
                    unfinished(x.unfinished),
                    verdict(ok),
                    x.lost_writes,
                    x.resurrected_deletes
                );
            }
        }
        _ => {
            let _ = writeln!(s, "{}", error(r, "staleness-sim"));
        }
    }
    let (n, rate, seconds, stop) = r.scale.staleness_real;
    let _ = writeln!(
        s,
        "\nReal processes: {n} `ringsync node` processes (doubling, relay on, {} ms \
         cycles) take {rate} writes/s for {seconds} s spread over the nodes, while the \
         middle node is stopped (SIGSTOP) for {stop} s halfway through. The nodes \
         never stopped are listed in turn; a write is everywhere once all of them list \
         it, so the times are rounded up by one polling round. Target: within the \
         doubling bound plus two cycles, and `ringsync_peer_staleness_seconds` back \
         to 0 everywhere within two cycles of the last write.\n",
        crate::bench::staleness::INTERVAL_MS
    );
    match &r.staleness_real {
        Some(x) => {
            let _ = writeln!(
                s,
                "| writes | most behind its paced time | p50 | p99 | max | bound | polling round | staleness 0 after |\n|---:|---:|---:|---:|---:|---:|---:|---:|"
            );
            let _ = writeln!(
                s,
                "| {}{} | {:.0} ms | {:.0} ms | {:.0} ms | {:.0} ms ({}) | {} ms | {:.0} ms | {} |",
                x.writes,
                unfinished(x.unfinished),
                x.behind_ms,
                x.p50_ms,
                x.p99_ms,
                x.max_ms,
                verdict(x.max_ms <= x.bound_ms as f64 && x.unfinished == 0),
                x.bound_ms,
                x.poll_round_ms,
                x.zero_after_ms
                    .map_or("not within 30 s".into(), |z| format!(
                        "{z} ms ({})",
                        verdict(z <= 2 * x.interval_ms)
                    )),
            );
        }
        None => {
            let _ = writeln!(s, "{}", error(r, "staleness-real"));
        }
    }
    let _ = writeln!(
        s,
        "\nA write's time runs from its acknowledgement; the writes go out from {} \
         threads, each paced, and a write late on its paced time (the machine not \
         keeping up) says so in the second column. The staleness figure is what a \
         node knows: the age of the oldest entry a peer's last digest showed it \
         lacking. Under doubling a node hears each of its 2 log2 N partners' digests \
         only every ceil(log2 N) cycles (one request and one reply per cycle), so \
         after the last write the figure can read the last entries in flight for up \
         to that many cycles (its hints count for ceil(log2 N) + 1). Two cycles would need a digest from every partner every other cycle, log2 N \
         / 2 times the idle traffic, against the idle target (issue 15); the gap is \
         left as measured.",
        crate::bench::staleness::WRITERS
    );
}
