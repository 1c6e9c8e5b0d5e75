//! The server's side of authentication: [`Guard`] checks signed requests
//! and client tokens against the secrets in force and remembers nonces, so
//! a captured request cannot be replayed.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, RwLock};

use super::crypto::untoken;
use super::nonces::NonceBooks;
use super::refusal::{refused, Denied, Refused};
use super::secrets::Secrets;
use super::sign::{
    canonical, SignedParts, Signer, HEADER_NODE, HEADER_NONCE, HEADER_SIGNATURE, HEADER_TIME,
    HEADER_TO, OPERATOR_ID,
};
use super::tokens::Access;
use super::window::{MAX_NONCES_PER_SENDER, MAX_SKEW_S, NONCE_TTL_MS};

/// A signed request's headers, parsed and checked as far as they can be
/// without the body.
struct Headers {
    node: String,
    to: String,
    time: String,
    nonce: String,
    nonce_bytes: Vec<u8>,
    mac: Vec<u8>,
}

/// Who may sign a route.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Signers {
    /// Ring members only: the peer routes.
    Members,
    /// Members and the operator: sync and the client API.
    MembersAndOperator,
}

/// The server's side: checks signatures and tokens, remembers nonces, and
/// counts what it refused. Its secrets can be swapped while it serves
/// (SIGHUP).
pub struct Guard {
    me: String,
    /// The ids of the ring in force: a reload to a new epoch replaces them.
    members: RwLock<Vec<String>>,
    secrets: RwLock<Secrets>,
    nonces: Mutex<NonceBooks>,
    /// Requests signed at or before this unix second are refused (0: none).
    /// Set after a start that found no nonce book saved by a clean stop:
    /// the previous process may have accepted them, and their nonces died
    /// with it.
    replay_floor_s: AtomicU64,
}

impl std::fmt::Debug for Guard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Guard")
            .field("me", &self.me)
            .field("secrets", &*self.read())
            .finish()
    }
}

impl Guard {
    /// A guard for node `me` of a ring with `members`.
    pub fn new(me: &str, members: Vec<String>, secrets: Secrets) -> Guard {
        Guard {
            me: me.to_string(),
            members: RwLock::new(members),
            secrets: RwLock::new(secrets),
            nonces: Mutex::new(NonceBooks::default()),
            replay_floor_s: AtomicU64::new(0),
        }
    }

    /// Puts the members of a new ring in force (a reload to a new epoch):
    /// requests signed by a member removed from it are refused from now on.
    pub fn set_members(&self, members: Vec<String>) {
        *self.members.write().unwrap_or_else(|p| p.into_inner()) = members;
    }

    /// Refuses every request signed at or before `started_ms` (the process
    /// start): for a start not preceded by a clean stop's saved nonce book.
    /// A request is stamped in whole seconds, so the whole second of the
    /// start is refused, and the previous process died before it ended.
    pub fn refuse_signed_before(&self, started_ms: u64) {
        self.replay_floor_s
            .store(started_ms / 1000, Ordering::SeqCst);
    }

    /// The nonces to remember still at `now_ms`, as text for a clean stop
    /// to save (see [`Guard::restore_nonces`]).
    pub fn saved_nonces(&self, now_ms: u64) -> String {
        self.books().export(now_ms)
    }

    /// Remembers the nonces of a [`Guard::saved_nonces`] text; returns how
    /// many were still to be remembered at `now_ms`.
    pub fn restore_nonces(&self, text: &str, now_ms: u64) -> Result<usize, String> {
        self.books().import(text, now_ms)
    }

