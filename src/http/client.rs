//! Outgoing HTTP: peer requests, sync hops, and the CLI's API calls, each
//! signed with the cluster secret when there is one.

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

use async_std::io::ReadExt;
use serde::de::DeserializeOwned;

use super::edge::HEADER_REFUSED;
use super::pool::PooledClient;
use crate::auth::{RequestSeal, Signer, HEADER_NONCE, HEADER_REPLY_SIGNATURE, HEADER_SIGNATURE};
use crate::service::cluster::MemberStatus;
use crate::service::now_ms;
use crate::service::transport::{
    Call, Hop, HopResult, NodeDigest, PeerError, Reply, Transport, REPLY_BAD_SIGNATURE,
    REPLY_TOO_LARGE, REPLY_UNSIGNED,
};

fn url(addr: &str, path: &str) -> String {
    if addr.starts_with("http://") || addr.starts_with("https://") {
        format!("{}{}", addr.trim_end_matches('/'), path)
    } else {
        format!("http://{addr}{path}")
    }
}

async fn with_timeout<T>(
    d: Duration,
    f: impl std::future::Future<Output = Result<T, PeerError>>,
) -> Result<T, PeerError> {
    async_std::future::timeout(d, f).await.map_err(|_| {
        PeerError::plain(format!(
            "no answer within {}",
            humantime::format_duration(d)
        ))
    })?
}

/// This process's HTTP client: kept-alive connections per peer with
/// `TCP_NODELAY` (a request's head and body are two writes, and the body
/// would otherwise wait for the server's delayed ACK), each reused only
/// after an exchange read to its end ([`PooledClient`]).
pub fn client() -> surf::Client {
    static CLIENT: OnceLock<surf::Client> = OnceLock::new();
    CLIENT
        .get_or_init(|| surf::Client::with_http_client(PooledClient::default()))
        .clone()
}

/// The service's [`Transport`] over HTTP: surf requests to the peer
/// routes, signed when the node has a secret.
#[derive(Clone, Copy, Debug, Default)]
pub struct HttpTransport;

impl Transport for HttpTransport {
    fn message<'a>(&'a self, call: Call<'a>, payload: Vec<u8>) -> Reply<'a, Vec<u8>> {
        Box::pin(post_peer(call, payload))
    }

    fn digest<'a>(&'a self, call: Call<'a>) -> Reply<'a, NodeDigest> {
        Box::pin(get_digest(call))
    }

    fn hop<'a>(&'a self, call: Call<'a>, hop: Hop) -> Reply<'a, HopResult> {
        Box::pin(post_hop(call, hop))
    }

    fn status<'a>(&'a self, call: Call<'a>) -> Reply<'a, MemberStatus> {
        Box::pin(get_status(call))
    }
}

/// The signature headers for a request to node `to`, if a signer is given.
fn signature(
    u: &str,
    method: &str,
    to: &str,
    body: &[u8],
    signer: Option<&Signer>,
) -> Result<Vec<(&'static str, String)>, PeerError> {
    let Some(signer) = signer else {
        return Ok(Vec::new());
    };
    let parsed = surf::Url::parse(u).map_err(|e| PeerError::plain(format!("{u}: {e}")))?;
    signer
        .headers(
            method,
            parsed.path(),
            parsed.query().unwrap_or(""),
            to,
            body,
            now_ms(),
        )
        .map_err(PeerError::plain)
}

/// Adds the signature headers for a request to node `to`, if a signer is given.
fn sign(
    req: surf::RequestBuilder,
    u: &str,
    method: &str,
    to: &str,
    body: &[u8],
    signer: Option<&Signer>,
) -> Result<surf::RequestBuilder, PeerError> {
    Ok(signature(u, method, to, body, signer)?
        .into_iter()
        .fold(req, |req, (name, value)| req.header(name, value)))
}

/// A non-2xx answer as an error: 401 and 403 are refused credentials.
fn failed(u: &str, status: surf::StatusCode, body: &[u8]) -> PeerError {
    let code = u16::from(status);
    PeerError {
        message: format!(
            "{u}: HTTP {status}: {}",
            String::from_utf8_lossy(body).trim_end()
        ),
        refused_credentials: code == 401 || code == 403,
        refused_reply: None,
    }
}

