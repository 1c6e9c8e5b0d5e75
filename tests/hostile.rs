//! Hostile clients against running nodes: every bad request gets its own
//! status and reason, and changes nothing. After each case the node's
//! digest root, counts and every key and value are exactly as before, and
//! the node still answers; at the end, each reason is counted in
//! `/metrics`.
//!
//! Requests are written by hand over a `TcpStream` (tests/common/raw.rs),
//! signed with the harness cluster's secret where the case needs a valid
//! signature to get past the gate. Each test has a two-node cluster of its
//! own with no cycle due for an hour, so nothing moves its data but what
//! the test sends; `request_timeout` is 2 s so the slow cases are quick.

mod common;

use std::collections::BTreeMap;
use std::io::Write;
use std::net::Shutdown;
use std::time::{Duration, Instant};

use ringsync::auth::OPERATOR_ID;
use ringsync::core::entry::{Entry, Version};
use ringsync::core::message::{decode, encode, Body, Digest, PushKind, Refusal};
use ringsync::core::Schedule;
use ringsync::topology::Topology;

use common::raw::{
    closes_within, connect, message_from, now_ms, read_answer, request, send, signed, Answer,
    ANSWER_DEADLINE,
};
use common::{quiet_interval, wait_for, Cluster, READ_TOKEN, SECRET, WRITE_TOKEN};

/// The clusters' `request_timeout`, in seconds.
const REQUEST_TIMEOUT_S: u64 = 2;

/// The clusters' `max_value_size`: small, so an oversized value is cheap.
const MAX_VALUE: usize = 4096;

/// How much later than `request_timeout` a slow client may be cut: the
/// listener's watchdog looks once a second, and a loaded machine is slow.
const CUT_SLACK: Duration = Duration::from_secs(5);

const PEER: &str = "/v1/peer/message";

/// Request headers, as `raw::request` takes them.
type Headers = Vec<(&'static str, String)>;

/// A bad peer request: what it is, its headers and body, and the status
/// and reason it must get.
type PeerCase = (&'static str, Headers, Vec<u8>, u16, &'static str);

/// A bad client request: what it is, method, path, headers, body, and the
/// status and reason it must get.
type ClientCase = (
    &'static str,
    &'static str,
    String,
    Headers,
    Vec<u8>,
    u16,
    &'static str,
);

fn start() -> Cluster {
    Cluster::start(
        2,
        Schedule::Successor,
        &quiet_interval(),
        &format!("request_timeout = \"{REQUEST_TIMEOUT_S}s\"\nmax_value_size = {MAX_VALUE}\n"),
    )
}

/// Node 0's address, host:port.
fn addr(c: &Cluster) -> String {
    c.url(0).trim_start_matches("http://").to_string()
}

/// Everything a bad request must leave alone at a node.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Snapshot {
    root: String,
    keys: u64,
    tombstones: u64,
    data: BTreeMap<String, String>,
}

fn snapshot(c: &Cluster, i: usize) -> Snapshot {
    let s = c.status(i);
    let mut data = BTreeMap::new();
    for k in c.keys(i, "") {
        let v = c.get(i, &k).unwrap_or_default();
        data.insert(k, v);
    }
    Snapshot {
        root: s["digest_root"].as_str().unwrap_or_default().to_string(),
        keys: s["keys"].as_u64().unwrap_or(u64::MAX),
        tombstones: s["tombstones"].as_u64().unwrap_or(u64::MAX),
        data,
    }
}

/// Writes a few keys at node 0 and a delete, waits until node 1 holds the
/// same (by eager relay), and returns node 0's snapshot.
fn seed(c: &Cluster) -> Snapshot {
    for k in 0..5 {
        c.put(0, &format!("seed/{k}"), &format!("value {k}"));
    }
    c.del(0, "seed/4");
    let before = snapshot(c, 0);
    wait_for(
        Duration::from_secs(20),
        "node 1 holds the seed data",
        || {
            let r = c.root(1);
            if r == before.root {
                Ok(())
            } else {
                Err(format!("root {r} at node 1, {} at node 0", before.root))
            }
        },
    );
    before
}

/// Checks that node 0 still serves and holds exactly `before`.
fn unchanged(c: &Cluster, before: &Snapshot, case: &str) {
    let now = snapshot(c, 0);
    assert_eq!(&now, before, "{case} changed node 0's data");
}