    fn books(&self) -> std::sync::MutexGuard<'_, NonceBooks> {
        self.nonces.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Secrets> {
        self.secrets.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Puts new secrets in force (a reload).
    pub fn replace(&self, secrets: Secrets) {
        *self.secrets.write().unwrap_or_else(|p| p.into_inner()) = secrets;
    }

    /// Whether a cluster keyring is in force.
    pub fn signed(&self) -> bool {
        self.read().keyring.is_some()
    }

    /// Whether client tokens are in force.
    pub fn has_tokens(&self) -> bool {
        self.read().tokens.is_some()
    }

    /// A signer for this node's own requests, when a keyring is in force.
    pub fn signer(&self) -> Option<Signer> {
        self.read()
            .keyring
            .clone()
            .map(|k| Signer::new(&self.me, k))
    }

    /// Checks a signed request: `Ok(signer id)`, or why it is refused. Without a
    /// keyring every request passes, as the anonymous `""`.
    pub fn check_signed(
        &self,
        parts: &SignedParts<'_>,
        who: Signers,
        now_ms: u64,
    ) -> Result<String, Refused> {
        let secrets = self.read();
        let Some(keyring) = secrets.keyring.as_ref() else {
            return Ok(String::new());
        };
        let signed = self.signature_headers(parts, who, now_ms)?;
        let text = canonical(
            parts.method,
            parts.path,
            parts.query,
            &signed.node,
            &signed.to,
            &signed.time,
            &signed.nonce,
            parts.body,
        );
        if !keyring.accepts(&text, &signed.mac) {
            return Err(refused(
                Denied::BadSignature,
                "the signature matches no key of this node's keyring (a different secret, or the request was changed on the way)",
            ));
        }
        drop(secrets);
        let Headers {
            node, nonce_bytes, ..
        } = signed;
        let mut books = self.books();
        books
            .0
            .entry(node.clone())
            .or_default()
            .insert(nonce_bytes, now_ms)
            .map_err(|reason| match reason {
                Denied::ReplayedNonce => refused(
                    reason,
                    format!("{node} already sent a request with this nonce: a replay"),
                ),
                _ => refused(
                    reason,
                    format!(
                        "{node} sent over {MAX_NONCES_PER_SENDER} signed requests in {} s; try again shortly",
                        NONCE_TTL_MS / 1000
                    ),
                ),
            })?;
        Ok(node)
    }

    /// What of a signed request can be checked before its body is read:
    /// every header is there and well formed, the signer may sign this
    /// route, the request is for this node, and its time is within the
    /// window. Without a keyring every request passes. The gate calls this
    /// before reading a body, so that no body is read for a request that
    /// cannot be good; the MAC, which covers the body, is checked after.
    pub fn precheck_signed(
        &self,
        parts: &SignedParts<'_>,
        who: Signers,
        now_ms: u64,
    ) -> Result<(), Refused> {
        if self.read().keyring.is_none() {
            return Ok(());
        }
        self.signature_headers(parts, who, now_ms).map(drop)
    }

    /// The checks of [`Self::precheck_signed`], with the headers parsed.
    fn signature_headers(
        &self,
        parts: &SignedParts<'_>,
        who: Signers,
        now_ms: u64,
    ) -> Result<Headers, Refused> {
        if !parts.any_signature_header() {
            return Err(refused(
                Denied::MissingSignature,
                format!(
                    "this route needs a request signed with the cluster secret ({HEADER_NODE}, {HEADER_TO}, {HEADER_TIME}, {HEADER_NONCE}, {HEADER_SIGNATURE})"
                ),
            ));
        }
        let need = |name: &str, v: Option<&'_ str>| -> Result<String, Refused> {
            v.map(str::to_string).ok_or_else(|| {
                refused(
                    Denied::BadSignature,
                    format!("the header {name} is missing"),
                )
            })
        };
        let node = need(HEADER_NODE, parts.node)?;
        let to = need(HEADER_TO, parts.to)?;
        let time = need(HEADER_TIME, parts.time)?;
        let nonce = need(HEADER_NONCE, parts.nonce)?;
        let signature = need(HEADER_SIGNATURE, parts.signature)?;

        let member = self
            .members
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .contains(&node);
        if node == OPERATOR_ID {
            if who == Signers::Members {
                return Err(refused(
                    Denied::NotAMember,
                    "the peer routes take requests from ring members only, not from an operator's tool",
                ));
            }
        } else if !member {
            return Err(refused(
                Denied::UnknownNode,
                format!("{HEADER_NODE} {node:?} is not a node of this ring"),
            ));
        } else if node == self.me {
            // No node sends to itself: a request signed with our own id
            // is someone else holding the secret, or a reflection.
            return Err(refused(
                Denied::UnknownNode,
                format!(
                    "{HEADER_NODE} {node:?} is this node's own id: a node never sends to itself"
                ),
            ));
        }
        if to != self.me {
            return Err(refused(
                Denied::WrongNode,
                format!(
                    "the request was signed for node {to:?}, and this is node {:?}",
                    self.me
                ),
            ));
        }
        let t: u64 = match time.parse() {
            Ok(t) if time.len() <= 20 => t,
            _ => {
                return Err(refused(
                    Denied::BadSignature,
                    format!("{HEADER_TIME} {time:?} is not unix time in seconds"),
                ))
            }
        };
        let now_s = now_ms / 1000;
        if t.abs_diff(now_s) > MAX_SKEW_S {
            return Err(refused(
                Denied::StaleTimestamp,
                format!(
                    "{HEADER_TIME} {t} is {} s from this node's clock ({now_s}); at most {MAX_SKEW_S} s is accepted (check NTP on both hosts)",
                    t.abs_diff(now_s)
                ),
            ));
        }
        let floor = self.replay_floor_s.load(Ordering::SeqCst);
        if floor > 0 && t <= floor {
            return Err(refused(
                Denied::SignedBeforeStart,
                format!(
                    "{HEADER_TIME} {t} is at or before this node's start ({floor}), and it did not stop cleanly: the request may have been accepted before, so it is refused; sign it anew"
                ),
            ));
        }
        let nonce_bytes = match untoken(&nonce, 16..=64) {
            Some(b) if (8..=32).contains(&b.len()) => b,
            _ => {
                return Err(refused(
                    Denied::BadSignature,
                    format!("{HEADER_NONCE} must be 8 to 32 bytes in unpadded base64url (or 16 to 64 hex digits)"),
                ))
            }
        };
        let Some(mac) = untoken(&signature, 64..=64).filter(|m| m.len() == 32) else {
            return Err(refused(
                Denied::BadSignature,
                format!(
                    "{HEADER_SIGNATURE} must be 32 bytes in unpadded base64url (or 64 hex digits)"
                ),
            ));
        };
        Ok(Headers {
            node,
            to,
            time,
            nonce,
            nonce_bytes,
            mac,
        })
    }

