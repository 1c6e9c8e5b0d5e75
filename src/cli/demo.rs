//! `ringsync demo`: a whole local cluster on this machine, written to,
//! synced and reported.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::client::{not_converged, status_text, sync_text};
use crate::auth::{self, Signer};
use crate::http::client::{call, call_with, ClientAuth};
use crate::http::percent_encode;
use crate::topology::Topology;

/// Child processes that are killed when this is dropped, whatever happened.
pub struct Children {
    procs: Vec<(String, Child)>,
    dir: PathBuf,
}

impl Drop for Children {
    fn drop(&mut self) {
        for (_, c) in &mut self.procs {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn base(addr: &str) -> String {
    format!("http://{addr}")
}

/// True when the node at `addr` is ready and is ours: `id` of this
/// topology's cluster, not some other process that holds the port.
fn is_our_node(topo: &Topology, id: &str, addr: &str) -> bool {
    let Ok((200, body)) = call(
        "GET",
        &base(addr),
        "/v1/status",
        None,
        Duration::from_secs(1),
    ) else {
        return false;
    };
    let Ok(v) = serde_json::from_slice::<Value>(&body) else {
        return false;
    };
    v.get("id").and_then(Value::as_str) == Some(id)
        && v.get("cluster").and_then(Value::as_str) == Some(topo.cluster.name.as_str())
        && matches!(
            call("GET", &base(addr), "/readyz", None, Duration::from_secs(1)),
            Ok((200, _))
        )
}

/// Waits until every node answers `/readyz` with 200, or fails naming who.
fn wait_ready(topo: &Topology, children: &mut Children, deadline: Duration) -> Result<(), String> {
    let until = Instant::now() + deadline;
    for n in &topo.nodes {
        loop {
            if let Some((id, c)) = children.procs.iter_mut().find(|(id, _)| *id == n.id) {
                if let Ok(Some(st)) = c.try_wait() {
                    return Err(format!(
                        "node {id} exited with {st} before it was ready; its log is in {}",
                        children.dir.join(format!("{id}.log")).display()
                    ));
                }
            }
            if is_our_node(topo, &n.id, &n.addr) {
                break;
            }
            if Instant::now() > until {
                return Err(format!("node {} was not ready within {deadline:?}", n.id));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    Ok(())
}

/// Gives the demo's cluster its secrets, so that it runs as a real one
/// does: signed peer and sync requests, a token for the writes. Returns
/// the topology file the nodes are to load, and the demo's credentials.
///
/// A topology that names its own `secret_file` is used as it is, and the
/// demo signs with that secret. Otherwise a fresh secret and a write token
/// are made in `dir`, and a copy of the topology that names them.
fn secure(path: &Path, topo: &Topology, dir: &Path) -> Result<(PathBuf, ClientAuth), String> {
    if let Some(secret) = &topo.cluster.secret_file {
        let auth = ClientAuth {
            signer: Some(Signer::operator_from_file(secret)?),
            ..ClientAuth::default()
        };
        return Ok((path.to_path_buf(), auth));
    }
    let secret = dir.join("secret");
    auth::secret_new(Some(&secret))?;
    let token = auth::hex(&auth::random_bytes(32)?);
    let tokens = dir.join("tokens");
    write_private(&tokens, &format!("{token} write\n"))?;
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let keys = format!(
        "secret_file = {:?}\ntokens_file = {:?}",
        secret.display().to_string(),
        tokens.display().to_string()
    );
    let mut done = false;
    let copy: Vec<String> = text
        .lines()
        .map(|l| {
            if !done && l.trim_start().starts_with("[cluster]") {
                done = true;
                format!("{l}\n{keys}")
            } else {
                l.to_string()
            }
        })
        .collect();
    let copy_path = dir.join("topology.toml");
    std::fs::write(&copy_path, copy.join("\n") + "\n")
        .map_err(|e| format!("cannot write {}: {e}", copy_path.display()))?;
    let check = Topology::load(&copy_path).map_err(|e| e.to_string())?;
    if !done || check.fingerprint() != topo.fingerprint() || check.cluster.secret_file.is_none() {
        return Err(format!(
            "could not add the demo's secret to a copy of {}",
            path.display()
        ));
    }
    let auth = ClientAuth {
        token: Some(token),
        signer: Some(Signer::operator_from_file(&secret)?),
        to: None,
    };
    Ok((copy_path, auth))
}

fn write_private(path: &Path, text: &str) -> Result<(), String> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// Runs the demo over the topology at `path`.
pub fn run(path: &Path, once: bool) -> Result<(), String> {
    let topo = Topology::load(path).map_err(|e| e.to_string())?;
    for n in &topo.nodes {
        let host = n.addr.rsplit_once(':').map_or("", |(h, _)| h);
        if !matches!(host, "127.0.0.1" | "localhost" | "[::1]") {
            return Err(format!(
                "the demo runs every node on this machine, but node {} is at {}: use a topology whose nodes are all on 127.0.0.1, like topology/local-5.toml",
                n.id, n.addr
            ));
        }
    }
    let exe = std::env::current_exe().map_err(|e| format!("cannot find this program: {e}"))?;
    let dir = std::env::temp_dir().join(format!("ringsync-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let mut children = Children {
        procs: Vec::new(),
        dir: dir.clone(),
    };
    let (path, auth) = secure(path, &topo, &dir)?;
    let path = path.as_path();
    println!(
        "starting {} nodes of cluster {:?} (data and logs in {})",
        topo.nodes.len(),
        topo.cluster.name,
        dir.display()
    );
    println!(
        "peer and sync requests are signed with the cluster secret{}",
        if auth.token.is_some() {
            " made for the demo; writes carry a client token"
        } else {
            " of the topology"
        }
    );
    for n in &topo.nodes {
        let log = std::fs::File::create(dir.join(format!("{}.log", n.id)))
            .map_err(|e| format!("cannot create a log file in {}: {e}", dir.display()))?;
        let err = log.try_clone().map_err(|e| e.to_string())?;
        let child = Command::new(&exe)
            .arg("node")
            .arg("--topology")
            .arg(path)
            .arg("--id")
            .arg(&n.id)
            .arg("--data-dir")
            .arg(dir.join(&n.id))
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .spawn()
            .map_err(|e| format!("cannot start node {}: {e}", n.id))?;
        children.procs.push((n.id.clone(), child));
    }
    wait_ready(&topo, &mut children, Duration::from_secs(30))?;
    println!("all nodes ready");

    // Sample writes at several nodes, and a delete.
    for (i, n) in topo.nodes.iter().enumerate() {
        for k in 0..3 {
            let key = format!("demo/{}/{k}", n.id);
            let value = format!("written at {} (#{k})", n.id);
            let (st, body) = call_with(
                "PUT",
                &base(&n.addr),
                &format!("/v1/kv/{}", percent_encode(&key)),
                Some(value.into_bytes()),
                Duration::from_secs(5),
                &auth.to(&n.id),
            )?;
            if st != 200 {
                return Err(format!(
                    "write at {} failed: HTTP {st}: {}",
                    n.id,
                    String::from_utf8_lossy(&body)
                ));
            }
        }
        if i == 0 {
            let key = format!("demo/{}/2", n.id);
            call_with(
                "DELETE",
                &base(&n.addr),
                &format!("/v1/kv/{}", percent_encode(&key)),
                None,
                Duration::from_secs(5),
                &auth.to(&n.id),
            )?;
        }
    }
    println!("wrote 3 keys at each node and deleted one");

    let first = base(&topo.nodes[0].addr);
    let (st, body) = call_with(
        "POST",
        &first,
        "/v1/sync",
        None,
        Duration::from_secs(300),
        &auth.to(&topo.nodes[0].id),
    )?;
    let report: Value = serde_json::from_slice(&body).map_err(|_| {
        format!(
            "sync answered HTTP {st}: {}",
            String::from_utf8_lossy(&body)
        )
    })?;
    println!("\n{}", sync_text(&report));
    for n in &topo.nodes {
        if let Ok((200, body)) = call(
            "GET",
            &base(&n.addr),
            "/v1/status",
            None,
            Duration::from_secs(5),
        ) {
            if let Ok(v) = serde_json::from_slice::<Value>(&body) {
                print!("{}", status_text(&v));
            }
        }
    }
    if once {
        return not_converged(&report).map_or(Ok(()), Err);
    }
    println!("\nthe cluster keeps running; open {first}/ in a browser to see the ring, or try `ringsync status --cluster --node {first}`. Ctrl-C stops it.");
    if auth.token.is_some() {
        println!(
            "its credentials are in {}: `RINGSYNC_TOKEN_FILE={} ringsync put k v --node {first}`, `RINGSYNC_SECRET_FILE={} ringsync sync --node {first}`",
            dir.display(),
            dir.join("tokens").display(),
            dir.join("secret").display()
        );
    }
    let mut signals = signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGTERM,
    ])
    .map_err(|e| format!("cannot watch signals: {e}"))?;
    signals.forever().next();
    println!("stopping");
    Ok(())
}
