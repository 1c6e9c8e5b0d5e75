//! The report's section on client writes and kept-alive requests.

use std::fmt::Write as _;

use super::error;
use super::format::pct;
use crate::bench::{put, Results};

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
        let md = markdown(&r);
        assert!(
            md.contains(
                "| PUT rate, 64 keep-alive clients | ≥ 30% of a plain tide server | 50% | met |"
            ),
            "{md}"
        );
        assert!(md.contains("| kept-alive `GET /livez`, p50 | ≤ 1 ms | 2.00 ms | **missed** |"));
        assert!(md.contains("| 500 | 1000 | 50% | 100.00 ms | 2.000 ms | 3.000 ms |"));
    }
}
