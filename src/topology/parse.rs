//! Reading topology text into raw tables, and the errors that point at a
//! file and line in it.

use std::ops::Range;
use std::path::Path;

use serde::Deserialize;
use toml::Spanned;

use super::TopologyError;

/// The file as written, before defaults and checks. Everything a check may
/// need to point at is `Spanned` so errors can name the line.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    cluster: Option<Spanned<RawCluster>>,
    #[serde(default)]
    node: Vec<Spanned<RawNode>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCluster {
    pub(super) name: Option<Spanned<String>>,
    pub(super) interval: Option<Spanned<String>>,
    pub(super) schedule: Option<Spanned<String>>,
    pub(super) peer_timeout: Option<Spanned<String>>,
    pub(super) tombstone_lifetime: Option<Spanned<String>>,
    pub(super) max_value_size: Option<Spanned<i64>>,
    pub(super) max_clock_drift: Option<Spanned<String>>,
    pub(super) secret_file: Option<Spanned<String>>,
    pub(super) tokens_file: Option<Spanned<String>>,
    pub(super) request_timeout: Option<Spanned<String>>,
    pub(super) failure_threshold: Option<Spanned<i64>>,
    pub(super) relay: Option<bool>,
    pub(super) sync_max_rounds: Option<Spanned<i64>>,
    pub(super) epoch: Option<Spanned<i64>>,
    pub(super) cache_size: Option<Spanned<RawSize>>,
}

/// A size as written: bytes, or a number with a unit ("32MiB").
#[derive(Deserialize)]
#[serde(untagged)]
pub(super) enum RawSize {
    Bytes(i64),
    Text(String),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawNode {
    pub(super) id: Option<Spanned<String>>,
    pub(super) addr: Option<Spanned<String>>,
    pub(super) data_dir: Option<Spanned<String>>,
}

/// Builds errors that point into one text.
pub(super) struct Ctx<'a> {
    pub(super) text: &'a str,
    pub(super) source: &'a str,
    /// Folder that relative paths in the text resolve against.
    pub(super) base_dir: Option<&'a Path>,
}

impl Ctx<'_> {
    /// Reads the text into its `[cluster]` table and its `[[node]]` tables,
    /// in file order; a file without `[cluster]` is refused here.
    pub(super) fn read(
        &self,
    ) -> Result<(Spanned<RawCluster>, Vec<Spanned<RawNode>>), TopologyError> {
        let raw: RawFile = toml::from_str(self.text).map_err(|e| self.toml_error(&e))?;
        let Some(cluster) = raw.cluster else {
            return Err(self.err(
                None,
                "there is no [cluster] table; add one at the top with at least: [cluster] name = \"my-cluster\"",
            ));
        };
        Ok((cluster, raw.node))
    }

    /// 1-based line of a byte offset; offsets past the end count as the end.
    pub(super) fn line_of(&self, offset: usize) -> usize {
        let end = offset.min(self.text.len());
        self.text.as_bytes()[..end]
            .iter()
            .filter(|&&b| b == b'\n')
            .count()
            + 1
    }

    pub(super) fn err(
        &self,
        span: Option<Range<usize>>,
        message: impl Into<String>,
    ) -> TopologyError {
        self.on_line(span.map(|s| self.line_of(s.start)), message)
    }

    pub(super) fn at(&self, span: Range<usize>, message: impl Into<String>) -> TopologyError {
        self.err(Some(span), message)
    }

    pub(super) fn on_line(&self, line: Option<usize>, message: impl Into<String>) -> TopologyError {
        TopologyError {
            source: self.source.to_string(),
            line,
            message: message.into(),
        }
    }

    /// Turns a toml error (syntax, unknown key, wrong type) into ours.
    fn toml_error(&self, e: &toml::de::Error) -> TopologyError {
        let msg = e.message().trim_end();
        let hint = if msg.starts_with("unknown field") {
            "; remove or rename the key (see topology/example-production.toml for every key)"
        } else if msg.contains("expected a string") {
            "; durations, names, ids, addresses and paths are quoted strings, like interval = \"1s\""
        } else if msg.contains("expected i64") || msg.contains("expected an integer") {
            "; counts and sizes are plain integers, like max_value_size = 1048576"
        } else if msg.contains("expected a boolean") {
            "; use relay = true or relay = false"
        } else if msg.contains("invalid type") {
            "; fix the value's type (see topology/example-production.toml)"
        } else {
            "; fix the TOML syntax at this spot (strings need double quotes, tables are [cluster] and [[node]])"
        };
        self.err(e.span(), format!("{msg}{hint}"))
    }
}
