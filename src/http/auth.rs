//! Who may call what: requests signed with the cluster secret between
//! members (and operators who hold it), bearer tokens for the client API.
//!
//! Plain code, with no HTTP library and no clock: the server's gate
//! (`server.rs`) and the client (`client.rs`) hand it a request's parts and
//! the time.
//!
//! **Signed requests.** The signer sends five headers: its id
//! ([`HEADER_NODE`]), the id of the node it calls ([`HEADER_TO`]), the unix
//! time in seconds ([`HEADER_TIME`]), a fresh random nonce
//! ([`HEADER_NONCE`]) and [`HEADER_SIGNATURE`], the hex HMAC-SHA256 under
//! the first key of the keyring of [`canonical`]: method, path, query, both
//! ids, time, nonce and the SHA-256 of the body. The receiver accepts a
//! request whose time is within [`MAX_SKEW_S`] of its own clock, whose MAC
//! matches under any key of its keyring (compared in constant time), and
//! whose nonce it has not seen from that sender; it remembers the nonce for
//! [`NONCE_TTL_MS`], which is as long as the request could be replayed.
//! Naming the receiver keeps a request captured on its way to one node from
//! being replayed to another, whose nonce book has not seen it.
//!
//! HMAC (RFC 2104) is written here over `sha2`, which the crate already
//! uses, in a dozen lines checked against the RFC 4231 test vectors, rather
//! than adding the `hmac` crate and its `digest` trait plumbing.

use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, RwLock};

use sha2::{Digest, Sha256};

use crate::topology::Cluster;

/// The signer's id: a ring member's, or [`OPERATOR_ID`].
pub const HEADER_NODE: &str = "x-ringsync-node";
/// The id of the node the request is for.
pub const HEADER_TO: &str = "x-ringsync-to";
/// Unix time in seconds at signing.
pub const HEADER_TIME: &str = "x-ringsync-time";
/// A random value used once: 32 hex digits.
pub const HEADER_NONCE: &str = "x-ringsync-nonce";
/// The MAC: 64 hex digits.
pub const HEADER_SIGNATURE: &str = "x-ringsync-signature";

/// The id an operator's tool (the CLI, the demo, a test) signs as. It may
/// call the sync and client API with the cluster secret, never the peer
/// routes. It is not a valid node id (those are `[A-Za-z0-9_.-]`), so it
/// cannot clash with one.
pub const OPERATOR_ID: &str = "@operator";

/// How far a signed request's time may be from ours, either way. NTP keeps
/// LAN hosts within milliseconds; 30 s tolerates a host whose NTP is off
/// for a while and still bounds how long a captured request stays good.
pub const MAX_SKEW_S: u64 = 30;

/// How long a nonce is remembered. A request stamped up to MAX_SKEW_S
/// ahead of us, first seen then, stays within the window until 2 ×
/// MAX_SKEW_S later; remembering its nonce that long refuses every replay.
pub const NONCE_TTL_MS: u64 = 2 * MAX_SKEW_S * 1000;

/// Nonces remembered per sender, at most. Only requests whose MAC checked
/// out are remembered, so only a key holder can fill it: 100,000 in 60 s is
/// over 1,600 signed requests a second from one sender, far beyond what a
/// node sends (a few per cycle, plus relays). Beyond it, requests are
/// refused (503) rather than let an old nonce be forgotten early.
pub const MAX_NONCES_PER_SENDER: usize = 100_000;

/// Shortest key accepted in a keyring: 128 bits of secret as text.
pub const MIN_KEY_BYTES: usize = 16;

/// Shortest bearer token accepted in a tokens file.
pub const MIN_TOKEN_BYTES: usize = 16;

/// Random bytes in a fresh secret: 256 bits, as 64 hex digits.
const SECRET_BYTES: usize = 32;

/// SHA-256's block size, the HMAC padding length (RFC 2104).
const BLOCK: usize = 64;

