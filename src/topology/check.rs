//! The checks and defaults that turn raw tables into a [`Cluster`] and a
//! ring of [`NodeSpec`]s: names, durations, counts, paths, ids, addresses,
//! and the ring's uniqueness and size.

use std::path::PathBuf;
use std::time::Duration;

use toml::Spanned;

use super::origin_of;
use super::parse::{Ctx, RawCluster, RawNode, RawSize};
use super::{Cluster, NodeSpec, TopologyError};
use crate::core::schedule::Schedule;

/// Default cycle length: one push per node per second.
const DEFAULT_INTERVAL: Duration = Duration::from_secs(1);
/// Shortest accepted cycle. Below this, timer jitter and HTTP round trips on
/// an ordinary LAN are a large share of the cycle and cycles start to overlap.
const MIN_INTERVAL: Duration = Duration::from_millis(10);
/// Default tombstone lifetime: a week, long enough for a node that was down
/// over a weekend to come back and still learn of the deletes it missed.
const DEFAULT_TOMBSTONE_LIFETIME: Duration = Duration::from_secs(7 * 24 * 60 * 60);
/// Default largest value: 1 MiB, so one value always fits a delta budget.
const DEFAULT_MAX_VALUE_SIZE: usize = 1 << 20;
/// The clock skew tolerated between nodes: the same 30 s a signed request's
/// time may be off by (`auth::MAX_SKEW_S`), so a node whose requests are
/// accepted has its entries accepted too. Tighter would hold back the
/// writes of a node whose NTP is off by seconds, and (after
/// `failure_threshold` such batches) fail it over.
const DEFAULT_MAX_CLOCK_DRIFT: Duration = Duration::from_secs(30);
/// Default consecutive failed pushes before a peer counts as failed: one lost
/// packet or a slow GC pause should not divert the ring into gossip.
const DEFAULT_FAILURE_THRESHOLD: u32 = 3;
/// Default cap on random rounds of a manual sync in fallback mode; with
/// push-pull gossip, 64 rounds covers rings far larger than we deploy.
const DEFAULT_SYNC_MAX_ROUNDS: u32 = 64;
/// Default time a client has to send a request (its head, or its body) and
/// to take an answer: a 64 MiB peer batch crosses a 100 Mbit/s link in
/// about 5 s, and a client that trickles bytes is cut after this.
const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest node id; ids appear in logs, paths and URLs.
const MAX_ID_LEN: usize = 64;
/// How the accepted duration syntax is shown in error messages.
const DURATION_FORM: &str = "like \"500ms\", \"1s\", \"1m 30s\" or \"7days\"";

/// The problems found in one file so far: every check adds to it and goes
/// on, so that one run reports them all.
pub(super) type Problems = Vec<TopologyError>;

/// `r`'s value, or `fallback` with its error kept in `problems`.
fn keep<T>(problems: &mut Problems, r: Result<T, TopologyError>, fallback: T) -> T {
    r.unwrap_or_else(|e| {
        problems.push(e);
        fallback
    })
}