/// A peer's answer whose reply signature checked out (or that came from
/// an open cluster, where nothing is signed).
struct Answer {
    status: surf::StatusCode,
    body: Vec<u8>,
}

/// Sends a request to a peer route, signed when `call` has a signer, and
/// returns its answer once the reply's signature is checked: a reply that
/// is to be used (2xx, or a protocol refusal) must carry the peer's MAC
/// bound to this request, or it is refused as if the peer never answered.
async fn peer_exchange(
    call: Call<'_>,
    req: surf::RequestBuilder,
    u: &str,
    method: &str,
    body: Vec<u8>,
) -> Result<Answer, PeerError> {
    let headers = signature(u, method, call.to, &body, call.signer)?;
    let seal = call.signer.map(|s| {
        let get = |n: &str| {
            headers
                .iter()
                .find(|(k, _)| *k == n)
                .map(|(_, v)| v.clone())
                .unwrap_or_default()
        };
        RequestSeal {
            method: method.to_string(),
            path: surf::Url::parse(u)
                .map(|p| p.path().to_string())
                .unwrap_or_default(),
            signer: s.id().to_string(),
            nonce: get(HEADER_NONCE),
            signature: get(HEADER_SIGNATURE),
        }
    });
    let req = headers
        .into_iter()
        .fold(req, |req, (name, value)| req.header(name, value));
    let req = if method == "GET" {
        req.build()
    } else {
        let mut req = req.build();
        let typed = req.header("content-type").is_some();
        req.set_body(body);
        // A body of bytes goes without a content-type, which the receiver
        // takes as application/octet-stream (RFC 9110 §8.3): the header
        // would be a tenth of an idle cycle's bytes on the wire.
        if !typed {
            req.remove_header("content-type");
        }
        req
    };
    let mut res = client()
        .send(req)
        .await
        .map_err(|e| PeerError::plain(format!("{u}: {e}")))?;
    let status = res.status();
    let refused = res.header(HEADER_REFUSED).map(|v| v.as_str().to_string());
    let mac = res
        .header(HEADER_REPLY_SIGNATURE)
        .map(|v| v.as_str().to_string());
    let body = read_capped(&mut res, u, call.max_reply).await?;
    let usable = status.is_success() || refused.is_some();
    if !usable {
        return Err(failed(u, status, &body));
    }
    // Checked against the keyring in force now, not the one the request
    // was signed with: a node whose secret was replaced meanwhile must not
    // take an answer signed with the old one, and a node that only added
    // a key (a rollover) must.
    let now = call.reply_keys.now();
    if let (Some(signer), Some(seal)) = (now.as_ref().or(call.signer), &seal) {
        let refused_text = refused.as_deref().unwrap_or("");
        let reply = SignedReply {
            responder: call.to,
            status: u16::from(status),
            refused: refused_text,
            body: &body,
        };
        if let Some(reason) = reply_refusal(signer, seal, &reply, mac.as_deref()) {
            return Err(PeerError::reply_refused(
                reason,
                format!(
                    "{u}: HTTP {status}: the reply {} (a reply forged or changed on the way, or a peer with another secret); it was not used",
                    if reason == REPLY_UNSIGNED {
                        format!("carries no {HEADER_REPLY_SIGNATURE}")
                    } else {
                        format!("carries a {HEADER_REPLY_SIGNATURE} that is not node {:?}'s MAC of this reply to this request", call.to)
                    }
                ),
            ));
        }
    }
    Ok(Answer { status, body })
}

/// A signed request's reply, as it came.
struct SignedReply<'a> {
    responder: &'a str,
    status: u16,
    refused: &'a str,
    body: &'a [u8],
}

/// Why `reply`, carrying `mac`, is not to be used, checked with
/// `signer`'s keyring; `None` when it is the responder's MAC of it.
fn reply_refusal(
    signer: &Signer,
    seal: &RequestSeal,
    reply: &SignedReply<'_>,
    mac: Option<&str>,
) -> Option<&'static str> {
    match mac {
        None => Some(REPLY_UNSIGNED),
        Some(m)
            if !signer.accepts_reply(
                seal,
                reply.responder,
                reply.status,
                reply.refused,
                reply.body,
                m,
            ) =>
        {
            Some(REPLY_BAD_SIGNATURE)
        }
        Some(_) => None,
    }
}

