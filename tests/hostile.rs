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

use std::io::Write;
use std::net::Shutdown;
use std::time::{Duration, Instant};

use ringsync::auth::OPERATOR_ID;
use ringsync::core::entry::Entry;
use ringsync::core::message::{decode, Body, Refusal};

use common::hostile::*;
use common::raw::{connect, now_ms, read_answer, request, send, signed, ANSWER_DEADLINE};
use common::{READ_TOKEN, SECRET, WRITE_TOKEN};

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
