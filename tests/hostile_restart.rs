//! A signed request captured before a node restarts cannot be replayed
//! after it, whether the node stopped cleanly (SIGTERM: its nonce book is
//! saved and read back) or was killed (SIGKILL: every request signed
//! before the new process started is refused).

mod common;

use common::raw::{now_ms, request, send, signed, Answer};
use common::{quiet_interval, wait_for, Cluster, SECRET};
use ringsync::auth::OPERATOR_ID;
use ringsync::core::Schedule;
use std::time::Duration;

const KEY_PATH: &str = "/v1/kv/account";

/// How long a write at n0 may take to reach n1 (eager relay: at once).
const FRESH_DEADLINE: Duration = Duration::from_secs(5);

/// A PUT of `value`, signed as the operator for node n0 now.
fn signed_put(value: &[u8], nonce: u64) -> Vec<u8> {
    let h = signed(
        SECRET,
        OPERATOR_ID,
        "n0",
        "PUT",
        KEY_PATH,
        value,
        now_ms(),
        nonce,
    );
    request("PUT", KEY_PATH, &h, value)
}

fn replayed_after(restart: impl FnOnce(&mut Cluster), refusal: &str) {
    let mut c = Cluster::start(2, Schedule::Successor, &quiet_interval(), "");
    let addr = c.url(0).trim_start_matches("http://").to_string();

    let captured = signed_put(b"old", 1);
    let a = send(&addr, &captured);
    assert!(a.status < 300, "the signed PUT: {a:?}");
    c.put(0, "account", "new");
    wait_for(FRESH_DEADLINE, "n1 holds the newer value", || {
        match c.get(1, "account").as_deref() {
            Some("new") => Ok(()),
            other => Err(format!("n1 holds {other:?}")),
        }
    });
    let root = c.root(0);

    restart(&mut c);
    let a: Answer = send(&addr, &captured);
    assert_eq!(
        (a.status, a.reason()),
        (401, refusal.to_string()),
        "the replay after the restart: {a:?}"
    );
    assert_eq!(c.get(0, "account").as_deref(), Some("new"));
    assert_eq!(c.get(1, "account").as_deref(), Some("new"));
    assert_eq!(c.root(0), root, "n0's digest moved");
    assert_eq!(c.root(1), root, "n1's digest moved");

    // A request signed now is taken at once: an unclean start serves
    // only once its own second is over.
    let a = send(&addr, &signed_put(b"newer", 2));
    assert!(
        a.status < 300,
        "a freshly signed PUT after the restart: {a:?}"
    );
    assert_eq!(c.get(0, "account").as_deref(), Some("newer"));
}

#[test]
fn a_request_captured_before_a_clean_stop_is_refused_after_it() {
    replayed_after(
        |c| {
            assert!(c.stop(0).success(), "SIGTERM stops the node cleanly");
            c.restart(0);
        },
        "replayed_nonce",
    );
}

#[test]
fn a_request_captured_before_a_kill_is_refused_after_it() {
    replayed_after(
        |c| {
            c.kill(0);
            c.restart(0);
        },
        "signed_before_start",
    );
}
