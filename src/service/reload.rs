//! SIGHUP: re-read the topology file and apply what can change in place.
//!
//! The ring (ids, addresses, order) changes by rolling reload: the new file
//! raises the epoch by one, each node puts the new ring in force when it
//! reloads, and nodes one epoch apart keep exchanging meanwhile (DESIGN
//! §14). The cluster name never changes. Settings the protocol core was
//! opened with (interval, schedule, limits, the failure threshold) need a
//! restart of this node; what the shell alone uses is applied.

use std::time::Duration;

use crate::topology::diff::{fmt_d, Diff};
use crate::topology::Topology;

/// The settings a reload may change while the node runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// How long to wait for a peer's reply.
    pub peer_timeout: Duration,
}

impl Settings {
    /// The reloadable settings of a topology.
    pub fn of(t: &Topology) -> Settings {
        Settings {
            peer_timeout: t.cluster.peer_timeout,
        }
    }
}

/// A new ring to put in force.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RingChange {
    /// The topology in force after it: the new ring and epoch, with the
    /// cluster settings this process runs with.
    pub topology: Topology,
    /// This node's position in the new ring.
    pub me: u32,
    /// What changed, in one line: "epoch 1 -> 2: added d, moved a".
    pub summary: String,
}

/// What to do with a re-read topology.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// Keep everything as it is, for this reason.
    Refuse(String),
    /// Put `settings` (and `ring`, if any) in force. `changed` says what
    /// that changes (maybe nothing); `need_restart` names changes that were
    /// read but cannot take effect until this node restarts.
    Apply {
        /// The settings to put in force.
        settings: Settings,
        /// "peer_timeout 500ms -> 300ms", one per changed setting.
        changed: Vec<String>,
        /// Changed settings left as they were, one per setting.
        need_restart: Vec<String>,
        /// The new ring, when the file changed it.
        ring: Option<Box<RingChange>>,
    },
}

/// Decides what a reload does. `in_force` is the topology this node runs
/// (its ring and epoch, and the settings it started with), `current` the
/// settings in force, `new` the file as read now, and `id` this node's id.
pub fn plan(in_force: &Topology, current: &Settings, new: &Topology, id: &str) -> Plan {
    let diff = Diff::of(in_force, new);
    if let Err(why) = diff.rolling() {
        return Plan::Refuse(format!(
            "{why}; keeping epoch {} in force",
            in_force.cluster.epoch
        ));
    }
    let ring = if diff.ring_changed() {
        let Some(me) = new.position(id) else {
            return Plan::Refuse(format!(
                "this node ({id}) is not in the new ring of epoch {}: a node being removed is stopped, not reloaded; keeping epoch {} in force",
                new.cluster.epoch, in_force.cluster.epoch
            ));
        };
        let mut topology = new.clone();
        topology.cluster = in_force.cluster.clone();
        topology.cluster.epoch = new.cluster.epoch;
        Some(Box::new(RingChange {
            topology,
            me,
            summary: summary(&diff),
        }))
    } else {
        None
    };

    let mut need_restart = diff.need_restart();
    let path = |p: Option<&std::path::Path>| p.map_or("(none)".into(), |p| p.display().to_string());
    let data_dir = |t: &Topology| path(t.node(id).ok().and_then(|(_, n)| n.data_dir.as_deref()));
    let (was, now) = (data_dir(in_force), data_dir(new));
    if was != now {
        need_restart.push(format!("data_dir {was} -> {now}"));
    }
    let settings = Settings::of(new);
    let mut changed = Vec::new();
    if settings.peer_timeout != current.peer_timeout {
        changed.push(format!(
            "peer_timeout {} -> {}",
            fmt_d(current.peer_timeout),
            fmt_d(settings.peer_timeout)
        ));
    }
    Plan::Apply {
        settings,
        changed,
        need_restart,
        ring,
    }
}