/// HMAC-SHA256 of `msg` under `key` (RFC 2104).
pub fn hmac_sha256(key: &[u8], msg: &[u8]) -> [u8; 32] {
    let mut k = [0u8; BLOCK];
    if key.len() > BLOCK {
        k[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let mut inner = Sha256::new();
    inner.update(k.map(|b| b ^ 0x36));
    inner.update(msg);
    let mut outer = Sha256::new();
    outer.update(k.map(|b| b ^ 0x5c));
    outer.update(inner.finalize());
    outer.finalize().into()
}

/// Equal slices, in time that depends on their lengths only.
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

/// Lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).ok())
        .collect()
}

/// `n` bytes from the kernel's random source.
pub fn random_bytes(n: usize) -> Result<Vec<u8>, String> {
    let mut out = vec![0u8; n];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut out))
        .map_err(|e| format!("cannot read /dev/urandom: {e}"))?;
    Ok(out)
}

/// The text a request's MAC is taken over. Every field is free of
/// newlines (the URL library escapes them, ids and nonces are checked),
/// so the fields cannot run into each other.
#[allow(clippy::too_many_arguments)]
pub fn canonical(
    method: &str,
    path: &str,
    query: &str,
    from: &str,
    to: &str,
    time: &str,
    nonce: &str,
    body: &[u8],
) -> String {
    format!(
        "RINGSYNC-HMAC-SHA256\n{}\n{path}\n{query}\n{from}\n{to}\n{time}\n{nonce}\n{}",
        method.to_ascii_uppercase(),
        hex(&Sha256::digest(body))
    )
}

/// The cluster's keys: sign with the first, accept any.
#[derive(Clone, PartialEq, Eq)]
pub struct Keyring {
    keys: Vec<Vec<u8>>,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Keyring({} keys)", self.keys.len())
    }
}

impl Keyring {
    /// Reads a keyring: one key per line, the line's text (trimmed) being
    /// the key; blank lines and `#` comments are skipped. `Ok(None)` when
    /// there is no key at all (an empty file, or systemd's lone newline for
    /// a missing credential).
    pub fn parse(text: &str, source: &str) -> Result<Option<Keyring>, String> {
        let mut keys: Vec<Vec<u8>> = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            if line.len() < MIN_KEY_BYTES {
                return Err(format!(
                    "{source}:{}: this key is {} bytes; a key needs at least {MIN_KEY_BYTES} (make one with `ringsync secret new`)",
                    i + 1,
                    line.len()
                ));
            }
            keys.push(line.as_bytes().to_vec());
        }
        Ok((!keys.is_empty()).then_some(Keyring { keys }))
    }

    /// A keyring of one key (tests, tools).
    pub fn single(key: &[u8]) -> Keyring {
        Keyring {
            keys: vec![key.to_vec()],
        }
    }

    /// How many keys it holds.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Never true: a keyring holds at least one key.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Whether `mac` is the MAC of `text` under any key. Every key is
    /// tried, each compared in constant time.
    fn accepts(&self, text: &str, mac: &[u8]) -> bool {
        self.keys.iter().fold(false, |ok, k| {
            ct_eq(&hmac_sha256(k, text.as_bytes()), mac) | ok
        })
    }
}

/// What a bearer token may do on `/v1/kv`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// GET only.
    Read,
    /// GET, PUT and DELETE.
    Write,
}

/// The client API's bearer tokens. Only their SHA-256 is kept, and a
/// lookup compares against every one in constant time.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Tokens {
    hashed: Vec<([u8; 32], Access)>,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Tokens({})", self.hashed.len())
    }
}