/// A reply's body, refused (unread, as far as it can tell) past `cap`
/// bytes: a peer, or someone on the path, must not make us allocate
/// without bound.
async fn read_capped(res: &mut surf::Response, u: &str, cap: u64) -> Result<Vec<u8>, PeerError> {
    let too_large = |n: String| {
        PeerError::reply_refused(
            REPLY_TOO_LARGE,
            format!("{u}: the reply is {n} bytes, over the {cap} a peer message may be; it was not read"),
        )
    };
    if let Some(n) = res.len().filter(|&n| n as u64 > cap) {
        return Err(too_large(n.to_string()));
    }
    let mut body = Vec::new();
    res.take_body()
        .take(cap + 1)
        .read_to_end(&mut body)
        .await
        .map_err(|e| PeerError::plain(format!("{u}: {e}")))?;
    if body.len() as u64 > cap {
        return Err(too_large(format!("over {cap}")));
    }
    Ok(body)
}

/// Sends an encoded peer request, returns the encoded reply: on success,
/// and also when the peer's protocol refused the request (its answer then
/// carries the refusal for our core). Cut by its timeout, the request's
/// connection is closed, not reused (`pool.rs`).
pub async fn post_peer(call: Call<'_>, payload: Vec<u8>) -> Result<Vec<u8>, PeerError> {
    let u = url(call.addr, "/v1/peer/message");
    with_timeout(call.timeout, async {
        Ok(peer_exchange(call, client().post(&u), &u, "POST", payload)
            .await?
            .body)
    })
    .await
}

/// Asks the peer to make one hop of a manual sync.
pub async fn post_hop(call: Call<'_>, hop: Hop) -> Result<HopResult, PeerError> {
    let u = url(call.addr, "/v1/peer/hop");
    let body = serde_json::to_vec(&hop).map_err(|e| PeerError::plain(e.to_string()))?;
    with_timeout(call.timeout, async {
        let req = client().post(&u).content_type("application/json");
        json_answer(peer_exchange(call, req, &u, "POST", body).await?, &u)
    })
    .await
}

/// The peer's digest.
pub async fn get_digest(call: Call<'_>) -> Result<NodeDigest, PeerError> {
    get_json(call, "/v1/peer/digest").await
}

/// The peer's `/v1/status`, for the cluster view. The route is open and
/// its answer unsigned, so the request goes unsigned: what it tells is
/// shown, never acted on.
pub async fn get_status(call: Call<'_>) -> Result<MemberStatus, PeerError> {
    let call = Call {
        signer: None,
        ..call
    };
    get_json(call, "/v1/status").await
}

/// A GET of a peer's JSON route, signed when `call` has a signer.
async fn get_json<T: DeserializeOwned>(call: Call<'_>, path: &str) -> Result<T, PeerError> {
    let u = url(call.addr, path);
    with_timeout(call.timeout, async {
        json_answer(
            peer_exchange(call, client().get(&u), &u, "GET", Vec::new()).await?,
            &u,
        )
    })
    .await
}

fn json_answer<T: DeserializeOwned>(a: Answer, u: &str) -> Result<T, PeerError> {
    if !a.status.is_success() {
        return Err(failed(u, a.status, &a.body));
    }
    serde_json::from_slice(&a.body)
        .map_err(|e| PeerError::plain(format!("{u}: unreadable answer: {e}")))
}

/// How an operator's call proves itself: a bearer token for the client
/// API, and the cluster secret to sign sync and client API calls.
#[derive(Clone, Debug, Default)]
pub struct ClientAuth {
    /// Sent as `Authorization: Bearer` on `/v1/kv`.
    pub token: Option<String>,
    /// Signs `/v1/sync` and `/v1/peer` calls, and `/v1/kv` calls when
    /// there is no token.
    pub signer: Option<Signer>,
    /// The id of the node called; asked of its `/v1/status` when unknown.
    pub to: Option<String>,
}