/// Applies defaults and checks to the `[cluster]` table; what is wrong goes
/// to `problems` (the value then stands at its default).
pub(super) fn cluster(cx: &Ctx, table: Spanned<RawCluster>, problems: &mut Problems) -> Cluster {
    let span = table.span();
    let rc = table.into_inner();
    let name = match rc.name {
        None => {
            problems.push(cx.at(
                span,
                "[cluster] has no name; add name = \"my-cluster\" (every node's copy must use the same name)",
            ));
            String::new()
        }
        Some(name) => {
            if name.get_ref().trim().is_empty() {
                problems.push(cx.at(
                    name.span(),
                    "cluster name is empty; set name = \"my-cluster\" (any non-empty text)",
                ));
            }
            name.into_inner()
        }
    };

    let interval = keep(
        problems,
        duration(cx, "interval", &rc.interval, DEFAULT_INTERVAL),
        DEFAULT_INTERVAL,
    );
    if interval < MIN_INTERVAL {
        let span = rc.interval.as_ref().map(Spanned::span);
        problems.push(cx.err(
            span,
            format!(
                "interval {} is shorter than the minimum of 10ms; set interval to \"10ms\" or more (\"1s\" is typical)",
                humantime::format_duration(interval)
            ),
        ));
    }

    let schedule = match &rc.schedule {
        None => Schedule::Successor,
        Some(s) => keep(
            problems,
            s.get_ref().trim().parse::<Schedule>().map_err(|m| {
                cx.at(
                    s.span(),
                    format!("{m}; set schedule = \"successor\", \"doubling\" or \"random\""),
                )
            }),
            Schedule::Successor,
        ),
    };

    let peer_timeout = keep(
        problems,
        duration(cx, "peer_timeout", &rc.peer_timeout, interval / 2),
        interval / 2,
    );
    if peer_timeout.is_zero() {
        problems.push(cx.err(
            rc.peer_timeout.as_ref().map(Spanned::span),
            "peer_timeout is zero, so every push would time out; set it above 0, like \"500ms\", or remove it to use interval/2",
        ));
    }

    let tombstone_lifetime = keep(
        problems,
        duration(
            cx,
            "tombstone_lifetime",
            &rc.tombstone_lifetime,
            DEFAULT_TOMBSTONE_LIFETIME,
        ),
        DEFAULT_TOMBSTONE_LIFETIME,
    );
    let max_clock_drift = keep(
        problems,
        duration(
            cx,
            "max_clock_drift",
            &rc.max_clock_drift,
            DEFAULT_MAX_CLOCK_DRIFT,
        ),
        DEFAULT_MAX_CLOCK_DRIFT,
    );
    let max_value_size = keep(
        problems,
        count(
            cx,
            "max_value_size",
            &rc.max_value_size,
            usize::MAX,
            DEFAULT_MAX_VALUE_SIZE,
        ),
        DEFAULT_MAX_VALUE_SIZE,
    );
    let failure_threshold = keep(
        problems,
        count(
            cx,
            "failure_threshold",
            &rc.failure_threshold,
            u32::MAX,
            DEFAULT_FAILURE_THRESHOLD,
        ),
        DEFAULT_FAILURE_THRESHOLD,
    );
    let sync_max_rounds = keep(
        problems,
        count(
            cx,
            "sync_max_rounds",
            &rc.sync_max_rounds,
            u32::MAX,
            DEFAULT_SYNC_MAX_ROUNDS,
        ),
        DEFAULT_SYNC_MAX_ROUNDS,
    );
    let epoch = match &rc.epoch {
        None => 0,
        Some(e) => keep(
            problems,
            u64::try_from(*e.get_ref()).map_err(|_| {
                cx.at(
                    e.span(),
                    format!(
                        "epoch {} is negative; the epoch counts ring changes from 0: raise it by one with each change",
                        e.get_ref()
                    ),
                )
            }),
            0,
        ),
    };
    let secret_file = keep(problems, path(cx, "secret_file", &rc.secret_file), None);
    let tokens_file = keep(problems, path(cx, "tokens_file", &rc.tokens_file), None);
    let request_timeout = keep(
        problems,
        duration(
            cx,
            "request_timeout",
            &rc.request_timeout,
            DEFAULT_REQUEST_TIMEOUT,
        ),
        DEFAULT_REQUEST_TIMEOUT,
    );
    if request_timeout.is_zero() {
        problems.push(cx.err(
            rc.request_timeout.as_ref().map(Spanned::span),
            "request_timeout is zero, so every request would be cut; set it above 0, like \"10s\", or remove it to use the default",
        ));
    }

    let cache_size = keep(
        problems,
        size(cx, "cache_size", &rc.cache_size, DEFAULT_CACHE_SIZE),
        DEFAULT_CACHE_SIZE,
    );

    Cluster {
        name,
        interval,
        schedule,
        peer_timeout,
        tombstone_lifetime,
        max_value_size,
        max_clock_drift,
        secret_file,
        tokens_file,
        request_timeout,
        failure_threshold,
        relay: rc.relay.unwrap_or(true),
        sync_max_rounds,
        epoch,
        cache_size,
    }
}

/// The store's page cache when `cache_size` is not set.
const DEFAULT_CACHE_SIZE: u64 = crate::store::redb::DEFAULT_CACHE_SIZE;
/// The smallest `cache_size` taken: below it redb thrashes.
const MIN_CACHE_SIZE: u64 = 1 << 20;

/// A byte size: a plain integer, or a number and a unit (B, KB, MB, GB,
/// KiB, MiB, GiB), like "32MiB"; at least [`MIN_CACHE_SIZE`].
fn size(
    cx: &Ctx,
    name: &str,
    raw: &Option<Spanned<RawSize>>,
    default: u64,
) -> Result<u64, TopologyError> {
    let Some(raw) = raw else {
        return Ok(default);
    };
    let bad = |why: String| {
        cx.at(raw.span(), format!("{name} {why}; write bytes like 33554432 or a size like \"32MiB\" (units B, KB, MB, GB, KiB, MiB, GiB)"))
    };
    let bytes = match raw.get_ref() {
        RawSize::Bytes(n) => u64::try_from(*n).map_err(|_| bad(format!("{n} is negative")))?,
        RawSize::Text(t) => parse_size(t).ok_or_else(|| bad(format!("{t:?} is not a size")))?,
    };
    if bytes < MIN_CACHE_SIZE {
        return Err(bad(format!("{bytes} bytes is below the minimum of 1MiB")));
    }
    Ok(bytes)
}