impl Tokens {
    /// Reads a tokens file: `TOKEN read` or `TOKEN write` per line; blank
    /// lines and `#` comments are skipped. `Ok(None)` when it holds no
    /// token (an empty file, or systemd's lone newline).
    pub fn parse(text: &str, source: &str) -> Result<Option<Tokens>, String> {
        let mut hashed: Vec<([u8; 32], Access)> = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let at = |m: String| format!("{source}:{}: {m}", i + 1);
            let mut words = line.split_whitespace();
            let (Some(token), Some(access), None) = (words.next(), words.next(), words.next())
            else {
                return Err(at(
                    "write each line as `TOKEN read` or `TOKEN write`".to_string()
                ));
            };
            let access = match access {
                "read" => Access::Read,
                "write" => Access::Write,
                other => {
                    return Err(at(format!(
                        "access {other:?} is neither `read` nor `write`"
                    )))
                }
            };
            if token.len() < MIN_TOKEN_BYTES {
                return Err(at(format!(
                    "this token is {} bytes; a token needs at least {MIN_TOKEN_BYTES} (make one with `ringsync secret new`)",
                    token.len()
                )));
            }
            let h: [u8; 32] = Sha256::digest(token.as_bytes()).into();
            if hashed.iter().any(|(x, _)| *x == h) {
                return Err(at("this token is listed twice".to_string()));
            }
            hashed.push((h, access));
        }
        Ok((!hashed.is_empty()).then_some(Tokens { hashed }))
    }

    /// What `token` may do, if it is one of ours.
    pub fn lookup(&self, token: &str) -> Option<Access> {
        let h: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        self.hashed.iter().fold(
            None,
            |found, (x, access)| {
                if ct_eq(x, &h) {
                    Some(*access)
                } else {
                    found
                }
            },
        )
    }
}

/// The secrets a node runs with, and where each came from.
#[derive(Clone, Debug, Default)]
pub struct Secrets {
    /// The cluster keyring; `None` runs without signatures.
    pub keyring: Option<Keyring>,
    /// The client API's tokens; `None` leaves `/v1/kv` to signed requests
    /// (or open, without a keyring).
    pub tokens: Option<Tokens>,
    /// Where the keyring was read from, for the log.
    pub keyring_from: Option<PathBuf>,
    /// Where the tokens were read from.
    pub tokens_from: Option<PathBuf>,
}

/// Reads one secret file: the systemd credential `name` when it holds
/// something, else the file the topology names. A named file that cannot
/// be read, or is blank, is an error: the operator asked for it.
fn read_secret_file<T>(
    credentials: Option<&Path>,
    name: &str,
    configured: Option<&Path>,
    key: &str,
    parse: impl Fn(&str, &str) -> Result<Option<T>, String>,
) -> Result<(Option<T>, Option<PathBuf>), String> {
    if let Some(dir) = credentials {
        let path = dir.join(name);
        if let Ok(text) = std::fs::read_to_string(&path) {
            // systemd hands a missing credential over as a lone newline
            // (the unit's SetCredential= fallback): no secret there.
            if let Some(v) = parse(&text, &path.display().to_string())? {
                return Ok((Some(v), Some(path)));
            }
        }
    }
    let Some(path) = configured else {
        return Ok((None, None));
    };
    let text = std::fs::read_to_string(path).map_err(|e| {
        format!(
            "cannot read {key} {} ({e}); check the path and that this user may read it",
            path.display()
        )
    })?;
    match parse(&text, &path.display().to_string())? {
        Some(v) => Ok((Some(v), Some(path.to_path_buf()))),
        None => Err(format!(
            "{key} {} holds nothing; put the secret in it (`ringsync secret new --out FILE`) or remove {key} from the topology",
            path.display()
        )),
    }
}

impl Secrets {
    /// Loads the keyring and the tokens: each from systemd's credential
    /// (`secret`, `tokens` in `credentials`, i.e. `$CREDENTIALS_DIRECTORY`)
    /// when it is there and not blank, else from the topology's
    /// `secret_file` and `tokens_file`.
    pub fn load(cluster: &Cluster, credentials: Option<&Path>) -> Result<Secrets, String> {
        let (keyring, keyring_from) = read_secret_file(
            credentials,
            "secret",
            cluster.secret_file.as_deref(),
            "secret_file",
            Keyring::parse,
        )?;
        let (tokens, tokens_from) = read_secret_file(
            credentials,
            "tokens",
            cluster.tokens_file.as_deref(),
            "tokens_file",
            Tokens::parse,
        )?;
        Ok(Secrets {
            keyring,
            tokens,
            keyring_from,
            tokens_from,
        })
    }

