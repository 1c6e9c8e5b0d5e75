//! A node that starts pulls what it missed at once, not at its first
//! cycle boundary: with cycles an hour long, none of which runs during the
//! test, a key written while it was down is on it within seconds of its
//! start.

mod common;

use std::time::Duration;

use common::{quiet_interval, wait_until, Cluster};
use ringsync::core::Schedule;

#[test]
fn a_restarted_node_catches_up_at_once_not_at_its_next_cycle() {
    let mut c = Cluster::start(2, Schedule::Successor, &quiet_interval(), "");
    c.kill(1);
    c.put(0, "missed", "while n1 was down");
    c.restart(1);
    // Before, the pull waited for the first cycle boundary, an hour away.
    wait_until(
        Duration::from_secs(10),
        "n1 to hold the key written while it was down",
        || c.get(1, "missed").is_some(),
    );
    assert_eq!(c.get(1, "missed").as_deref(), Some("while n1 was down"));
}