/// "32MiB", "64 MB", "1048576" as bytes.
fn parse_size(text: &str) -> Option<u64> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num.parse().ok()?;
    let mult: u64 = match unit.trim() {
        "" | "B" => 1,
        "KB" => 1000,
        "MB" => 1000 * 1000,
        "GB" => 1000 * 1000 * 1000,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        _ => return None,
    };
    n.checked_mul(mult)
}

/// Checks each `[[node]]` table and the ring they form, in file order: ids
/// and addresses well formed and unique, at least two members. A node
/// with a problem is left out of the ring returned; the problem goes to
/// `problems`.
pub(super) fn ring(
    cx: &Ctx,
    tables: Vec<Spanned<RawNode>>,
    problems: &mut Problems,
) -> Vec<NodeSpec> {
    let tables_len = tables.len();
    let mut nodes: Vec<NodeSpec> = Vec::with_capacity(tables.len());
    // (id, line) and (normalized addr, line) of the nodes seen so far.
    let mut seen_ids: Vec<(String, usize)> = Vec::new();
    let mut seen_addrs: Vec<(String, usize)> = Vec::new();
    let mut first_line = None;
    for (i, node) in tables.into_iter().enumerate() {
        let node_span = node.span();
        first_line.get_or_insert(cx.line_of(node_span.start));
        if let Some(spec) = node_spec(
            cx,
            i,
            node,
            &mut seen_ids,
            &mut seen_addrs,
            &nodes,
            problems,
        ) {
            nodes.push(spec);
        }
    }

    if tables_len < 2 {
        problems.push(cx.on_line(
            seen_ids.first().map(|(_, l)| *l).or(first_line),
            format!(
                "the ring has {tables_len} node(s) but needs at least 2; add a [[node]] table with id and addr for each member"
            ),
        ));
    }
    if u32::try_from(tables_len).is_err() {
        problems.push(cx.err(None, "too many nodes; a ring holds at most 2^32 - 1"));
    }
    nodes
}

/// Checks the `[[node]]` table number `i` against itself and the nodes
/// before it; `None` when it has a problem (each is in `problems`).
fn node_spec(
    cx: &Ctx,
    i: usize,
    node: Spanned<RawNode>,
    seen_ids: &mut Vec<(String, usize)>,
    seen_addrs: &mut Vec<(String, usize)>,
    nodes: &[NodeSpec],
    problems: &mut Problems,
) -> Option<NodeSpec> {
    let node_span = node.span();
    let rn = node.into_inner();
    let before = problems.len();
    let Some(id) = rn.id else {
        problems.push(cx.at(
            node_span,
            format!(
                "[[node]] number {} has no id; add id = \"...\" to it",
                i + 1
            ),
        ));
        return None;
    };
    if let Err(m) = check_id(id.get_ref()) {
        problems.push(cx.at(id.span(), m));
    }
    let id_line = cx.line_of(id.span().start);
    if let Some((_, first)) = seen_ids.iter().find(|(s, _)| s == id.get_ref()) {
        problems.push(cx.at(
            id.span(),
            format!(
                "node id {:?} is used twice (first on line {first}); give every node a unique id",
                id.get_ref()
            ),
        ));
    } else {
        let origin = origin_of(id.get_ref());
        if let Some(other) = nodes.iter().find(|n| n.origin() == origin) {
            problems.push(cx.at(
                id.span(),
                format!(
                    "node ids {:?} and {:?} hash to the same origin number {origin}, which would make their writes indistinguishable; rename one of them",
                    other.id,
                    id.get_ref()
                ),
            ));
        }
        seen_ids.push((id.get_ref().clone(), id_line));
    }
    match &rn.addr {
        None => problems.push(cx.at(
            node_span,
            format!(
                "node {:?} has no addr; add addr = \"host:port\" to its [[node]] table",
                id.get_ref()
            ),
        )),
        Some(addr) => match check_addr(addr.get_ref()) {
            Err(m) => problems.push(cx.at(addr.span(), m)),
            Ok(norm) => {
                let addr_line = cx.line_of(addr.span().start);
                if let Some((_, first)) = seen_addrs.iter().find(|(s, _)| *s == norm) {
                    problems.push(cx.at(
                        addr.span(),
                        format!(
                            "addr {:?} of node {:?} is already used by the node on line {first}; give every node its own host:port",
                            addr.get_ref(),
                            id.get_ref()
                        ),
                    ));
                } else {
                    seen_addrs.push((norm, addr_line));
                }
            }
        },
    }
    let data_dir = keep(problems, path(cx, "data_dir", &rn.data_dir), None);
    if problems.len() > before {
        return None;
    }
    Some(NodeSpec {
        id: id.into_inner(),
        addr: rn.addr.map(Spanned::into_inner).unwrap_or_default(),
        data_dir,
    })
}