    /// `$CREDENTIALS_DIRECTORY`, if systemd set it.
    pub fn credentials_dir() -> Option<PathBuf> {
        std::env::var_os("CREDENTIALS_DIRECTORY")
            .filter(|d| !d.is_empty())
            .map(PathBuf::from)
    }
}

/// Signs requests as one id with the first key of a keyring.
#[derive(Clone, Debug)]
pub struct Signer {
    id: String,
    keyring: Keyring,
}

impl Signer {
    /// A signer that signs as `id`.
    pub fn new(id: &str, keyring: Keyring) -> Signer {
        Signer {
            id: id.to_string(),
            keyring,
        }
    }

    /// A signer for an operator's tool, from a keyring file.
    pub fn operator_from_file(path: &Path) -> Result<Signer, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read the secret file {}: {e}", path.display()))?;
        let keyring = Keyring::parse(&text, &path.display().to_string())?
            .ok_or_else(|| format!("the secret file {} holds no key", path.display()))?;
        Ok(Signer::new(OPERATOR_ID, keyring))
    }

    /// The id it signs as.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The headers that sign a request to node `to` at `now_ms`, with
    /// `nonce` (16 random bytes in practice).
    #[allow(clippy::too_many_arguments)]
    pub fn headers_with(
        &self,
        method: &str,
        path: &str,
        query: &str,
        to: &str,
        body: &[u8],
        now_ms: u64,
        nonce: &[u8],
    ) -> Vec<(&'static str, String)> {
        let time = (now_ms / 1000).to_string();
        let nonce = hex(nonce);
        let text = canonical(method, path, query, &self.id, to, &time, &nonce, body);
        let mac = hmac_sha256(&self.keyring.keys[0], text.as_bytes());
        vec![
            (HEADER_NODE, self.id.clone()),
            (HEADER_TO, to.to_string()),
            (HEADER_TIME, time),
            (HEADER_NONCE, nonce),
            (HEADER_SIGNATURE, hex(&mac)),
        ]
    }

    /// As [`Signer::headers_with`], with a fresh nonce.
    pub fn headers(
        &self,
        method: &str,
        path: &str,
        query: &str,
        to: &str,
        body: &[u8],
        now_ms: u64,
    ) -> Result<Vec<(&'static str, String)>, String> {
        let nonce = random_bytes(16)?;
        Ok(self.headers_with(method, path, query, to, body, now_ms, &nonce))
    }
}

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
    /// The time is more than [`MAX_SKEW_S`] away from ours.
    StaleTimestamp,
    /// A nonce this sender used before.
    ReplayedNonce,
    /// The sender's nonce book is full (see [`MAX_NONCES_PER_SENDER`]).
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
    pub const ALL: [Denied; 11] = [
        Denied::MissingSignature,
        Denied::BadSignature,
        Denied::UnknownNode,
        Denied::WrongNode,
        Denied::NotAMember,
        Denied::StaleTimestamp,
        Denied::ReplayedNonce,
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

fn refused(reason: Denied, message: impl Into<String>) -> Refused {
    Refused {
        reason,
        message: message.into(),
    }
}

/// The parts of a request that a signature covers, as received.
#[derive(Clone, Copy, Debug, Default)]
pub struct SignedParts<'a> {
    /// HTTP method.
    pub method: &'a str,
    /// URL path, as the server parsed it.
    pub path: &'a str,
    /// URL query without `?`, empty when there is none.
    pub query: &'a str,
    /// The body.
    pub body: &'a [u8],
    /// [`HEADER_NODE`].
    pub node: Option<&'a str>,
    /// [`HEADER_TO`].
    pub to: Option<&'a str>,
    /// [`HEADER_TIME`].
    pub time: Option<&'a str>,
    /// [`HEADER_NONCE`].
    pub nonce: Option<&'a str>,
    /// [`HEADER_SIGNATURE`].
    pub signature: Option<&'a str>,
}

