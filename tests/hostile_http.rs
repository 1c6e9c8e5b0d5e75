//! Hostile clients at the HTTP level against a running node: broken
//! requests get an answer that names what is wrong, and slow clients are
//! cut within the request timeout; neither changes the node's data (see
//! `tests/hostile.rs` for the cases past the HTTP framing).

mod common;

use std::io::Write;
use std::time::{Duration, Instant};

use common::hostile::*;
use common::raw::{closes_within, connect, read_answer, request, send, Answer, ANSWER_DEADLINE};
use common::WRITE_TOKEN;

#[test]
fn broken_http_gets_an_answer_that_names_it() {
    let c = start();
    let before = seed(&c);
    let a = addr(&c);
    let huge = format!("/v1/kv/{}", "a".repeat(20_000));
    let bearer = vec![("authorization", format!("Bearer {WRITE_TOKEN}"))];
    send(&a, &request("GET", &huge, &bearer, b"")).expect(431, "head_too_large", "a 20 KB path");
    let ans = send(&a, b"GET /v1/status HTTP/1.0\r\nhost: x\r\n\r\n");
    ans.expect(400, "bad_request", "HTTP/1.0");
    assert!(ans.message().contains("version"), "{}", ans.message());
    send(&a, b"\x00\x01\x02 garbage\r\n\r\n").expect(400, "bad_request", "garbage bytes");
    // An endless header line: refused once past the head budget, without
    // the node buffering it all.
    let mut s = connect(&a);
    s.write_all(b"GET /v1/status HTTP/1.1\r\nx-long: ")
        .expect("write");
    let chunk = vec![b'y'; 64 << 10];
    for _ in 0..16 {
        if s.write_all(&chunk).is_err() {
            break;
        }
    }
    read_answer(&mut s, ANSWER_DEADLINE)
        .expect("an answer")
        .expect(431, "head_too_large", "an endless header line");
    unchanged(&c, &before, "broken HTTP");
    all_counted(&c, &["head_too_large", "bad_request"]);
}

/// Sends `head`, then one byte a second of `trickle` on another thread,
/// and returns the answer and when it came.
fn trickle(addr: &str, head: &[u8], trickle: u8) -> (Answer, Duration, std::net::TcpStream) {
    let mut s = connect(addr);
    s.write_all(head).expect("write the head");
    let started = Instant::now();
    let mut w = s.try_clone().expect("clone the stream");
    let writer = std::thread::spawn(move || {
        // Bounded: 30 bytes, 30 s at most; stops once the node hangs up.
        for _ in 0..30 {
            std::thread::sleep(Duration::from_secs(1));
            if w.write_all(&[trickle]).is_err() {
                return;
            }
        }
    });
    let ans = read_answer(&mut s, ANSWER_DEADLINE).expect("an answer to a slow client");
    let took = started.elapsed();
    drop(writer);
    (ans, took, s)
}

/// A slow `what` was answered about `limit` after it began (`took`), and
/// its connection `s` closed after the answer.
fn cut_about(took: Duration, limit: Duration, mut s: std::net::TcpStream, what: &str) {
    assert!(
        took + Duration::from_millis(200) >= limit && took < limit + CUT_SLACK,
        "the slow {what} was cut after {took:?}, not about {limit:?}"
    );
    assert!(
        closes_within(&mut s, CUT_SLACK),
        "the connection stayed open after the 408"
    );
}

#[test]
fn slow_clients_are_cut_within_the_request_timeout() {
    let c = start();
    let before = seed(&c);
    let a = addr(&c);
    let limit = Duration::from_secs(REQUEST_TIMEOUT_S);

    // A body at one byte a second.
    let headers = vec![
        ("authorization", format!("Bearer {WRITE_TOKEN}")),
        ("content-length", "100".to_string()),
    ];
    let head = request("PUT", "/v1/kv/slow", &headers, b"");
    let (ans, took, s) = trickle(&a, &head, b'z');
    ans.expect(408, "body_timeout", "a body at one byte a second");
    cut_about(took, limit, s, "body");

    // A head at one byte a second, while others are served.
    let (ans, took, s) = {
        let a2 = a.clone();
        let slow = std::thread::spawn(move || {
            let (ans, took, s) = trickle(&a2, b"GET /v1/status HTTP/1.1\r\nx-slow: ", b'a');
            (ans, took, s)
        });
        std::thread::sleep(Duration::from_millis(500));
        let t = Instant::now();
        assert_eq!(c.status(0)["id"], "n0");
        assert!(
            t.elapsed() < Duration::from_secs(1),
            "a slow client held up others"
        );
        slow.join().expect("the slow client's thread")
    };
    ans.expect(408, "head_timeout", "a head at one byte a second");
    cut_about(took, limit, s, "head");

    // A connection that says nothing is closed, without an answer.
    let mut s = connect(&a);
    let started = Instant::now();
    assert!(
        closes_within(&mut s, limit + CUT_SLACK),
        "an idle connection was kept past {:?}",
        limit + CUT_SLACK
    );
    assert!(started.elapsed() + Duration::from_millis(200) >= limit);

    unchanged(&c, &before, "slow clients");
    assert_eq!(c.get(0, "slow"), None);
    all_counted(&c, &["body_timeout", "head_timeout"]);
}