/// The environment variable naming a file whose first word is a bearer
/// token (a tokens file's first line will do).
pub const ENV_TOKEN_FILE: &str = "RINGSYNC_TOKEN_FILE";
/// The environment variable naming the cluster's secret file.
pub const ENV_SECRET_FILE: &str = "RINGSYNC_SECRET_FILE";

impl ClientAuth {
    /// The credentials the CLI is given: the files named by
    /// `RINGSYNC_TOKEN_FILE` and `RINGSYNC_SECRET_FILE`. Secrets are never
    /// taken from the command line, where other users can see them.
    pub fn from_env() -> Result<ClientAuth, String> {
        let path = |name: &str| {
            std::env::var_os(name)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        };
        let token = match path(ENV_TOKEN_FILE) {
            None => None,
            Some(p) => Some(read_token(&p)?),
        };
        let signer = match path(ENV_SECRET_FILE) {
            None => None,
            Some(p) => Some(Signer::operator_from_file(&p)?),
        };
        Ok(ClientAuth {
            token,
            signer,
            to: None,
        })
    }

    /// The same credentials, for calls to node `id`.
    pub fn to(&self, id: &str) -> ClientAuth {
        ClientAuth {
            to: Some(id.to_string()),
            ..self.clone()
        }
    }
}

/// The first word of the first line that is not blank or a comment.
pub fn read_token(path: &std::path::Path) -> Result<String, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read the token file {}: {e}", path.display()))?;
    text.lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('#'))
        .and_then(|l| l.split_whitespace().next())
        .map(str::to_string)
        .ok_or_else(|| format!("the token file {} holds no token", path.display()))
}

/// The CLI's plain calls: method, base URL, path, body; returns status and
/// body. No credentials: see [`call_with`].
pub fn call(
    method: &str,
    base: &str,
    path: &str,
    body: Option<Vec<u8>>,
    timeout: Duration,
) -> Result<(u16, Vec<u8>), String> {
    call_with(method, base, path, body, timeout, &ClientAuth::default())
}

/// As [`call`], with credentials: the token goes to `/v1/kv`, the
/// signature to `/v1/sync`, `/v1/peer` and (without a token) `/v1/kv`.
pub fn call_with(
    method: &str,
    base: &str,
    path: &str,
    body: Option<Vec<u8>>,
    timeout: Duration,
    auth: &ClientAuth,
) -> Result<(u16, Vec<u8>), String> {
    try_call_with(method, base, path, body, timeout, auth).map_err(|e| e.message)
}

/// Why a client call got no answer: the CLI tells a node it cannot reach
/// (its own exit code) from everything else.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CallError {
    /// True when no answer came from the node: the connection was refused
    /// or failed, or nothing answered in time.
    pub unreachable: bool,
    /// What happened, naming the URL.
    pub message: String,
}

impl CallError {
    fn other(message: String) -> CallError {
        CallError {
            unreachable: false,
            message,
        }
    }
}

/// Says why a request could not reach `base`, in words an operator can act
/// on. surf's connection pool hides the socket's error behind its own
/// text, so a plain connect to the same address asks the system again.
fn unreachable(base: &str, e: &surf::Error) -> CallError {
    let probe = || -> Option<std::io::Error> {
        let u = surf::Url::parse(&url(base, "")).ok()?;
        let addr = u.socket_addrs(|| None).ok()?.into_iter().next()?;
        std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)).err()
    };
    let why = match probe() {
        Some(io) if io.kind() == std::io::ErrorKind::ConnectionRefused => {
            "connection refused".to_string()
        }
        Some(io) => io.to_string(),
        // The node takes connections: the exchange itself failed.
        None => return CallError::other(format!("{}: {e}", url(base, ""))),
    };
    CallError {
        unreachable: true,
        message: format!(
            "cannot connect to {} ({why}): is the node running?",
            url(base, "")
        ),
    }
}