impl SignedParts<'_> {
    fn any_signature_header(&self) -> bool {
        self.node.is_some()
            || self.to.is_some()
            || self.time.is_some()
            || self.nonce.is_some()
            || self.signature.is_some()
    }
}

/// Who may sign a route.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Signers {
    /// Ring members only: the peer routes.
    Members,
    /// Members and the operator: sync and the client API.
    MembersAndOperator,
}

/// Nonces seen from one sender, with when each may be forgotten.
#[derive(Default)]
struct NonceBook {
    seen: HashMap<Vec<u8>, u64>,
    /// The earliest expiry in `seen`: nothing to sweep before then.
    next_sweep_ms: u64,
}

impl NonceBook {
    /// Records `nonce`; false if it is already there.
    fn insert(&mut self, nonce: Vec<u8>, now_ms: u64) -> Result<(), Denied> {
        if now_ms >= self.next_sweep_ms && !self.seen.is_empty() {
            self.seen.retain(|_, exp| *exp > now_ms);
            self.next_sweep_ms = self.seen.values().copied().min().unwrap_or(0);
        }
        if self.seen.contains_key(&nonce) {
            return Err(Denied::ReplayedNonce);
        }
        if self.seen.len() >= MAX_NONCES_PER_SENDER {
            return Err(Denied::NonceBookFull);
        }
        let exp = now_ms + NONCE_TTL_MS;
        if self.seen.is_empty() {
            self.next_sweep_ms = exp;
        }
        self.seen.insert(nonce, exp);
        Ok(())
    }
}