/// A peer message from ring position `from`, for this cluster unless
/// `cluster` says otherwise.
fn message(c: &Cluster, from: u32, cluster: Option<u64>, entries: Vec<Entry>) -> Vec<u8> {
    let t = Topology::load(c.topology()).expect("the harness's topology");
    let mut msg = message_from(
        &t,
        from,
        Body::Push {
            kind: PushKind::Cycle,
            digest: Digest::default(),
            entries,
            complete: false,
        },
    );
    if let Some(other) = cluster {
        msg.cluster = other;
    }
    encode(&msg)
}

fn entry(key: &str, ms: u64, origin: u32) -> Entry {
    Entry {
        key: key.to_string(),
        value: Some(b"hostile".to_vec()),
        version: Version {
            ms,
            counter: 0,
            origin,
        },
    }
}

/// A peer message signed as node n1 to n0 with the cluster secret.
fn signed_peer(c: &Cluster, body: &[u8], nonce: u64) -> Answer {
    let h = signed(SECRET, "n1", "n0", "POST", PEER, body, now_ms(), nonce);
    send(&addr(c), &request("POST", PEER, &h, body))
}

/// The protocol refusal in a peer message's answer, checked against its
/// header and status.
fn refused(a: &Answer, status: u16, reason: Refusal, case: &str) {
    assert_eq!(
        (a.status, a.header("x-ringsync-refused")),
        (status, Some(reason.name())),
        "{case}: HTTP {} {:?}",
        a.status,
        a.headers
    );
    match decode(&a.body).map(|m| m.body) {
        Ok(Body::Refused { reason: r, .. }) => assert_eq!(r, reason, "{case}"),
        other => panic!("{case}: the body is not a refusal: {other:?}"),
    }
}

/// The sample of node `i`'s `/metrics` whose line starts with `prefix`
/// (name, labels, and the space before the value).
fn metric(c: &Cluster, i: usize, prefix: &str) -> f64 {
    let (st, body) = c.call(i, "GET", "/metrics", None);
    assert_eq!(st, 200);
    let text = String::from_utf8_lossy(&body);
    text.lines()
        .find_map(|l| l.strip_prefix(prefix))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {prefix} in /metrics:\n{text}"))
}

/// A counter of node `i`'s `/metrics`, by reason.
fn refused_count(c: &Cluster, i: usize, reason: &str) -> f64 {
    metric(
        c,
        i,
        &format!("ringsync_refused_requests_total{{reason=\"{reason}\"}} "),
    )
}

fn all_counted(c: &Cluster, reasons: &[&str]) {
    for r in reasons {
        assert!(
            refused_count(c, 0, r) >= 1.0,
            "refusals for {r} were not counted in /metrics"
        );
    }
}

