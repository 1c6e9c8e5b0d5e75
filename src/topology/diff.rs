//! What a change of topology file does: nodes added, removed, moved and
//! readdressed, settings changed, and whether running nodes can take it by
//! rolling reload (`ringsync topology diff OLD NEW`, and SIGHUP).

use std::fmt;
use std::time::Duration;

use super::{Cluster, Topology};

/// The difference between two topologies.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Diff {
    /// The cluster names, when they differ.
    pub renamed: Option<(String, String)>,
    /// The epochs, old and new.
    pub epoch: (u64, u64),
    /// Ids in the new ring only, with their position there.
    pub added: Vec<(String, u32)>,
    /// Ids in the old ring only, with their position there.
    pub removed: Vec<(String, u32)>,
    /// Ids in both whose position changed: (id, old, new).
    pub moved: Vec<(String, u32, u32)>,
    /// Ids in both whose address changed: (id, old, new).
    pub readdressed: Vec<(String, String, String)>,
    /// Cluster settings changed: (key, old, new), as the file writes them.
    pub settings: Vec<(&'static str, String, String)>,
}

impl Diff {
    /// Compares `old` with `new`.
    pub fn of(old: &Topology, new: &Topology) -> Diff {
        let mut d = Diff {
            epoch: (old.cluster.epoch, new.cluster.epoch),
            settings: settings_changed(&old.cluster, &new.cluster),
            ..Diff::default()
        };
        if old.cluster.name != new.cluster.name {
            d.renamed = Some((old.cluster.name.clone(), new.cluster.name.clone()));
        }
        for (i, n) in new.nodes.iter().enumerate() {
            match old.position(&n.id) {
                None => d.added.push((n.id.clone(), i as u32)),
                Some(p) => {
                    if p != i as u32 {
                        d.moved.push((n.id.clone(), p, i as u32));
                    }
                    let was = &old.nodes[p as usize].addr;
                    if *was != n.addr {
                        d.readdressed
                            .push((n.id.clone(), was.clone(), n.addr.clone()));
                    }
                }
            }
        }
        for (i, n) in old.nodes.iter().enumerate() {
            if new.position(&n.id).is_none() {
                d.removed.push((n.id.clone(), i as u32));
            }
        }
        d
    }

    /// True when the ring itself differs: members, order or addresses.
    pub fn ring_changed(&self) -> bool {
        !(self.added.is_empty()
            && self.removed.is_empty()
            && self.moved.is_empty()
            && self.readdressed.is_empty())
    }

    /// Whether running nodes can go from the old file to the new one by
    /// reloading them one at a time; if not, why, and what to change.
    pub fn rolling(&self) -> Result<(), String> {
        let (old, new) = self.epoch;
        if let Some((a, b)) = &self.renamed {
            return Err(format!(
                "the cluster name changed ({a:?} -> {b:?}): that makes another cluster, whose nodes refuse this one's; keep the name"
            ));
        }
        if self.ring_changed() && new != old + 1 {
            return Err(if new <= old {
                format!(
                    "the ring changed but the epoch did not rise (still {old} -> {new}); set epoch = {} in every node's copy",
                    old + 1
                )
            } else {
                format!(
                    "the epoch jumps from {old} to {new}: nodes more than one epoch apart do not exchange, so a rolling reload would split the cluster; set epoch = {}",
                    old + 1
                )
            });
        }
        if !self.ring_changed() && new != old {
            return Err(format!(
                "the epoch changed ({old} -> {new}) but the ring did not; leave the epoch at {old}, or change the ring"
            ));
        }
        Ok(())
    }

    /// Settings that a reload reads but that wait for a restart of the node.
    pub fn need_restart(&self) -> Vec<String> {
        self.settings
            .iter()
            .filter(|(k, _, _)| !RELOADABLE.contains(k))
            .map(|(k, a, b)| format!("{k} {a} -> {b}"))
            .collect()
    }
}

/// Cluster settings a reload puts in force at once.
pub const RELOADABLE: [&str; 1] = ["peer_timeout"];

impl fmt::Display for Diff {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (old, new) = self.epoch;
        writeln!(f, "epoch        {old} -> {new}")?;
        if let Some((a, b)) = &self.renamed {
            writeln!(f, "renamed      {a:?} -> {b:?}")?;
        }
        for (id, p) in &self.added {
            writeln!(f, "added        {id} at position {p}")?;
        }
        for (id, p) in &self.removed {
            writeln!(f, "removed      {id} (was at position {p})")?;
        }
        for (id, a, b) in &self.moved {
            writeln!(f, "moved        {id} from position {a} to {b}")?;
        }
        for (id, a, b) in &self.readdressed {
            writeln!(f, "readdressed  {id} from {a} to {b}")?;
        }
        for (k, a, b) in &self.settings {
            let when = if RELOADABLE.contains(k) {
                "on reload"
            } else {
                "on restart"
            };
            writeln!(f, "setting      {k} {a} -> {b} (takes effect {when})")?;
        }
        if !self.ring_changed() && self.settings.is_empty() && self.renamed.is_none() {
            writeln!(f, "no change")?;
        }
        match self.rolling() {
            Ok(()) => write!(f, "rolling reload: yes"),
            Err(why) => write!(f, "rolling reload: no: {why}"),
        }
    }
}