/// As [`call_with`], telling an unreachable node from other failures.
pub fn try_call_with(
    method: &str,
    base: &str,
    path: &str,
    body: Option<Vec<u8>>,
    timeout: Duration,
    auth: &ClientAuth,
) -> Result<(u16, Vec<u8>), CallError> {
    let u = url(base, path);
    let client_api = path == "/v1/kv" || path.starts_with("/v1/kv/") || path.starts_with("/v1/kv?");
    let token = auth.token.as_deref().filter(|_| client_api);
    let needs_signature = token.is_none()
        && (client_api || path.starts_with("/v1/sync") || path.starts_with("/v1/peer/"));
    let signer = auth.signer.as_ref().filter(|_| needs_signature);
    let to = match (signer, &auth.to) {
        (None, _) => String::new(),
        (Some(_), Some(id)) => id.clone(),
        (Some(_), None) => node_id(base, timeout)?,
    };
    let answer = async_std::task::block_on(async_std::future::timeout(timeout, async move {
        let req = match method {
            "GET" => client().get(&u),
            "PUT" => client().put(&u),
            "POST" => client().post(&u),
            "DELETE" => client().delete(&u),
            other => return Err(CallError::other(format!("unsupported method {other}"))),
        };
        let bytes = body.clone().unwrap_or_default();
        let req =
            sign(req, &u, method, &to, &bytes, signer).map_err(|e| CallError::other(e.message))?;
        let req = match token {
            Some(t) => req.header("authorization", format!("Bearer {t}")),
            None => req,
        };
        let req = match body {
            Some(b) => req.content_type("application/octet-stream").body_bytes(b),
            None => req,
        };
        let mut res = req.await.map_err(|e| unreachable(base, &e))?;
        let status = u16::from(res.status());
        let body = res
            .body_bytes()
            .await
            .map_err(|e| CallError::other(format!("{u}: {e}")))?;
        Ok((status, body))
    }));
    answer.unwrap_or_else(|_| {
        Err(CallError {
            unreachable: true,
            message: format!(
                "no answer from {} within {}: is the node running?",
                url(base, ""),
                humantime::format_duration(timeout)
            ),
        })
    })
}

/// The id of the node at `base`, from its `/v1/status`.
fn node_id(base: &str, timeout: Duration) -> Result<String, CallError> {
    let (status, body) = try_call_with(
        "GET",
        base,
        "/v1/status",
        None,
        timeout,
        &ClientAuth::default(),
    )?;
    let v: serde_json::Value = serde_json::from_slice(&body).map_err(|_| {
        CallError::other(format!(
            "{base}/v1/status answered HTTP {status}, not a status"
        ))
    })?;
    v.get("id")
        .and_then(serde_json::Value::as_str)
        .map(str::to_string)
        .ok_or_else(|| CallError::other(format!("{base}/v1/status names no node id")))
}

#[cfg(test)]
mod reply_check_tests {
    use super::*;
    use crate::auth::Keyring;

    fn signer(id: &str, keys: &[&str]) -> Signer {
        let keyring = Keyring::parse(&keys.join("\n"), "<test>")
            .expect("a keyring")
            .expect("keys");
        Signer::new(id, keyring)
    }

    #[test]
    fn a_reply_stands_or_falls_with_the_keyring_it_is_checked_with() {
        let (old, new) = ("the-old-cluster-secret-0123", "the-new-cluster-secret-4567");
        let seal = RequestSeal {
            method: "POST".into(),
            path: "/v1/peer/message".into(),
            signer: "n0".into(),
            nonce: "nonce".into(),
            signature: "mac".into(),
        };
        let mac = signer("n1", &[old]).sign_reply(&seal, 200, "", b"body");
        let reply = SignedReply {
            responder: "n1",
            status: 200,
            refused: "",
            body: b"body",
        };
        let check = |keys: &[&str], mac: Option<&str>| {
            reply_refusal(&signer("n0", keys), &seal, &reply, mac)
        };
        assert_eq!(check(&[old], Some(&mac)), None);
        // A rollover adds a key: the reply still stands.
        assert_eq!(check(&[new, old], Some(&mac)), None);
        // Another secret: it falls.
        assert_eq!(check(&[new], Some(&mac)), Some(REPLY_BAD_SIGNATURE));
        assert_eq!(check(&[old], None), Some(REPLY_UNSIGNED));
    }
}