/// The server's side: checks signatures and tokens, remembers nonces, and
/// counts what it refused. Its secrets can be swapped while it serves
/// (SIGHUP).
pub struct Guard {
    me: String,
    members: Vec<String>,
    secrets: RwLock<Secrets>,
    nonces: Mutex<HashMap<String, NonceBook>>,
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
            members,
            secrets: RwLock::new(secrets),
            nonces: Mutex::new(HashMap::new()),
        }
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

        let member = self.members.contains(&node);
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
        let nonce_bytes = match unhex(&nonce) {
            Some(b) if (8..=32).contains(&b.len()) => b,
            _ => {
                return Err(refused(
                    Denied::BadSignature,
                    format!("{HEADER_NONCE} must be 16 to 64 hex digits"),
                ))
            }
        };
        let Some(mac) = unhex(&signature).filter(|m| m.len() == 32) else {
            return Err(refused(
                Denied::BadSignature,
                format!("{HEADER_SIGNATURE} must be 64 hex digits"),
            ));
        };
        let text = canonical(
            parts.method,
            parts.path,
            parts.query,
            &node,
            &to,
            &time,
            &nonce,
            parts.body,
        );
        if !keyring.accepts(&text, &mac) {
            return Err(refused(
                Denied::BadSignature,
                "the signature matches no key of this node's keyring (a different secret, or the request was changed on the way)",
            ));
        }
        drop(secrets);
        let mut books = self.nonces.lock().unwrap_or_else(|p| p.into_inner());
        books
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

    /// Checks a client API request: a bearer token in `authorization`, or
    /// else a signature. `write` is true for anything but a read. Without
    /// a keyring or tokens, everything passes.
    pub fn check_client(
        &self,
        authorization: Option<&str>,
        parts: &SignedParts<'_>,
        write: bool,
        now_ms: u64,
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
            return self
                .check_signed(parts, Signers::MembersAndOperator, now_ms)
                .map(|_| ());
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

/// `ringsync secret new`: a fresh random secret (64 hex digits) written
/// to `out` (mode 0600, never over an existing file), or printed.
pub fn secret_new(out: Option<&Path>) -> Result<(), String> {
    let secret = format!("{}\n", hex(&random_bytes(SECRET_BYTES)?));
    let Some(path) = out else {
        print!("{secret}");
        return Ok(());
    };
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                format!(
                    "{} exists, and a secret is never overwritten; to rotate, add a new key as a line of it (see README: rotating the secret)",
                    path.display()
                )
            } else {
                format!("cannot create {}: {e}", path.display())
            }
        })?;
    f.write_all(secret.as_bytes())
        .and_then(|_| f.sync_all())
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unhex_str(s: &str) -> Vec<u8> {
        unhex(s).expect("hex")
    }

    /// RFC 4231, test cases 1 to 7 (case 5 truncates the MAC to 128 bits).
    #[test]
    fn hmac_matches_rfc_4231() {
        let cases: [(&[u8], &[u8], &str); 7] = [
            (
                &[0x0b; 20],
                b"Hi There",
                "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7",
            ),
            (
                b"Jefe",
                b"what do ya want for nothing?",
                "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843",
            ),
            (
                &[0xaa; 20],
                &[0xdd; 50],
                "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe",
            ),
            (
                &unhex_str("0102030405060708090a0b0c0d0e0f10111213141516171819"),
                &[0xcd; 50],
                "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b",
            ),
            (
                &[0x0c; 20],
                b"Test With Truncation",
                "a3b6167473100ee06e0c796c2955552b",
            ),
            (
                &[0xaa; 131],
                b"Test Using Larger Than Block-Size Key - Hash Key First",
                "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54",
            ),
            (
                &[0xaa; 131],
                b"This is a test using a larger than block-size key and a larger than block-size data. The key needs to be hashed before being used by the HMAC algorithm.",
                "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2",
            ),
        ];
        for (i, (key, data, want)) in cases.iter().enumerate() {
            let mac = hex(&hmac_sha256(key, data));
            assert!(mac.starts_with(want), "case {}: {mac} != {want}", i + 1);
        }
    }

    #[test]
    fn ct_eq_compares() {
        assert!(ct_eq(b"abc", b"abc"));
        assert!(!ct_eq(b"abc", b"abd"));
        assert!(!ct_eq(b"abc", b"ab"));
        assert!(ct_eq(b"", b""));
    }

    #[test]
    fn keyring_parsing() {
        assert_eq!(Keyring::parse("", "s"), Ok(None));
        assert_eq!(Keyring::parse("\n", "s"), Ok(None));
        assert_eq!(Keyring::parse("  \n# only a comment\n", "s"), Ok(None));
        let k = Keyring::parse("0123456789abcdef0123\n\n  fedcba9876543210fedc  \n", "s")
            .unwrap()
            .unwrap();
        assert_eq!(k.len(), 2);
        assert_eq!(k.keys[1], b"fedcba9876543210fedc");
        let e = Keyring::parse("ok-key-ok-key-ok-key\nshort\n", "f").unwrap_err();
        assert!(e.starts_with("f:2: "), "{e}");
        assert!(e.contains("at least 16"), "{e}");
    }

    #[test]
    fn token_parsing_and_lookup() {
        assert_eq!(Tokens::parse("\n", "t"), Ok(None));
        let t = Tokens::parse(
            "# clients\nreader-token-0123456 read\nwriter-token-0123456   write\n",
            "t",
        )
        .unwrap()
        .unwrap();
        assert_eq!(t.lookup("reader-token-0123456"), Some(Access::Read));
        assert_eq!(t.lookup("writer-token-0123456"), Some(Access::Write));
        assert_eq!(t.lookup("writer-token-0123457"), None);
        assert_eq!(t.lookup(""), None);
        for (bad, says) in [
            ("tok-tok-tok-tok-tok", "`TOKEN read`"),
            ("tok-tok-tok-tok-tok admin", "neither"),
            ("short read", "at least 16"),
            ("tok-tok-tok-tok-tok read extra", "`TOKEN read`"),
            (
                "tok-tok-tok-tok-tok read\ntok-tok-tok-tok-tok write",
                "twice",
            ),
        ] {
            let e = Tokens::parse(bad, "t").unwrap_err();
            assert!(e.contains(says), "{bad:?}: {e}");
            assert!(e.starts_with("t:"), "{e}");
        }
    }

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
    fn nonces_are_forgotten_after_their_ttl() {
        let mut book = NonceBook::default();
        assert!(book.insert(vec![1], NOW).is_ok());
        assert_eq!(book.insert(vec![1], NOW + 1), Err(Denied::ReplayedNonce));
        assert!(book.insert(vec![2], NOW + NONCE_TTL_MS - 1).is_ok());
        assert!(book.insert(vec![1], NOW + NONCE_TTL_MS + 1).is_ok());
        assert_eq!(book.seen.len(), 2, "the expired entry was swept");
    }

    #[test]
    fn tokens_gate_the_client_api() {
        let g = guard();
        let none = SignedParts::default();
        let check = |auth: Option<&str>, write: bool| {
            g.check_client(auth, &none, write, NOW)
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
        let h = Signer::new(OPERATOR_ID, Keyring::single(KEY)).headers_with(
            "POST",
            "/v1/peer/message",
            "",
            "b",
            b"body",
            NOW,
            &[9; 16],
        );
        assert_eq!(g.check_client(None, &parts(&h, b"body"), true, NOW), Ok(()));
        // Without secrets, all is open.
        let open = Guard::new("b", vec!["a".into(), "b".into()], Secrets::default());
        assert_eq!(open.check_client(None, &none, true, NOW), Ok(()));
        assert_eq!(
            open.check_signed(&none, Signers::Members, NOW),
            Ok(String::new())
        );
    }

    #[test]
    fn secret_files_come_from_credentials_first() {
        let dir = tempfile::tempdir().unwrap();
        let cred = dir.path().join("creds");
        std::fs::create_dir(&cred).unwrap();
        let file = dir.path().join("secret");
        std::fs::write(&file, "from-the-topology-file-0\n").unwrap();
        let mut cluster = crate::topology::Topology::parse(
            "[cluster]\nname = \"x\"\n[[node]]\nid = \"a\"\naddr = \"h:1\"\n[[node]]\nid = \"b\"\naddr = \"h:2\"\n",
            "t",
            None,
        )
        .unwrap()
        .cluster;
        cluster.secret_file = Some(file.clone());
        // systemd's lone newline: the topology's file is used.
        std::fs::write(cred.join("secret"), "\n").unwrap();
        let s = Secrets::load(&cluster, Some(&cred)).unwrap();
        assert_eq!(s.keyring_from.as_deref(), Some(file.as_path()));
        std::fs::write(cred.join("secret"), "from-the-credential-00\n").unwrap();
        let s = Secrets::load(&cluster, Some(&cred)).unwrap();
        assert_eq!(s.keyring_from, Some(cred.join("secret")));
        assert_eq!(s.keyring, Some(Keyring::single(b"from-the-credential-00")));
        assert!(s.tokens.is_none());
        // A named file that is missing or blank is an error.
        cluster.secret_file = Some(dir.path().join("missing"));
        assert!(Secrets::load(&cluster, None)
            .unwrap_err()
            .contains("cannot read secret_file"));
        std::fs::write(&file, "\n").unwrap();
        cluster.secret_file = Some(file);
        assert!(Secrets::load(&cluster, None)
            .unwrap_err()
            .contains("holds nothing"));
    }

    #[test]
    fn secret_new_writes_a_private_file_once() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret");
        secret_new(Some(&path)).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.trim().len(), 64);
        assert!(Keyring::parse(&text, "s").unwrap().is_some());
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert!(secret_new(Some(&path))
            .unwrap_err()
            .contains("never overwritten"));
        assert_eq!(std::fs::read_to_string(&path).unwrap(), text);
    }
}