#[test]
fn peer_routes_refuse_whoever_cannot_sign() {
    let c = start();
    let before = seed(&c);
    let a = addr(&c);
    let body = message(&c, 1, None, Vec::new());
    let now = now_ms();

    // A well-signed empty push is taken once; the same request again is a replay.
    let h = signed(SECRET, "n1", "n0", "POST", PEER, &body, now, 1);
    let first = send(&a, &request("POST", PEER, &h, &body));
    assert_eq!(first.status, 200, "a signed push: {}", first.message());
    assert!(matches!(
        decode(&first.body).map(|m| m.body),
        Ok(Body::Ack { .. })
    ));
    send(&a, &request("POST", PEER, &h, &body)).expect(401, "replayed_nonce", "a replay");
    unchanged(&c, &before, "an empty push and its replay");

    let cases: Vec<PeerCase> = vec![
        (
            "no signature",
            vec![],
            body.clone(),
            401,
            "missing_signature",
        ),
        (
            "another secret",
            signed(
                "not-the-cluster-secret-at-all",
                "n1",
                "n0",
                "POST",
                PEER,
                &body,
                now,
                2,
            ),
            body.clone(),
            401,
            "bad_signature",
        ),
        (
            "a body changed after signing",
            signed(SECRET, "n1", "n0", "POST", PEER, &body, now, 3),
            message(&c, 1, None, vec![entry("smuggled", now - 1000, 1)]),
            401,
            "bad_signature",
        ),
        (
            "a signature for another path",
            signed(SECRET, "n1", "n0", "POST", "/v1/peer/hop", &body, now, 4),
            body.clone(),
            401,
            "bad_signature",
        ),
        (
            "a header missing",
            signed(SECRET, "n1", "n0", "POST", PEER, &body, now, 5)
                .into_iter()
                .filter(|(k, _)| *k != "x-ringsync-nonce")
                .collect(),
            body.clone(),
            401,
            "bad_signature",
        ),
        (
            "a timestamp 2 minutes old",
            signed(SECRET, "n1", "n0", "POST", PEER, &body, now - 120_000, 6),
            body.clone(),
            401,
            "stale_timestamp",
        ),
        (
            "a timestamp 2 minutes ahead",
            signed(SECRET, "n1", "n0", "POST", PEER, &body, now + 120_000, 7),
            body.clone(),
            401,
            "stale_timestamp",
        ),
        (
            "an unknown node",
            signed(SECRET, "mallory", "n0", "POST", PEER, &body, now, 8),
            body.clone(),
            403,
            "unknown_node",
        ),
        (
            "a request signed for the other node",
            signed(SECRET, "n1", "n1", "POST", PEER, &body, now, 9),
            body.clone(),
            403,
            "wrong_node",
        ),
        (
            "an operator on a peer route",
            signed(SECRET, OPERATOR_ID, "n0", "POST", PEER, &body, now, 10),
            body.clone(),
            403,
            "not_a_member",
        ),
    ];
    for (case, headers, b, status, reason) in cases {
        send(&a, &request("POST", PEER, &headers, &b)).expect(status, reason, case);
        unchanged(&c, &before, case);
    }

    // The other peer routes and the sync routes.
    let hop = "/v1/peer/hop";
    send(&a, &request("POST", hop, &[], b"{}")).expect(401, "missing_signature", "unsigned hop");
    for (i, garbage) in [
        &b"{\"from\": 0, \"to\""[..],
        b"\xff\xfe not json",
        b"[1,2,3]",
    ]
    .iter()
    .enumerate()
    {
        let h = signed(SECRET, "n1", "n0", "POST", hop, garbage, now, 20 + i as u64);
        send(&a, &request("POST", hop, &h, garbage)).expect(400, "bad_json", "garbage hop JSON");
    }
    send(&a, &request("GET", "/v1/peer/digest", &[], b"")).expect(
        401,
        "missing_signature",
        "unsigned digest",
    );
    let h = signed(SECRET, "n1", "n0", "GET", "/v1/peer/digest", b"", now, 30);
    assert_eq!(
        send(&a, &request("GET", "/v1/peer/digest", &h, b"")).status,
        200
    );
    send(&a, &request("POST", "/v1/sync", &[], b"")).expect(
        401,
        "missing_signature",
        "unsigned sync",
    );
    let bearer = vec![("authorization", format!("Bearer {WRITE_TOKEN}"))];
    send(&a, &request("POST", "/v1/sync", &bearer, b"")).expect(
        401,
        "missing_signature",
        "a sync with a client token",
    );
    let h = signed(
        SECRET,
        OPERATOR_ID,
        "n0",
        "GET",
        "/v1/sync/nope",
        b"",
        now,
        31,
    );
    send(&a, &request("GET", "/v1/sync/nope", &h, b"")).expect(404, "not_found", "no such sync");
    unchanged(&c, &before, "the other peer and sync routes");

    all_counted(
        &c,
        &[
            "missing_signature",
            "bad_signature",
            "stale_timestamp",
            "replayed_nonce",
            "unknown_node",
            "wrong_node",
            "not_a_member",
            "bad_json",
        ],
    );
    let (_, metrics) = c.call(0, "GET", "/metrics", None);
    assert!(
        !String::from_utf8_lossy(&metrics).contains("reason=\"not_found\""),
        "an absent sync is an answer, not a refusal"
    );
}

