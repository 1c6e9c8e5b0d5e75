//! Why a request was refused ([`Denied`], [`Refused`]), and [`RefusalLog`],
//! which counts refusals and logs them without letting a flood through.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

/// Why a request was refused before it reached the protocol or the store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Denied {
    /// No signature headers at all, where a signature is needed.
    MissingSignature,
    /// Signature headers incomplete or malformed, or a MAC that matches
    /// no key.
    BadSignature,
    /// The signer's id is not a ring member (nor the operator, where one
    /// may call).
    UnknownNode,
    /// Signed for another node.
    WrongNode,
    /// The signer is the operator, on a route for members only.
    NotAMember,
    /// The time is more than [`MAX_SKEW_S`](super::MAX_SKEW_S) away from ours.
    StaleTimestamp,
    /// A nonce this sender used before.
    ReplayedNonce,
    /// Signed at or before this process started, after a start that found
    /// no nonce book saved by a clean stop: it may have been accepted
    /// before a crash, and its nonce is forgotten.
    SignedBeforeStart,
    /// The sender's nonce book is full (see
    /// [`MAX_NONCES_PER_SENDER`](super::MAX_NONCES_PER_SENDER)).
    NonceBookFull,
    /// No bearer token (nor signature) on `/v1/kv`.
    MissingToken,
    /// A bearer token that is not ours, or a malformed Authorization.
    BadToken,
    /// A read-only token, used to write.
    ReadOnlyToken,
}

impl Denied {
    /// Every reason, so each metric series exists from the start.
    pub const ALL: [Denied; 12] = [
        Denied::MissingSignature,
        Denied::BadSignature,
        Denied::UnknownNode,
        Denied::WrongNode,
        Denied::NotAMember,
        Denied::StaleTimestamp,
        Denied::ReplayedNonce,
        Denied::SignedBeforeStart,
        Denied::NonceBookFull,
        Denied::MissingToken,
        Denied::BadToken,
        Denied::ReadOnlyToken,
    ];

    /// A short stable name, for logs, metrics and HTTP bodies.
    pub fn name(self) -> &'static str {
        match self {
            Denied::MissingSignature => "missing_signature",
            Denied::BadSignature => "bad_signature",
            Denied::UnknownNode => "unknown_node",
            Denied::WrongNode => "wrong_node",
            Denied::NotAMember => "not_a_member",
            Denied::StaleTimestamp => "stale_timestamp",
            Denied::ReplayedNonce => "replayed_nonce",
            Denied::SignedBeforeStart => "signed_before_start",
            Denied::NonceBookFull => "nonce_book_full",
            Denied::MissingToken => "missing_token",
            Denied::BadToken => "bad_token",
            Denied::ReadOnlyToken => "read_only_token",
        }
    }

    /// The HTTP status: 401 when the caller did not prove who it is, 403
    /// when it did (or named itself) and may not do this, 503 when it
    /// should come back later.
    pub fn status(self) -> u16 {
        match self {
            Denied::MissingSignature
            | Denied::BadSignature
            | Denied::StaleTimestamp
            | Denied::ReplayedNonce
            | Denied::SignedBeforeStart
            | Denied::MissingToken
            | Denied::BadToken => 401,
            Denied::UnknownNode
            | Denied::WrongNode
            | Denied::NotAMember
            | Denied::ReadOnlyToken => 403,
            Denied::NonceBookFull => 503,
        }
    }
}

/// A refusal with what to tell the caller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refused {
    /// Why.
    pub reason: Denied,
    /// What is wrong, and what to do about it.
    pub message: String,
}

pub(super) fn refused(reason: Denied, message: impl Into<String>) -> Refused {
    Refused {
        reason,
        message: message.into(),
    }
}

/// Counts refusals by reason and logs them, at most one line per reason
/// a second (a flood of bad requests must not flood the log too).
#[derive(Default)]
pub struct RefusalLog {
    counts: Mutex<BTreeMap<&'static str, u64>>,
    last_logged: Mutex<HashMap<&'static str, (u64, u64)>>,
}

impl RefusalLog {
    /// Counts and (rate-limited) logs one refusal.
    pub fn note(&self, reason: &'static str, what: &str, now_ms: u64) {
        *self
            .counts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(reason)
            .or_default() += 1;
        let mut last = self.last_logged.lock().unwrap_or_else(|p| p.into_inner());
        let slot = last.entry(reason).or_insert((0, 0));
        if now_ms.saturating_sub(slot.0) >= 1000 {
            let hidden = slot.1;
            *slot = (now_ms, 0);
            drop(last);
            if hidden > 0 {
                log::warn!("refused ({reason}): {what} [and {hidden} more like it, not logged]");
            } else {
                log::warn!("refused ({reason}): {what}");
            }
        } else {
            slot.1 += 1;
        }
    }

    /// The counts so far.
    pub fn counts(&self) -> BTreeMap<&'static str, u64> {
        self.counts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}
