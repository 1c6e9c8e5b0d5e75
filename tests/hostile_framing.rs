//! Request framing an attacker controls: a body in a transfer coding the
//! server does not read is refused with 501 before any of it is read, and
//! the connection is closed, so the body's bytes are never taken for the
//! next request (a request desync). Requests pipelined in one write are
//! all answered, in order.

mod common;

use std::io::Write;
use std::time::Duration;

use common::raw::{connect, read_answer, read_answers, rest_until_close, ANSWER_DEADLINE};
use common::{quiet_interval, Cluster, WRITE_TOKEN};
use ringsync::core::Schedule;

#[test]
fn an_unknown_transfer_coding_gets_501_and_the_connection_closes() {
    let c = Cluster::start(2, Schedule::Successor, &quiet_interval(), "");
    let addr = c.url(0).trim_start_matches("http://").to_string();
    for coding in ["gzip, chunked", "identity", "x", "chunked, gzip"] {
        let key = format!("te-{}", coding.replace([',', ' '], "_"));
        // The "body" is itself a whole request: if the server read the
        // body's bytes as the next request, it would store `smuggled`.
        let smuggled = format!(
            "PUT /v1/kv/{key}-smuggled HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {WRITE_TOKEN}\r\ncontent-length: 1\r\n\r\nS"
        );
        let head = format!(
            "PUT /v1/kv/{key} HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {WRITE_TOKEN}\r\ntransfer-encoding: {coding}\r\n\r\n"
        );
        let mut s = connect(&addr);
        s.write_all(head.as_bytes()).expect("write the head");
        s.write_all(smuggled.as_bytes()).expect("write the body");
        let a = read_answer(&mut s, ANSWER_DEADLINE).unwrap_or_else(|e| panic!("{coding}: {e}"));
        assert_eq!(
            (a.status, a.reason()),
            (501, "unsupported_transfer_encoding".to_string()),
            "Transfer-Encoding {coding:?}: {a:?}"
        );
        // Nothing more is answered, and the server closes the connection.
        let rest = rest_until_close(&mut s, Duration::from_secs(5));
        let Some(rest) = rest else {
            panic!("{coding}: the connection stayed open");
        };
        assert!(
            rest.is_empty(),
            "{coding}: a second answer came: {:?}",
            String::from_utf8_lossy(&rest)
        );
        assert_eq!(c.get(0, &key), None, "{coding}: the value was stored");
        assert_eq!(
            c.get(0, &format!("{key}-smuggled")),
            None,
            "{coding}: smuggled"
        );
    }
    // Chunked alone is still read as it should be.
    let mut s = connect(&addr);
    s.write_all(
        format!(
            "PUT /v1/kv/chunked HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {WRITE_TOKEN}\r\ntransfer-encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n"
        )
        .as_bytes(),
    )
    .expect("write");
    let a = read_answer(&mut s, ANSWER_DEADLINE).expect("an answer");
    assert_eq!(a.status, 200, "{a:?}");
    assert_eq!(c.get(0, "chunked").as_deref(), Some("ok"));
}

#[test]
fn fifty_pipelined_requests_are_all_answered_in_order() {
    let c = Cluster::start(2, Schedule::Successor, &quiet_interval(), "");
    let addr = c.url(0).trim_start_matches("http://").to_string();
    let root = c.root(0);
    // Each key is written, then read back, then /livez; 16 of each, and
    // two more /livez, in one write.
    let mut all = Vec::new();
    let mut want = Vec::new();
    for i in 0..16 {
        let value = format!("value-{i}");
        all.extend_from_slice(
            format!(
                "PUT /v1/kv/pipe-{i} HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {WRITE_TOKEN}\r\ncontent-length: {}\r\n\r\n{value}",
                value.len()
            )
            .as_bytes(),
        );
        want.push((200, None));
        all.extend_from_slice(
            format!("GET /v1/kv/pipe-{i} HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {WRITE_TOKEN}\r\n\r\n")
                .as_bytes(),
        );
        want.push((200, Some(value)));
        all.extend_from_slice(b"GET /livez HTTP/1.1\r\nhost: x\r\n\r\n");
        want.push((200, None));
    }
    for _ in 0..2 {
        all.extend_from_slice(b"GET /livez HTTP/1.1\r\nhost: x\r\n\r\n");
        want.push((200, None));
    }
    assert_eq!(want.len(), 50);
    let mut s = connect(&addr);
    s.write_all(&all).expect("write 50 requests at once");
    let answers = read_answers(&mut s, want.len(), ANSWER_DEADLINE)
        .unwrap_or_else(|e| panic!("pipelined requests: {e}"));
    for (i, (a, (status, body))) in answers.iter().zip(&want).enumerate() {
        assert_eq!(a.status, *status, "answer {i}: {a:?}");
        if let Some(body) = body {
            assert_eq!(
                String::from_utf8_lossy(&a.body),
                body.as_str(),
                "answer {i} is not the value written just before it"
            );
        }
    }
    for i in 0..16 {
        assert_eq!(c.get(0, &format!("pipe-{i}")), Some(format!("value-{i}")));
    }
    assert_ne!(c.root(0), root, "the writes moved the digest");
}