#[test]
fn peer_messages_are_validated_whole_and_refused_with_their_reason() {
    let c = start();
    let before = seed(&c);
    let a = addr(&c);
    let now = now_ms();
    let mut nonce = 100;
    let mut next = || {
        nonce += 1;
        nonce
    };

    let garbage: Vec<u8> = (0..512u32).map(|i| (i * 7919 % 251) as u8).collect();
    refused(
        &signed_peer(&c, &garbage, next()),
        400,
        Refusal::Malformed,
        "garbage bytes",
    );
    let whole = message(&c, 1, None, vec![entry("cut", now - 1000, 1)]);
    refused(
        &signed_peer(&c, &whole[..whole.len() / 2], next()),
        400,
        Refusal::Malformed,
        "a message cut in half",
    );
    refused(
        &signed_peer(&c, &[9, 1, 2, 3], next()),
        400,
        Refusal::Malformed,
        "an unknown wire version",
    );
    refused(
        &signed_peer(&c, &message(&c, 1, Some(0xBAD), vec![]), next()),
        409,
        Refusal::WrongCluster,
        "another cluster's fingerprint",
    );
    for from in [0, 2, 9] {
        refused(
            &signed_peer(&c, &message(&c, from, None, vec![]), next()),
            403,
            Refusal::UnknownPeer,
            &format!("a message from ring position {from}"),
        );
    }
    unchanged(&c, &before, "undecodable and misaddressed messages");

    // Two good entries and one bad: nothing of the message is applied.
    let good = |k: &str| entry(k, now - 1000, 1);
    let cases: Vec<(&str, Vec<Entry>, Refusal)> = vec![
        (
            "a key over 1 KiB",
            vec![
                good("whole/a"),
                good("whole/b"),
                entry(&"k".repeat(2000), now - 1000, 1),
            ],
            Refusal::InvalidEntry,
        ),
        (
            "an empty key",
            vec![good("whole/a"), entry("", now - 1000, 1)],
            Refusal::InvalidEntry,
        ),
        (
            "a value over max_value_size",
            vec![
                good("whole/a"),
                Entry {
                    value: Some(vec![0; MAX_VALUE + 1]),
                    ..good("whole/big")
                },
            ],
            Refusal::InvalidEntry,
        ),
        (
            "more entries than a batch holds",
            (0..5000).map(|i| good(&format!("whole/{i}"))).collect(),
            Refusal::InvalidEntry,
        ),
    ];
    for (case, entries, reason) in cases {
        let body = message(&c, 1, None, entries);
        refused(&signed_peer(&c, &body, next()), 422, reason, case);
        unchanged(&c, &before, case);
    }

    // Versions a minute in the future are not refused (that would stall a
    // ring behind one fast clock) but never applied: held back, counted.
    let future = vec![
        entry("whole/f", now + 60_000, 1),
        entry("whole/g", now + 61_000, 1),
    ];
    let answer = signed_peer(&c, &message(&c, 1, None, future), next());
    assert_eq!(answer.status, 200, "{}", answer.message());
    unchanged(&c, &before, "versions a minute in the future");
    assert!(
        metric(&c, 0, "ringsync_held_back_entries_total ") >= 2.0,
        "held-back entries not counted"
    );

    // The body itself: oversized (announced), and truncated.
    let big = 200u64 << 20;
    let h = signed(SECRET, "n1", "n0", "POST", PEER, b"", now, next());
    let mut headers = h.clone();
    headers.push(("content-length", big.to_string()));
    let started = Instant::now();
    send(&a, &request("POST", PEER, &headers, b"")).expect(
        413,
        "body_too_large",
        "200 MiB announced",
    );
    assert!(
        started.elapsed() < Duration::from_secs(REQUEST_TIMEOUT_S),
        "an oversized body was refused only after {:?}",
        started.elapsed()
    );
    let mut s = connect(&a);
    let mut headers = signed(SECRET, "n1", "n0", "POST", PEER, b"", now, next());
    headers.push(("content-length", "1000".to_string()));
    let mut req = request("POST", PEER, &headers, b"");
    req.extend_from_slice(&[0u8; 10]);
    s.write_all(&req).expect("write");
    s.shutdown(Shutdown::Write).expect("shutdown");
    read_answer(&mut s, ANSWER_DEADLINE)
        .expect("an answer")
        .expect(400, "truncated_body", "10 of 1000 bytes, then the end");
    unchanged(&c, &before, "oversized and truncated bodies");

    all_counted(&c, &["body_too_large", "truncated_body"]);
    for r in [
        "malformed",
        "wrong_cluster",
        "unknown_peer",
        "invalid_entry",
    ] {
        assert!(refused_count(&c, 0, r) >= 1.0, "{r} not counted");
    }
    // The node itself is fine with a good message.
    let ok = signed_peer(&c, &message(&c, 1, None, vec![]), next());
    assert_eq!(ok.status, 200, "{}", ok.message());
}