/// "epoch 1 -> 2: added d, removed b, moved a, readdressed c".
fn summary(d: &Diff) -> String {
    let mut parts = Vec::new();
    let ids = |what: &str, ids: Vec<&String>| {
        (!ids.is_empty()).then(|| {
            format!(
                "{what} {}",
                ids.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(" ")
            )
        })
    };
    parts.extend(ids("added", d.added.iter().map(|(i, _)| i).collect()));
    parts.extend(ids("removed", d.removed.iter().map(|(i, _)| i).collect()));
    parts.extend(ids("moved", d.moved.iter().map(|(i, _, _)| i).collect()));
    parts.extend(ids(
        "readdressed",
        d.readdressed.iter().map(|(i, _, _)| i).collect(),
    ));
    format!("epoch {} -> {}: {}", d.epoch.0, d.epoch.1, parts.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = r#"
[cluster]
name = "demo"
interval = "1s"
peer_timeout = "500ms"

[[node]]
id = "a"
addr = "127.0.0.1:7101"

[[node]]
id = "b"
addr = "127.0.0.1:7102"
"#;

    fn topo(text: &str) -> Topology {
        Topology::parse(text, "t.toml", None).unwrap()
    }

    #[test]
    fn the_same_file_changes_nothing() {
        let t = topo(BASE);
        let plan = plan(&t, &Settings::of(&t), &t, "a");
        assert_eq!(
            plan,
            Plan::Apply {
                settings: Settings::of(&t),
                changed: vec![],
                need_restart: vec![],
                ring: None,
            }
        );
    }

    #[test]
    fn peer_timeout_is_applied_and_core_settings_wait_for_a_restart() {
        let t = topo(BASE);
        let new = topo(
            &BASE
                .replace("\"500ms\"", "\"300ms\"")
                .replace("interval = \"1s\"", "interval = \"2s\""),
        );
        match plan(&t, &Settings::of(&t), &new, "a") {
            Plan::Apply {
                settings,
                changed,
                need_restart,
                ring: None,
            } => {
                assert_eq!(settings.peer_timeout, Duration::from_millis(300));
                assert_eq!(changed, ["peer_timeout 500ms -> 300ms"]);
                assert_eq!(need_restart, ["interval 1s -> 2s"]);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_changed_ring_needs_the_next_epoch_and_keeps_the_name() {
        let t = topo(BASE);
        for changed in [
            BASE.replace("demo", "demo2"),
            BASE.replace("7102", "7103"),
            BASE.replace("id = \"b\"", "id = \"c\""),
            format!("{BASE}\n[[node]]\nid = \"c\"\naddr = \"127.0.0.1:7103\"\n"),
        ] {
            match plan(&t, &Settings::of(&t), &topo(&changed), "a") {
                Plan::Refuse(why) => {
                    assert!(why.contains("epoch") || why.contains("name"), "{why}")
                }
                other => panic!("{changed}: {other:?}"),
            }
        }
    }

    #[test]
    fn the_next_epoch_puts_the_new_ring_in_force_with_the_settings_running() {
        let t = topo(BASE);
        let next = format!(
            "{}\n[[node]]\nid = \"c\"\naddr = \"127.0.0.1:7103\"\n",
            BASE.replace("name = \"demo\"", "name = \"demo\"\nepoch = 1")
                .replace("interval = \"1s\"", "interval = \"2s\"")
        );
        match plan(&t, &Settings::of(&t), &topo(&next), "b") {
            Plan::Apply {
                need_restart,
                ring: Some(r),
                ..
            } => {
                assert_eq!(need_restart, ["interval 1s -> 2s"]);
                assert_eq!((r.me, r.topology.cluster.epoch), (1, 1));
                assert_eq!(r.topology.nodes.len(), 3);
                assert_eq!(r.topology.cluster.interval, Duration::from_secs(1));
                assert_eq!(r.summary, "epoch 0 -> 1: added c");
            }
            other => panic!("{other:?}"),
        }
        // A node the new ring leaves out is stopped, not reloaded.
        let without_a = BASE
            .replace("name = \"demo\"", "name = \"demo\"\nepoch = 1")
            .replace("id = \"a\"", "id = \"z\"");
        match plan(&t, &Settings::of(&t), &topo(&without_a), "a") {
            Plan::Refuse(why) => assert!(why.contains("not in the new ring"), "{why}"),
            other => panic!("{other:?}"),
        }
    }
}