/// A duration as the topology file writes it ("500ms", "1m 30s").
pub fn fmt_d(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}

/// Every `[cluster]` setting but the name and the epoch that differs.
fn settings_changed(a: &Cluster, b: &Cluster) -> Vec<(&'static str, String, String)> {
    let path = |p: &Option<std::path::PathBuf>| {
        p.as_ref()
            .map_or("(none)".into(), |p| p.display().to_string())
    };
    let all = [
        ("interval", fmt_d(a.interval), fmt_d(b.interval)),
        ("schedule", a.schedule.to_string(), b.schedule.to_string()),
        ("peer_timeout", fmt_d(a.peer_timeout), fmt_d(b.peer_timeout)),
        (
            "tombstone_lifetime",
            fmt_d(a.tombstone_lifetime),
            fmt_d(b.tombstone_lifetime),
        ),
        (
            "max_value_size",
            a.max_value_size.to_string(),
            b.max_value_size.to_string(),
        ),
        (
            "cache_size",
            a.cache_size.to_string(),
            b.cache_size.to_string(),
        ),
        (
            "max_clock_drift",
            fmt_d(a.max_clock_drift),
            fmt_d(b.max_clock_drift),
        ),
        (
            "failure_threshold",
            a.failure_threshold.to_string(),
            b.failure_threshold.to_string(),
        ),
        ("relay", a.relay.to_string(), b.relay.to_string()),
        (
            "sync_max_rounds",
            a.sync_max_rounds.to_string(),
            b.sync_max_rounds.to_string(),
        ),
        ("secret_file", path(&a.secret_file), path(&b.secret_file)),
        ("tokens_file", path(&a.tokens_file), path(&b.tokens_file)),
        (
            "request_timeout",
            fmt_d(a.request_timeout),
            fmt_d(b.request_timeout),
        ),
    ];
    all.into_iter().filter(|(_, x, y)| x != y).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring(epoch: u64, nodes: &[(&str, u16)]) -> Topology {
        let mut text = format!("[cluster]\nname = \"d\"\nepoch = {epoch}\n");
        for (id, port) in nodes {
            text.push_str(&format!("[[node]]\nid = \"{id}\"\naddr = \"h:{port}\"\n"));
        }
        match Topology::parse(&text, "<text>", None) {
            Ok(t) => t,
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn each_kind_of_change_is_named_and_judged() {
        let old = ring(4, &[("a", 1), ("b", 2), ("c", 3)]);
        let new = ring(5, &[("c", 3), ("a", 1), ("d", 4), ("b", 9)]);
        let d = Diff::of(&old, &new);
        assert_eq!(d.added, [("d".to_string(), 2)]);
        assert!(d.removed.is_empty());
        assert_eq!(
            d.moved,
            [
                ("c".to_string(), 2, 0),
                ("a".to_string(), 0, 1),
                ("b".to_string(), 1, 3)
            ]
        );
        assert_eq!(
            d.readdressed,
            [("b".to_string(), "h:2".to_string(), "h:9".to_string())]
        );
        assert_eq!(d.rolling(), Ok(()));
        let text = d.to_string();
        assert!(text.contains("added        d at position 2"), "{text}");
        assert!(text.ends_with("rolling reload: yes"), "{text}");

        let removed = Diff::of(&old, &ring(5, &[("a", 1), ("c", 3)]));
        assert_eq!(removed.removed, [("b".to_string(), 1)]);

        // The epoch must rise by one with a ring change, and only with one.
        for bad in [
            ring(4, &[("a", 1), ("b", 2)]),
            ring(6, &[("a", 1), ("b", 2)]),
            ring(5, &[("a", 1), ("b", 2), ("c", 3)]),
        ] {
            let d = Diff::of(&old, &bad);
            let why = d.rolling().expect_err("not rolling");
            assert!(why.contains("epoch"), "{why}");
            assert!(d.to_string().contains("rolling reload: no"));
        }
        assert_eq!(
            Diff::of(&old, &old).to_string().lines().nth(1),
            Some("no change")
        );
    }
}