#[test]
fn the_client_api_wants_a_token_that_may_do_what_is_asked() {
    let c = start();
    let before = seed(&c);
    let a = addr(&c);
    let bearer = |t: &str| -> Headers { vec![("authorization", format!("Bearer {t}"))] };
    let cases: Vec<ClientCase> = vec![
        (
            "a write without a token",
            "PUT",
            "/v1/kv/x".into(),
            vec![],
            b"v".to_vec(),
            401,
            "missing_token",
        ),
        (
            "a read without a token",
            "GET",
            "/v1/kv/seed%2F0".into(),
            vec![],
            vec![],
            401,
            "missing_token",
        ),
        (
            "a list without a token",
            "GET",
            "/v1/kv?prefix=seed".into(),
            vec![],
            vec![],
            401,
            "missing_token",
        ),
        (
            "an unknown token",
            "PUT",
            "/v1/kv/x".into(),
            bearer("not-a-token-of-this-node"),
            b"v".to_vec(),
            401,
            "bad_token",
        ),
        (
            "another scheme",
            "PUT",
            "/v1/kv/x".into(),
            vec![("authorization", "Basic dXNlcjpwdw==".into())],
            b"v".to_vec(),
            401,
            "bad_token",
        ),
        (
            "a read-only token writing",
            "PUT",
            "/v1/kv/x".into(),
            bearer(READ_TOKEN),
            b"v".to_vec(),
            403,
            "read_only_token",
        ),
        (
            "a read-only token deleting",
            "DELETE",
            "/v1/kv/seed%2F0".into(),
            bearer(READ_TOKEN),
            vec![],
            403,
            "read_only_token",
        ),
        (
            "a key over 1 KiB",
            "PUT",
            format!("/v1/kv/{}", "k".repeat(2000)),
            bearer(WRITE_TOKEN),
            b"v".to_vec(),
            400,
            "invalid_entry",
        ),
        (
            "a key that is not UTF-8",
            "PUT",
            "/v1/kv/%FF%FE".into(),
            bearer(WRITE_TOKEN),
            b"v".to_vec(),
            400,
            "bad_key",
        ),
        (
            "a bad percent escape",
            "PUT",
            "/v1/kv/a%zz".into(),
            bearer(WRITE_TOKEN),
            b"v".to_vec(),
            400,
            "bad_key",
        ),
        (
            "a value over max_value_size",
            "PUT",
            "/v1/kv/big".into(),
            bearer(WRITE_TOKEN),
            vec![b'x'; MAX_VALUE + 1],
            413,
            "body_too_large",
        ),
        (
            "an unsupported method",
            "PATCH",
            "/v1/kv/seed%2F0".into(),
            bearer(WRITE_TOKEN),
            b"v".to_vec(),
            405,
            "method_not_allowed",
        ),
        (
            "a path that is no route",
            "GET",
            "/v2/kv/x".into(),
            vec![],
            vec![],
            404,
            "no_route",
        ),
        (
            "a bad query",
            "GET",
            "/v1/kv?limit=lots".into(),
            bearer(READ_TOKEN),
            vec![],
            400,
            "bad_query",
        ),
    ];
    for (case, method, path, headers, body, status, reason) in cases {
        let ans = send(&a, &request(method, &path, &headers, &body));
        ans.expect(status, reason, case);
        assert!(!ans.message().is_empty(), "{case}: no message");
        if status == 401 {
            assert_eq!(ans.header("www-authenticate"), Some("Bearer"), "{case}");
        }
        unchanged(&c, &before, case);
    }
    // What each token may do, it does.
    let ans = send(
        &a,
        &request("GET", "/v1/kv/seed%2F0", &bearer(READ_TOKEN), b""),
    );
    assert_eq!((ans.status, ans.body.as_slice()), (200, &b"value 0"[..]));
    let ans = send(
        &a,
        &request("PUT", "/v1/kv/ok", &bearer(WRITE_TOKEN), b"fine"),
    );
    assert_eq!(ans.status, 200, "{}", ans.message());
    assert_eq!(c.get(0, "ok").as_deref(), Some("fine"));
    all_counted(
        &c,
        &[
            "missing_token",
            "bad_token",
            "read_only_token",
            "invalid_entry",
            "bad_key",
            "body_too_large",
            "method_not_allowed",
            "no_route",
            "bad_query",
        ],
    );
}

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
    let (ans, took, mut s) = trickle(&a, &head, b'z');
    ans.expect(408, "body_timeout", "a body at one byte a second");
    assert!(
        took + Duration::from_millis(200) >= limit && took < limit + CUT_SLACK,
        "the slow body was cut after {took:?}, not about {limit:?}"
    );
    assert!(
        closes_within(&mut s, CUT_SLACK),
        "the connection stayed open after the 408"
    );

    // A head at one byte a second, while others are served.
    let (ans, took, mut s) = {
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
    assert!(
        took + Duration::from_millis(200) >= limit && took < limit + CUT_SLACK,
        "the slow head was cut after {took:?}, not about {limit:?}"
    );
    assert!(
        closes_within(&mut s, CUT_SLACK),
        "the connection stayed open after the 408"
    );

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
