//! SIGHUP: re-read the topology file and apply what can change in place.
//!
//! The ring (cluster name, ids, addresses, order) is fixed for the life of a
//! process: every node must agree on it, peers check it through the
//! fingerprint, and positions are baked into stored versions. A changed ring
//! is refused here and needs a restart of every node. Settings the protocol
//! core was opened with (interval, schedule, limits, the failure threshold)
//! also need a restart of this node. What the shell alone uses is applied.

use std::time::Duration;

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

/// What to do with a re-read topology.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// Keep everything as it is, for this reason.
    Refuse(String),
    /// Put `settings` in force. `changed` says what that changes (maybe
    /// nothing); `need_restart` names changes that were read but cannot
    /// take effect until this node restarts.
    Apply {
        /// The settings to put in force.
        settings: Settings,
        /// "peer_timeout 500ms -> 300ms", one per changed setting.
        changed: Vec<String>,
        /// Changed settings left as they were, one per setting.
        need_restart: Vec<String>,
    },
}

fn fmt_d(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}

/// Decides what a reload does. `started` is the topology this process
/// opened with, `current` the settings in force, `new` the file as read
/// now, and `id` this node's id.
pub fn plan(started: &Topology, current: &Settings, new: &Topology, id: &str) -> Plan {
    let ring = |t: &Topology| -> Vec<(String, String)> {
        t.nodes
            .iter()
            .map(|n| (n.id.clone(), n.addr.clone()))
            .collect()
    };
    if started.cluster.name != new.cluster.name || ring(started) != ring(new) {
        return Plan::Refuse(format!(
            "the ring changed (cluster name, node ids, addresses or their order): \
             that needs a restart of every node with the same new file; \
             keeping the ring in force, fingerprint {:016x} (the file now has {:016x})",
            started.fingerprint(),
            new.fingerprint()
        ));
    }

    let (a, b) = (&started.cluster, &new.cluster);
    let mut need_restart = Vec::new();
    let mut differs = |key: &str, old: String, new: String| {
        if old != new {
            need_restart.push(format!("{key} {old} -> {new}"));
        }
    };
    differs("interval", fmt_d(a.interval), fmt_d(b.interval));
    differs("schedule", a.schedule.to_string(), b.schedule.to_string());
    differs(
        "tombstone_lifetime",
        fmt_d(a.tombstone_lifetime),
        fmt_d(b.tombstone_lifetime),
    );
    differs(
        "max_value_size",
        a.max_value_size.to_string(),
        b.max_value_size.to_string(),
    );
    differs(
        "max_clock_drift",
        fmt_d(a.max_clock_drift),
        fmt_d(b.max_clock_drift),
    );
    differs(
        "failure_threshold",
        a.failure_threshold.to_string(),
        b.failure_threshold.to_string(),
    );
    differs("relay", a.relay.to_string(), b.relay.to_string());
    differs(
        "sync_max_rounds",
        a.sync_max_rounds.to_string(),
        b.sync_max_rounds.to_string(),
    );
    let path = |p: Option<&std::path::Path>| p.map_or("(none)".into(), |p| p.display().to_string());
    differs(
        "secret_file",
        path(a.secret_file.as_deref()),
        path(b.secret_file.as_deref()),
    );
    differs(
        "tokens_file",
        path(a.tokens_file.as_deref()),
        path(b.tokens_file.as_deref()),
    );
    differs(
        "request_timeout",
        fmt_d(a.request_timeout),
        fmt_d(b.request_timeout),
    );
    let data_dir = |t: &Topology| path(t.node(id).ok().and_then(|(_, n)| n.data_dir.as_deref()));
    differs("data_dir", data_dir(started), data_dir(new));

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
    }
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
                need_restart: vec![]
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
            } => {
                assert_eq!(settings.peer_timeout, Duration::from_millis(300));
                assert_eq!(changed, ["peer_timeout 500ms -> 300ms"]);
                assert_eq!(need_restart, ["interval 1s -> 2s"]);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_changed_ring_is_refused() {
        let t = topo(BASE);
        for changed in [
            BASE.replace("demo", "demo2"),
            BASE.replace("7102", "7103"),
            BASE.replace("id = \"b\"", "id = \"c\""),
            format!("{BASE}\n[[node]]\nid = \"c\"\naddr = \"127.0.0.1:7103\"\n"),
        ] {
            match plan(&t, &Settings::of(&t), &topo(&changed), "a") {
                Plan::Refuse(why) => assert!(why.contains("restart of every node"), "{why}"),
                other => panic!("{changed}: {other:?}"),
            }
        }
    }
}
