//! Tests of the benchmark report's text.

use super::*;
use crate::bench::{machine, merge::Merge, Scale};

fn results() -> Results {
    let mut r = Results::empty(machine::describe(), Scale::new(false));
    r.seconds = 300.0;
    r
}

#[test]
fn a_missed_target_is_said_plainly_and_a_failed_section_says_why() {
    let mut r = results();
    r.merge = Some(Merge {
        entries: 10,
        batches: 1,
        node_seconds: 1.0,
        node_rate: 10.0,
        store_seconds: 0.5,
        store_rate: 20.0,
        close_seconds: 0.2,
        bare_seconds: 0.1,
        bare_rate: 100.0,
        ratio: 0.1,
        meets_target: false,
        rounds: 1,
    });
    r.errors.insert("join".into(), "no processes today".into());
    let md = markdown(&r);
    assert!(md.contains("| merge into redb | ≥ 40% of bare inserts | 10% | **missed** |"));
    assert!(md.contains("not measured: join: no processes today"));
    assert!(md.contains("| processors (`nproc`) |"));
}
