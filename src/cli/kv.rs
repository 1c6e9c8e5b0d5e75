//! `ringsync get|put|del|list`: the client API from the command line,
//! binary-safe: values go in and out as bytes, and `--json` carries a value
//! that is not UTF-8 as hex, as `GET /v1/kv` does.

use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use super::client::{call, pretty, Route};
use super::outcome::{Exit, Failure};
use crate::http::percent_encode;

/// Where `put` takes its value from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// The command line's argument.
    Arg(String),
    /// A file, read whole.
    File(PathBuf),
    /// Standard input, read to its end.
    Stdin,
}

fn key_path(key: &str) -> String {
    format!("/v1/kv/{}", percent_encode(key))
}

/// A value in JSON: `value` when it is UTF-8 text, else `value_hex`.
fn value_json(bytes: &[u8]) -> (&'static str, Value) {
    match std::str::from_utf8(bytes) {
        Ok(s) => ("value", Value::String(s.to_string())),
        Err(_) => (
            "value_hex",
            Value::String(bytes.iter().map(|b| format!("{b:02x}")).collect()),
        ),
    }
}

fn write_out(bytes: &[u8]) -> Result<(), Failure> {
    let mut out = std::io::stdout().lock();
    out.write_all(bytes)
        .and_then(|()| out.flush())
        .map_err(|e| Failure::from(format!("cannot write to stdout: {e}")))
}

/// Reads a key: its bytes, untouched, to stdout or `output`; a newline is
/// added only for a terminal, and only after text. With `json`, an object
/// with the value as text or hex.
pub fn get(node: &str, key: &str, output: Option<&Path>, json: bool) -> Result<(), Failure> {
    let body = call(Route::Kv, "GET", node, &key_path(key), None)?;
    if let Some(path) = output {
        return std::fs::write(path, &body)
            .map_err(|e| Failure::from(format!("cannot write {}: {e}", path.display())));
    }
    if json {
        let (field, value) = value_json(&body);
        let mut v = json!({ "key": key });
        v[field] = value;
        return write_out(format!("{}\n", pretty(&v)).as_bytes());
    }
    write_out(&body)?;
    let text_on_a_terminal = std::io::stdout().is_terminal() && std::str::from_utf8(&body).is_ok();
    if text_on_a_terminal && !body.ends_with(b"\n") {
        write_out(b"\n")?;
    }
    Ok(())
}

/// The bytes `source` names.
fn read_value(source: &Source) -> Result<Vec<u8>, Failure> {
    match source {
        Source::Arg(s) => Ok(s.clone().into_bytes()),
        Source::File(p) => {
            std::fs::read(p).map_err(|e| Failure::from(format!("cannot read {}: {e}", p.display())))
        }
        Source::Stdin => {
            let mut stdin = std::io::stdin().lock();
            if stdin.is_terminal() {
                return Err(Failure::usage(
                    "put needs a value: give it as an argument, with --file FILE, or on stdin (e.g. `ringsync put KEY < FILE`)",
                ));
            }
            let mut bytes = Vec::new();
            stdin
                .read_to_end(&mut bytes)
                .map_err(|e| Failure::from(format!("cannot read stdin: {e}")))?;
            Ok(bytes)
        }
    }
}

fn version(v: &Value) -> &str {
    v.get("version").and_then(Value::as_str).unwrap_or("?")
}

/// Writes a key.
pub fn put(node: &str, key: &str, source: &Source, json: bool) -> Result<(), Failure> {
    let value = read_value(source)?;
    let body = call(Route::Kv, "PUT", node, &key_path(key), Some(value))?;
    let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    if json {
        println!("{}", pretty(&v));
    } else {
        println!("wrote {key} at version {}", version(&v));
    }
    Ok(())
}

/// Deletes a key. The delete is recorded either way (it also deletes a
/// write this node has not received yet), but a key the node did not hold
/// is said, and is [`Exit::NotFound`].
pub fn del(node: &str, key: &str, json: bool) -> Result<(), Failure> {
    let body = call(Route::Kv, "DELETE", node, &key_path(key), None)?;
    let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    if json {
        println!("{}", pretty(&v));
    } else if v.get("existed").and_then(Value::as_bool) != Some(false) {
        println!("deleted {key} at version {}", version(&v));
    }
    if v.get("existed").and_then(Value::as_bool) == Some(false) {
        return Err(Failure::new(
            Exit::NotFound,
            format!(
                "no key {key:?} at {node}: nothing to delete (the delete is recorded at version {}, so a write of it not yet synced here is deleted too)",
                version(&v)
            ),
        ));
    }
    Ok(())
}

/// What `list` asks for.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ListQuery {
    /// Only keys that start with this.
    pub prefix: String,
    /// Only keys after this one (the `next_after` of the page before).
    pub after: Option<String>,
    /// Entries per page (the node caps it at 1000).
    pub limit: u32,
    /// Follow `next_after` to the last page.
    pub all: bool,
}

/// An entry as one line: the key, a tab, the value as text (escaped when
/// it holds control characters), or `hex:` and its bytes.
fn entry_line(e: &Value) -> String {
    let key = e.get("key").and_then(Value::as_str).unwrap_or("?");
    let value = match (
        e.get("value").and_then(Value::as_str),
        e.get("value_hex").and_then(Value::as_str),
    ) {
        (Some(t), _) if t.chars().any(char::is_control) => format!("{t:?}"),
        (Some(t), _) => t.to_string(),
        (None, Some(h)) => format!("hex:{h}"),
        (None, None) => String::new(),
    };
    format!("{key}\t{value}\n")
}

/// Lists keys in key order over `GET /v1/kv`: one page, or every page
/// with `all`. A page that is not the last says how to ask for the next.
pub fn list(node: &str, q: &ListQuery, json: bool) -> Result<(), Failure> {
    let mut after = q.after.clone();
    let mut entries: Vec<Value> = Vec::new();
    let next = loop {
        let mut path = format!(
            "/v1/kv?prefix={}&limit={}",
            percent_encode(&q.prefix),
            q.limit
        );
        if let Some(a) = &after {
            path.push_str(&format!("&after={}", percent_encode(a)));
        }
        let body = call(Route::Kv, "GET", node, &path, None)?;
        let page: Value = serde_json::from_slice(&body)
            .map_err(|e| Failure::from(format!("the node's page is not JSON: {e}")))?;
        let got = page
            .get("entries")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        if !json {
            let text: String = got.iter().map(entry_line).collect();
            write_out(text.as_bytes())?;
        }
        entries.extend(got);
        let next = page
            .get("next_after")
            .and_then(Value::as_str)
            .map(str::to_string);
        match next {
            Some(n) if q.all => after = Some(n),
            other => break other,
        }
    };
    if json {
        println!(
            "{}",
            pretty(&json!({ "entries": entries, "next_after": next }))
        );
    } else if let Some(n) = next {
        eprintln!("more keys follow: add --after {n:?} for the next page, or --all");
    }
    Ok(())
}
