//! What the service sends to other nodes, and the trait through which it
//! sends it: the HTTP edge implements [`Transport`], so the service never
//! names the HTTP libraries.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::auth::Signer;

/// A node's digest as the sync report shows it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct NodeDigest {
    /// Node id.
    pub id: String,
    /// Root of its digest tree, 16 hex digits.
    pub root: String,
    /// Values stored.
    pub keys: u64,
    /// Tombstones stored.
    pub tombstones: u64,
    /// The topology epoch it runs (missing from a node of an older version).
    #[serde(default)]
    pub epoch: Option<u64>,
}

/// What the cluster view reads of a member's `/v1/status`. Everything but
/// the id may be missing, so that a member of an older or newer version
/// still shows with what it tells.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct MemberStatus {
    /// Its id.
    pub id: String,
    /// "ring" or "fallback".
    #[serde(default)]
    pub mode: String,
    /// Why.
    #[serde(default)]
    pub mode_reason: String,
    /// The cycle in which the mode last changed.
    #[serde(default)]
    pub mode_since_cycle: u64,
    /// Its current cycle by its clock.
    #[serde(default)]
    pub cycle: u64,
    /// The last cycle it ran.
    #[serde(default)]
    pub last_cycle: Option<u64>,
    /// Its clock when it answered.
    #[serde(default)]
    pub now_ms: Option<u64>,
    /// Root of its digest tree.
    #[serde(default)]
    pub digest_root: String,
    /// Values stored.
    #[serde(default)]
    pub keys: u64,
    /// Tombstones stored.
    #[serde(default)]
    pub tombstones: u64,
    /// Entries waiting to be passed on.
    #[serde(default)]
    pub relay_queue: Option<u64>,
    /// The largest staleness of its peers, ms, as it reckons them (none
    /// from a member that does not say).
    #[serde(default)]
    pub staleness_max_ms: Option<u64>,
    /// The membership epoch, copied as the member gives it (members that
    /// have none show null).
    #[serde(default)]
    pub epoch: Option<serde_json::Value>,
    /// The other members as it sees them.
    #[serde(default)]
    pub peers: Vec<MemberPeer>,
}

/// Another member as one member's status shows it.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct MemberPeer {
    /// Its id.
    pub id: String,
    /// alive, suspect or failed.
    #[serde(default)]
    pub state: String,
}

/// One hop: node `from` runs a sync exchange with node `to`. Nodes are
/// named by id, not ring position: during a rolling ring change the
/// coordinator and the hop's ends may run rings of different epochs, in
/// which the same node stands at different positions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hop {
    /// Id of the node that pushes.
    pub from: String,
    /// Id of its peer.
    pub to: String,
    /// Push-pull (random rounds) instead of a one-way sync push.
    pub push_pull: bool,
}

/// What a hop did, as the hop endpoint answers.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, Default)]
pub struct HopResult {
    /// It completed.
    pub ok: bool,
    /// Entries moved.
    pub entries: u64,
    /// Bytes moved.
    pub bytes: u64,
}

/// Why a request to a peer failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerError {
    /// What happened, with the URL.
    pub message: String,
    /// The peer refused our credentials (401 or 403 before its core saw
    /// the request): most likely the nodes' secrets differ.
    pub refused_credentials: bool,
    /// We refused the peer's reply before using it, and why (one of
    /// [`REPLY_REFUSALS`]): it failed its signature check or broke a limit.
    pub refused_reply: Option<&'static str>,
}

/// A reply to a signed request came without the peer's reply signature.
pub const REPLY_UNSIGNED: &str = "missing_signature";
/// A reply's signature is not the peer's MAC of that reply to our request:
/// forged, or changed on the way.
pub const REPLY_BAD_SIGNATURE: &str = "bad_signature";
/// A reply longer than [`max_peer_body`]: read no further.
pub const REPLY_TOO_LARGE: &str = "too_large";
/// Every reason a reply is refused, so each metric series exists from the
/// start.
pub const REPLY_REFUSALS: [&str; 3] = [REPLY_UNSIGNED, REPLY_BAD_SIGNATURE, REPLY_TOO_LARGE];

/// Largest peer message, request or reply, for a ring whose values are at
/// most `max_value` bytes. A batch is about 1 MiB of entries plus a
/// digest, and may hold one value beyond it; 64 MiB leaves room for a
/// maximal batch of large values, and with larger values two of them and
/// 8 MiB more.
pub fn max_peer_body(max_value: usize) -> u64 {
    const AT_LEAST: u64 = 64 << 20;
    AT_LEAST.max((max_value as u64).saturating_mul(2).saturating_add(8 << 20))
}