/// The duration `value` holds, or `default` when the key is absent.
fn duration(
    cx: &Ctx,
    key: &str,
    value: &Option<Spanned<String>>,
    default: Duration,
) -> Result<Duration, TopologyError> {
    let Some(v) = value else { return Ok(default) };
    humantime::parse_duration(v.get_ref().trim()).map_err(|e| {
        cx.at(
            v.span(),
            format!(
                "{key} = {:?} is not a duration ({e}); write it {DURATION_FORM}",
                v.get_ref()
            ),
        )
    })
}

/// The whole number `value` holds, from 1 to `max`, or `default` when the
/// key is absent. TOML integers are i64, so `max` is shown clamped to that.
fn count<T>(
    cx: &Ctx,
    key: &str,
    value: &Option<Spanned<i64>>,
    max: T,
    default: T,
) -> Result<T, TopologyError>
where
    T: TryFrom<i64>,
    i64: TryFrom<T>,
{
    let Some(v) = value else { return Ok(default) };
    let n = *v.get_ref();
    let max = i64::try_from(max).unwrap_or(i64::MAX);
    match T::try_from(n) {
        Ok(x) if (1..=max).contains(&n) => Ok(x),
        _ => Err(cx.at(
            v.span(),
            format!("{key} = {n} is out of range; set it to a whole number from 1 to {max}"),
        )),
    }
}

/// The path `value` holds, joined to the file's folder when relative.
fn path(
    cx: &Ctx,
    key: &str,
    value: &Option<Spanned<String>>,
) -> Result<Option<PathBuf>, TopologyError> {
    let Some(v) = value else { return Ok(None) };
    if v.get_ref().trim().is_empty() {
        return Err(cx.at(
            v.span(),
            format!("{key} is empty; give a path, or remove the key to use the default"),
        ));
    }
    let p = PathBuf::from(v.get_ref());
    Ok(Some(match cx.base_dir {
        Some(base) if p.is_relative() => base.join(p),
        _ => p,
    }))
}

/// Checks a node id against `[A-Za-z0-9_.-]{1,64}`.
fn check_id(id: &str) -> Result<(), String> {
    if id.is_empty() {
        return Err("node id is empty; give each node a short id like \"a\" or \"db1\"".into());
    }
    if id.len() > MAX_ID_LEN {
        return Err(format!(
            "node id {id:?} is {} bytes long; shorten it to at most {MAX_ID_LEN}",
            id.len()
        ));
    }
    if let Some(bad) = id
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')))
    {
        return Err(format!(
            "node id {id:?} contains {bad:?}; use only letters, digits, '_', '.' and '-'"
        ));
    }
    Ok(())
}

/// Checks `host:port`, with IPv6 hosts in brackets. Returns the text to use
/// when comparing addresses (host lowercased, since DNS names ignore case).
fn check_addr(addr: &str) -> Result<String, String> {
    let form = "write it as host:port, like \"127.0.0.1:7101\", \"db1.example.internal:7100\" or \"[::1]:7101\"";
    if addr.chars().any(char::is_whitespace) {
        return Err(format!("addr {addr:?} contains whitespace; {form}"));
    }
    let (host, port) = if let Some(rest) = addr.strip_prefix('[') {
        let Some((host, after)) = rest.split_once(']') else {
            return Err(format!(
                "addr {addr:?} has '[' without a closing ']'; {form}"
            ));
        };
        let Some(port) = after.strip_prefix(':') else {
            return Err(format!("addr {addr:?} has no port after the ']'; {form}"));
        };
        if host.is_empty() || !host.contains(':') {
            return Err(format!(
                "addr {addr:?}: brackets are only for IPv6 hosts like [::1]; {form}"
            ));
        }
        (host, port)
    } else {
        let Some((host, port)) = addr.rsplit_once(':') else {
            return Err(format!("addr {addr:?} has no port; {form}"));
        };
        if host.contains(':') {
            return Err(format!(
                "addr {addr:?} looks like an IPv6 address without brackets; put the host in brackets, like \"[::1]:7101\""
            ));
        }
        (host, port)
    };
    if host.is_empty() {
        return Err(format!("addr {addr:?} has no host before the port; {form}"));
    }
    if host.contains(['/', '@', '[', ']']) {
        return Err(format!("addr {addr:?} has a malformed host; {form}"));
    }
    if port.is_empty() {
        return Err(format!("addr {addr:?} has an empty port; {form}"));
    }
    let port_ok =
        port.bytes().all(|b| b.is_ascii_digit()) && port.parse::<u16>().is_ok_and(|p| p != 0);
    if !port_ok {
        return Err(format!(
            "addr {addr:?} has port {port:?}; the port must be a number from 1 to 65535"
        ));
    }
    Ok(format!("{}:{port}", host.to_ascii_lowercase()))
}