    /// Checks a client API request: a bearer token in `authorization`, or
    /// else a signature. `write` is true for anything but a read. Without
    /// a keyring or tokens, everything passes. With `body_read` false it
    /// goes as far as it can before the body is read: a token wholly, a
    /// signature as [`Self::precheck_signed`] does.
    pub fn check_client(
        &self,
        authorization: Option<&str>,
        parts: &SignedParts<'_>,
        write: bool,
        now_ms: u64,
        body_read: bool,
    ) -> Result<(), Refused> {
        let (signed, tokens) = {
            let s = self.read();
            (s.keyring.is_some(), s.tokens.clone())
        };
        if !signed && tokens.is_none() {
            return Ok(());
        }
        if let Some(auth) = authorization {
            let Some(token) = auth
                .strip_prefix("Bearer ")
                .or_else(|| auth.strip_prefix("bearer "))
                .map(str::trim)
            else {
                return Err(refused(
                    Denied::BadToken,
                    "the Authorization header must be `Bearer TOKEN`",
                ));
            };
            return match tokens.as_ref().and_then(|t| t.lookup(token)) {
                None => Err(refused(
                    Denied::BadToken,
                    "this bearer token is not one of this node's tokens",
                )),
                Some(Access::Read) if write => Err(refused(
                    Denied::ReadOnlyToken,
                    "this token may only read; writing needs a token with `write` access",
                )),
                Some(_) => Ok(()),
            };
        }
        if signed && parts.any_signature_header() {
            return if body_read {
                self.check_signed(parts, Signers::MembersAndOperator, now_ms)
                    .map(drop)
            } else {
                self.precheck_signed(parts, Signers::MembersAndOperator, now_ms)
            };
        }
        Err(refused(
            Denied::MissingToken,
            if tokens.is_some() {
                "this node's client API needs `Authorization: Bearer TOKEN` (the CLI reads it from the file named by RINGSYNC_TOKEN_FILE)"
            } else {
                "this node has no client tokens: its client API takes requests signed with the cluster secret (the CLI signs with the file named by RINGSYNC_SECRET_FILE)"
            },
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::{Keyring, Tokens};

    const KEY: &[u8] = b"a-cluster-secret-for-tests";
    const NOW: u64 = 1_700_000_000_000;

    fn guard() -> Guard {
        Guard::new(
            "b",
            vec!["a".into(), "b".into(), "c".into()],
            Secrets {
                keyring: Some(Keyring::single(KEY)),
                tokens: Tokens::parse("reader-token-0123456 read\nwriter-token-0123456 write", "t")
                    .unwrap(),
                ..Secrets::default()
            },
        )
    }

    fn headers(
        from: &str,
        to: &str,
        key: &[u8],
        now: u64,
        nonce: u8,
    ) -> Vec<(&'static str, String)> {
        Signer::new(from, Keyring::single(key)).headers_with(
            "POST",
            "/v1/peer/message",
            "",
            to,
            b"body",
            now,
            &[nonce; 16],
        )
    }

    fn parts<'a>(h: &'a [(&'static str, String)], body: &'a [u8]) -> SignedParts<'a> {
        let get = |n: &str| h.iter().find(|(k, _)| *k == n).map(|(_, v)| v.as_str());
        SignedParts {
            method: "POST",
            path: "/v1/peer/message",
            query: "",
            body,
            node: get(HEADER_NODE),
            to: get(HEADER_TO),
            time: get(HEADER_TIME),
            nonce: get(HEADER_NONCE),
            signature: get(HEADER_SIGNATURE),
        }
    }

    fn denied(r: Result<String, Refused>) -> Denied {
        r.expect_err("refused").reason
    }

    #[test]
    fn a_signed_request_passes_once() {
        let g = guard();
        let h = headers("a", "b", KEY, NOW, 1);
        assert_eq!(
            g.check_signed(&parts(&h, b"body"), Signers::Members, NOW + 2000),
            Ok("a".to_string())
        );
        let again = g.check_signed(&parts(&h, b"body"), Signers::Members, NOW + 3000);
        assert_eq!(denied(again), Denied::ReplayedNonce);
        // The same nonce from another sender is another nonce.
        let h = headers("c", "b", KEY, NOW, 1);
        assert!(g
            .check_signed(&parts(&h, b"body"), Signers::Members, NOW)
            .is_ok());
    }

    #[test]
    fn every_way_to_get_it_wrong_is_named() {
        let g = guard();
        let m = Signers::Members;
        assert_eq!(
            denied(g.check_signed(&parts(&[], b"body"), m, NOW)),
            Denied::MissingSignature
        );
        let h = headers("a", "b", KEY, NOW, 2);
        assert_eq!(
            denied(g.check_signed(&parts(&h, b"bodY"), m, NOW)),
            Denied::BadSignature
        );
        let h = headers("a", "b", b"another-secret-entirely", NOW, 3);
        assert_eq!(
            denied(g.check_signed(&parts(&h, b"body"), m, NOW)),
            Denied::BadSignature
        );
        let h = headers("z", "b", KEY, NOW, 4);
        assert_eq!(
            denied(g.check_signed(&parts(&h, b"body"), m, NOW)),
            Denied::UnknownNode
        );
        let h = headers("a", "c", KEY, NOW, 5);
        assert_eq!(
            denied(g.check_signed(&parts(&h, b"body"), m, NOW)),
            Denied::WrongNode
        );
        let h = headers(OPERATOR_ID, "b", KEY, NOW, 6);
        assert_eq!(
            denied(g.check_signed(&parts(&h, b"body"), m, NOW)),
            Denied::NotAMember
        );
        assert!(g
            .check_signed(&parts(&h, b"body"), Signers::MembersAndOperator, NOW)
            .is_ok());
        let h = headers("a", "b", KEY, NOW - 31_000, 7);
        assert_eq!(
            denied(g.check_signed(&parts(&h, b"body"), m, NOW)),
            Denied::StaleTimestamp
        );
        let h = headers("a", "b", KEY, NOW + 31_000, 8);
        assert_eq!(
            denied(g.check_signed(&parts(&h, b"body"), m, NOW)),
            Denied::StaleTimestamp
        );
        let h = headers("a", "b", KEY, NOW + 29_000, 9);
        assert!(g.check_signed(&parts(&h, b"body"), m, NOW).is_ok());
        let mut h = headers("a", "b", KEY, NOW, 10);
        h.retain(|(k, _)| *k != HEADER_NONCE);
        let e = g.check_signed(&parts(&h, b"body"), m, NOW).unwrap_err();
        assert_eq!(e.reason, Denied::BadSignature);
        assert!(e.message.contains(HEADER_NONCE), "{e:?}");
    }

    #[test]
    fn rotation_accepts_any_key_and_signs_with_the_first() {
        let old = b"the-old-cluster-secret".as_slice();
        let new = b"the-new-cluster-secret".as_slice();
        let g = Guard::new(
            "b",
            vec!["a".into(), "b".into()],
            Secrets {
                keyring: Keyring::parse(
                    &format!(
                        "{}\n{}\n",
                        String::from_utf8_lossy(new),
                        String::from_utf8_lossy(old)
                    ),
                    "k",
                )
                .unwrap(),
                ..Secrets::default()
            },
        );
        for (i, key) in [old, new].iter().enumerate() {
            let h = headers("a", "b", key, NOW, 20 + i as u8);
            assert!(g
                .check_signed(&parts(&h, b"body"), Signers::Members, NOW)
                .is_ok());
        }
        let signed = g
            .signer()
            .unwrap()
            .headers_with("GET", "/", "", "a", b"", NOW, &[1; 16]);
        let mine = headers("b", "a", new, NOW, 1);
        let sig = |h: &[(&'static str, String)]| {
            h.iter()
                .find(|(k, _)| *k == HEADER_SIGNATURE)
                .map(|(_, v)| v.clone())
        };
        let expected = Signer::new("b", Keyring::single(new))
            .headers_with("GET", "/", "", "a", b"", NOW, &[1; 16]);
        assert_eq!(sig(&signed), sig(&expected));
        assert_ne!(sig(&signed), sig(&mine));
    }

    #[test]
    fn after_an_unclean_start_requests_signed_before_it_are_refused() {
        let g = guard();
        g.refuse_signed_before(NOW + 500);
        let h = headers("a", "b", KEY, NOW - 20_000, 30);
        assert_eq!(
            denied(g.check_signed(&parts(&h, b"body"), Signers::Members, NOW + 600)),
            Denied::SignedBeforeStart
        );
        // The start's own second too: it may have been the crash's.
        let h = headers("a", "b", KEY, NOW + 900, 31);
        assert_eq!(
            denied(g.check_signed(&parts(&h, b"body"), Signers::Members, NOW + 950)),
            Denied::SignedBeforeStart
        );
        let h = headers("a", "b", KEY, NOW + 1000, 32);
        assert!(g
            .check_signed(&parts(&h, b"body"), Signers::Members, NOW + 1000)
            .is_ok());
    }

    #[test]
    fn a_restored_book_refuses_the_replays_it_remembers() {
        let g = guard();
        let h = headers("a", "b", KEY, NOW, 40);
        assert!(g
            .check_signed(&parts(&h, b"body"), Signers::Members, NOW)
            .is_ok());
        let saved = g.saved_nonces(NOW + 1);
        let next = guard();
        assert_eq!(next.restore_nonces(&saved, NOW + 2000), Ok(1));
        assert_eq!(
            denied(next.check_signed(&parts(&h, b"body"), Signers::Members, NOW + 2000)),
            Denied::ReplayedNonce
        );
    }

    #[test]
    fn tokens_gate_the_client_api() {
        let g = guard();
        let none = SignedParts::default();
        let check = |auth: Option<&str>, write: bool| {
            g.check_client(auth, &none, write, NOW, true)
                .map_err(|r| r.reason)
        };
        assert_eq!(check(None, false), Err(Denied::MissingToken));
        assert_eq!(
            check(Some("Bearer nope-nope-nope-nope"), false),
            Err(Denied::BadToken)
        );
        assert_eq!(check(Some("Basic abc"), false), Err(Denied::BadToken));
        assert_eq!(check(Some("Bearer reader-token-0123456"), false), Ok(()));
        assert_eq!(
            check(Some("Bearer reader-token-0123456"), true),
            Err(Denied::ReadOnlyToken)
        );
        assert_eq!(check(Some("Bearer writer-token-0123456"), true), Ok(()));
        // The operator signs instead of holding a token.
        let h = peer_headers(OPERATOR_ID, KEY, 9);
        assert_eq!(
            g.check_client(None, &parts(&h, b"body"), true, NOW, true),
            Ok(())
        );
        // Without secrets, all is open.
        let open = Guard::new("b", vec!["a".into(), "b".into()], Secrets::default());
        assert_eq!(open.check_client(None, &none, true, NOW, true), Ok(()));
        assert_eq!(
            open.check_signed(&none, Signers::Members, NOW),
            Ok(String::new())
        );
    }

    /// The headers of a POST of `body` to node b's peer route at NOW,
    /// signed as `id` with `key`.
    fn peer_headers(id: &str, key: &[u8], nonce: u8) -> Vec<(&'static str, String)> {
        Signer::new(id, Keyring::single(key)).headers_with(
            "POST",
            "/v1/peer/message",
            "",
            "b",
            b"body",
            NOW,
            &[nonce; 16],
        )
    }

    #[test]
    fn the_headers_are_checked_before_the_body_and_the_mac_after() {
        let g = guard();
        let pre = |h: &[(&'static str, String)], now: u64| {
            g.precheck_signed(&parts(h, b""), Signers::Members, now)
                .map_err(|r| r.reason)
        };
        assert_eq!(pre(&[], NOW), Err(Denied::MissingSignature));
        let forged = peer_headers("a", b"not-the-key", 3);
        // Well formed, from a member, for this node, in time: the head
        // passes; the MAC, over the body, does not.
        assert_eq!(pre(&forged, NOW), Ok(()));
        assert_eq!(
            g.check_signed(&parts(&forged, b"body"), Signers::Members, NOW)
                .map_err(|r| r.reason),
            Err(Denied::BadSignature)
        );
        assert_eq!(
            pre(&forged, NOW + (MAX_SKEW_S + 5) * 1000),
            Err(Denied::StaleTimestamp)
        );
        let stranger = peer_headers("z", KEY, 4);
        assert_eq!(pre(&stranger, NOW), Err(Denied::UnknownNode));
        // A token is checked wholly before the body.
        assert_eq!(
            g.check_client(
                Some("Bearer nope-nope-nope-nope"),
                &parts(&[], b""),
                true,
                NOW,
                false
            )
            .map_err(|r| r.reason),
            Err(Denied::BadToken)
        );
    }
}