impl PeerError {
    /// A failure that says nothing of our credentials.
    pub fn plain(message: String) -> PeerError {
        PeerError {
            message,
            refused_credentials: false,
            refused_reply: None,
        }
    }

    /// A reply we refused, for `reason` (one of [`REPLY_REFUSALS`]).
    pub fn reply_refused(reason: &'static str, message: String) -> PeerError {
        PeerError {
            refused_reply: Some(reason),
            ..PeerError::plain(message)
        }
    }
}

impl std::fmt::Display for PeerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// The signer in force now, asked when a reply comes (see
/// [`Call::reply_keys`]).
#[derive(Clone, Copy, Default)]
pub struct ReplyKeys<'a>(pub Option<&'a (dyn Fn() -> Option<Signer> + Send + Sync)>);

impl ReplyKeys<'_> {
    /// The signer in force now, if the caller can tell.
    pub fn now(&self) -> Option<Signer> {
        self.0.and_then(|f| f())
    }
}

impl std::fmt::Debug for ReplyKeys<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "ReplyKeys(now)"
        } else {
            "ReplyKeys(as signed)"
        })
    }
}

/// Where one request goes, and how it is sent.
#[derive(Clone, Copy, Debug)]
pub struct Call<'a> {
    /// The peer's address: host:port, or a URL.
    pub addr: &'a str,
    /// The peer's node id, which a signature names.
    pub to: &'a str,
    /// How long to wait for the whole answer.
    pub timeout: Duration,
    /// Signs the request with the cluster secret, when there is one.
    pub signer: Option<&'a Signer>,
    /// Longest reply read: a longer one is refused unread
    /// ([`max_peer_body`]).
    pub max_reply: u64,
    /// The keyring a reply is checked against, as it is when the reply
    /// comes: a reload may replace the one the request was signed with
    /// while the request is out. Without it, that one.
    pub reply_keys: ReplyKeys<'a>,
}

/// The answer to a [`Call`], to be awaited.
pub type Reply<'a, T> = Pin<Box<dyn Future<Output = Result<T, PeerError>> + Send + 'a>>;

/// How a node reaches its peers.
pub trait Transport: Send + Sync {
    /// Sends an encoded peer request and returns the encoded reply: on
    /// success, and also when the peer's protocol refused the request (its
    /// answer then carries the refusal for our core).
    fn message<'a>(&'a self, call: Call<'a>, payload: Vec<u8>) -> Reply<'a, Vec<u8>>;

    /// The peer's digest.
    fn digest<'a>(&'a self, call: Call<'a>) -> Reply<'a, NodeDigest>;

    /// Asks the peer to run one hop of a manual sync (it is `hop.from`).
    fn hop<'a>(&'a self, call: Call<'a>, hop: Hop) -> Reply<'a, HopResult>;

    /// The peer's status, as far as the cluster view reads it. A transport
    /// that cannot fetch it (a test's) says so, and the peer shows as
    /// unreachable with that reason.
    fn status<'a>(&'a self, call: Call<'a>) -> Reply<'a, MemberStatus> {
        let message = format!("{}: this transport fetches no status", call.addr);
        Box::pin(std::future::ready(Err(PeerError::plain(message))))
    }
}

/// A transport that reaches no one: every call fails at once, as to a
/// peer that is down. For a node opened in-process with no peers to reach.
#[derive(Clone, Copy, Debug, Default)]
pub struct Offline;

impl Offline {
    fn fail<'a, T: Send + 'a>(call: Call<'a>) -> Reply<'a, T> {
        let message = format!("{}: this node was opened without a transport", call.addr);
        Box::pin(std::future::ready(Err(PeerError::plain(message))))
    }
}

impl Transport for Offline {
    fn message<'a>(&'a self, call: Call<'a>, _payload: Vec<u8>) -> Reply<'a, Vec<u8>> {
        Offline::fail(call)
    }

    fn digest<'a>(&'a self, call: Call<'a>) -> Reply<'a, NodeDigest> {
        Offline::fail(call)
    }

    fn hop<'a>(&'a self, call: Call<'a>, _hop: Hop) -> Reply<'a, HopResult> {
        Offline::fail(call)
    }
}
