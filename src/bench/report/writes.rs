//! The report's section on client writes and kept-alive requests.

use std::fmt::Write as _;

use super::error;
use super::format::{pct, verdict};
use crate::bench::{latency, put, Results};

/// The targets table's rows for write visibility with eager relay
/// (issue 15: at 32 nodes, p50 ≤ 10 ms doubling, ≤ 40 ms successor).
pub(super) fn visibility_targets(s: &mut String, r: &Results) {
    for row in r.latency.iter().flatten().filter(|l| l.relay) {
        let target = match row.schedule.as_str() {
            "doubling" => latency::TARGET_DOUBLING_MS,
            "successor" => latency::TARGET_SUCCESSOR_MS,
            _ => continue,
        };
        let verdict = if row.nodes != latency::TARGET_NODES {
            "not the target's size"
        } else {
            verdict(row.p50_ms <= target)
        };
        let _ = writeln!(
            s,
            "| write visible at all {} nodes, eager relay, {}, p50 | ≤ {target} ms at {} nodes | {:.1} ms | {verdict} |",
            row.nodes,
            row.schedule,
            latency::TARGET_NODES,
            row.p50_ms
        );
    }
}

/// Section 8: client writes and kept-alive requests.
pub(super) fn section(s: &mut String, r: &Results) {
    let _ = writeln!(s, "\n## 8. Client writes and kept-alive requests\n");
    let _ = writeln!(
        s,
        "{} clients, each on its own kept-alive connection, PUT {}-byte values \
         one after another for {} s at node 0 of a two-node ring (each answered \
         once durable; concurrent writes share a commit), and for as long at a \
         plain tide server that answers the same PUTs without storing them; \
         then one connection sends `GET /livez` {} times in a row.\n",
        put::CLIENTS,
        put::VALUE_BYTES,
        r.scale.put_seconds,
        r.livez.as_ref().map_or(0, |l| l.requests)
    );
    match (&r.put, &r.livez) {
        (Some(p), Some(l)) => {
            let _ = writeln!(
                s,
                "| PUT/s at the node | PUT/s plain | ratio | PUT p50 | `/livez` p50 | `/livez` p99 |\n|---|---|---|---|---|---|"
            );
            let _ = writeln!(
                s,
                "| {:.0} | {:.0} | {} | {:.2} ms | {:.3} ms | {:.3} ms |",
                p.rate,
                p.baseline_rate,
                pct(p.ratio),
                p.p50_ms,
                l.p50_ms,
                l.p99_ms
            );
        }
        _ => {
            let _ = writeln!(s, "{}", error(r, "put"));
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::bench::put::{Livez, Put};
    use crate::bench::report::markdown;
    use crate::bench::{machine, Results, Scale};

    #[test]
    fn the_put_figures_are_in_the_targets_and_their_section() {
        let mut r = Results::empty(machine::describe(), Scale::new(true));
        let md = markdown(&r);
        assert!(md.contains("## 8. Client writes"));
        assert!(md.contains("not measured in this run."));
        r.put = Some(Put {
            clients: 64,
            seconds: 1.0,
            rate: 500.0,
            baseline_rate: 1000.0,
            ratio: 0.5,
            p50_ms: 100.0,
            meets_target: true,
        });
        r.livez = Some(Livez {
            requests: 200,
            p50_ms: 2.0,
            p99_ms: 3.0,
            meets_target: false,
        });
        let row = |schedule: &str, p50_ms: f64| crate::bench::latency::Latency {
            schedule: schedule.into(),
            relay: true,
            nodes: 32,
            interval_ms: 500,
            writes: 100,
            unfinished: 0,
            p50_ms,
            p99_ms: p50_ms,
            max_ms: p50_ms,
            bytes_per_write: 0.0,
            entries_per_write: 31.0,
            idle_bytes_per_s: 0.0,
        };
        r.latency = Some(vec![row("successor", 31.0), row("doubling", 28.25)]);
        let md = markdown(&r);
        assert!(md.contains("| write visible at all 32 nodes, eager relay, successor, p50 | ≤ 40 ms at 32 nodes | 31.0 ms | met |"), "{md}");
        assert!(md.contains("| write visible at all 32 nodes, eager relay, doubling, p50 | ≤ 10 ms at 32 nodes | 28.2 ms | **missed** |"), "{md}");
        assert!(
            md.contains(
                "| PUT rate, 64 keep-alive clients | ≥ 30% of a plain tide server | 50.0% | met |"
            ),
            "{md}"
        );
        assert!(md.contains("| kept-alive `GET /livez`, p50 | ≤ 1 ms | 2.00 ms | **missed** |"));
        assert!(md.contains("| 500 | 1000 | 50% | 100.00 ms | 2.000 ms | 3.000 ms |"));
    }
}
