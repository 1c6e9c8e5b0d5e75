//! `ringsync status --cluster`: a node's `GET /v1/cluster` (every ring
//! member as that node sees it) as a table in the terminal.

use std::time::Duration;

use crate::http::client::call;
use crate::service::cluster::{ClusterView, NodeView};

/// The node answers within its peer timeout, plus a local round trip.
const TIMEOUT: Duration = Duration::from_secs(30);

/// Prints the cluster as `node` sees it: a table, or its JSON.
pub fn status(node: &str, json: bool) -> Result<(), String> {
    let (code, body) = call("GET", node, "/v1/cluster", None, TIMEOUT)?;
    if code != 200 {
        return Err(format!(
            "{node}/v1/cluster answered HTTP {code}: {}",
            String::from_utf8_lossy(&body).trim_end()
        ));
    }
    let view: ClusterView = serde_json::from_slice(&body)
        .map_err(|e| format!("{node}/v1/cluster answered what is not a cluster view: {e}"))?;
    if json {
        let text = serde_json::to_string_pretty(&view).map_err(|e| e.to_string())?;
        println!("{text}");
    } else {
        print!("{}", table(&view));
    }
    Ok(())
}

const HEAD: [&str; 13] = [
    "NODE", "POS", "STATE", "MODE", "CYCLE", "AGE", "KEYS", "TOMBS", "ROOT", "RELAYQ", "SKEW",
    "PUSHES", "EPOCH",
];

fn opt<T: ToString>(v: &Option<T>) -> String {
    v.as_ref().map(T::to_string).unwrap_or_else(|| "-".into())
}

fn row(v: &NodeView) -> [String; 13] {
    let root = match &v.digest_root {
        Some(r) if v.root_agrees => r.clone(),
        Some(r) => format!("{r} (differs)"),
        None => "-".into(),
    };
    let pushes = match (&v.pushes, &v.pushes_to) {
        (_, Some(to)) => format!("-> {to}"),
        (Some(p), None) => p.clone(),
        (None, None) => "-".into(),
    };
    [
        v.id.clone(),
        v.position.to_string(),
        v.state.clone(),
        opt(&v.mode),
        opt(&v.cycle),
        v.cycle_age_ms.map_or("-".into(), |a| format!("{a}ms")),
        opt(&v.keys),
        opt(&v.tombstones),
        root,
        opt(&v.relay_queue),
        v.clock_skew_ms.map_or("-".into(), |s| format!("{s:+}ms")),
        pushes,
        v.epoch.as_ref().map_or("-".into(), |e| e.to_string()),
    ]
}

/// The view as text: a line of facts, a table, then why each node that
/// is not plainly in the ring is as it is, and the last sync.
pub fn table(view: &ClusterView) -> String {
    let n = view.nodes.len();
    let mut out = format!(
        "cluster {} seen from {} ({} ms old): {} of {n} reachable, {}\n",
        view.cluster,
        view.node,
        view.age_ms,
        view.reachable,
        if view.roots_agree {
            "their roots agree"
        } else {
            "their roots differ"
        }
    );
    let rows: Vec<[String; 13]> = view.nodes.iter().map(row).collect();
    let mut widths = HEAD.map(str::len);
    for r in &rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: &[String]| {
        let padded: Vec<String> = cells
            .iter()
            .zip(widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        format!("{}\n", padded.join("  ").trim_end())
    };
    out.push_str(&line(&HEAD.map(String::from)));
    for r in &rows {
        out.push_str(&line(r));
    }
    for v in &view.nodes {
        if let Some(e) = &v.error {
            out.push_str(&format!("  {}: not reached: {e}\n", v.id));
        }
        if !v.held_by.is_empty() {
            out.push_str(&format!(
                "  {}: held {} by {}\n",
                v.id,
                v.state,
                v.held_by.join(", ")
            ));
        }
        if let (Some("fallback"), Some(why)) = (v.mode.as_deref(), &v.mode_reason) {
            out.push_str(&format!("  {}: in fallback: {why}\n", v.id));
        }
    }
    let worst = view
        .nodes
        .iter()
        .filter_map(|v| v.staleness_ms.map(|s| (s, v.id.as_str())))
        .max();
    if let Some((ms, id)) = worst {
        out.push_str(&format!(
            "worst staleness: {ms} ms (at {id}: the oldest entry it holds that a peer lacks)\n"
        ));
    }
    match &view.last_sync {
        None => out.push_str("no sync run from this node since it started\n"),
        Some(r) => out.push_str(&format!(
            "last sync {} ({}): {} hops, {} entries, converged: {}\n",
            r.id, r.state, r.hops, r.entries, r.converged
        )),
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::Schedule;
    use crate::service::cluster::{judge, MemberStatus, Probe, Ring};

    #[test]
    fn the_table_has_a_row_per_node_and_says_why_one_is_missing() {
        let members: Vec<(String, String)> = ["a", "b"]
            .iter()
            .map(|id| (id.to_string(), format!("{id}:1")))
            .collect();
        let ring = Ring {
            members: &members,
            schedule: Schedule::Successor,
            interval_ms: 1000,
        };
        let a = MemberStatus {
            id: "a".into(),
            mode: "ring".into(),
            digest_root: "00ff".into(),
            ..MemberStatus::default()
        };
        let probes = vec![
            Probe {
                pos: 0,
                result: Ok(a),
                sent_ms: 5,
                received_ms: 5,
            },
            Probe {
                pos: 1,
                result: Err("refused".into()),
                sent_ms: 5,
                received_ms: 6,
            },
        ];
        let view = ClusterView {
            node: "a".into(),
            cluster: "t".into(),
            schedule: "successor".into(),
            interval_ms: 1000,
            taken_ms: 5,
            took_ms: 1,
            age_ms: 2,
            reachable: 1,
            roots_agree: true,
            nodes: judge(ring, probes),
            last_sync: None,
            sync_from_browser: true,
        };
        let text = table(&view);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[1].starts_with("NODE  POS  STATE"), "{text}");
        assert!(lines[2].starts_with("a     0    ring"), "{text}");
        assert!(lines[2].contains("-> b"), "{text}");
        assert!(lines[3].starts_with("b     1    unreachable"), "{text}");
        assert!(text.contains("b: not reached: refused"), "{text}");
    }
}
