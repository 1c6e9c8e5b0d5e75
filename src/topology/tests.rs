//! Tests of loading, checking and describing topology files.

use super::*;

const VALID: &str = r#"
[cluster]
name = "demo"
interval = "1s"

[[node]]
id = "a"
addr = "127.0.0.1:7101"

[[node]]
id = "b"
addr = "127.0.0.1:7102"

[[node]]
id = "c"
addr = "127.0.0.1:7103"
"#;

fn parse(text: &str) -> Result<Topology, TopologyError> {
    Topology::parse(text, "t.toml", None)
}

fn err(text: &str) -> TopologyError {
    match parse(text) {
        Ok(t) => panic!("expected an error, got {t:?}"),
        Err(e) => e,
    }
}

/// 1-based line of the first line containing `needle`.
fn line_of(text: &str, needle: &str) -> usize {
    text.lines()
        .position(|l| l.contains(needle))
        .map(|i| i + 1)
        .unwrap_or_else(|| panic!("{needle:?} not in text"))
}

fn nodes(n: usize) -> String {
    (0..n)
        .map(|i| {
            format!(
                "[[node]]\nid = \"n{i}\"\naddr = \"127.0.0.1:{}\"\n",
                7100 + i
            )
        })
        .collect()
}

#[test]
fn valid_file_gets_defaults() {
    let t = parse(VALID).unwrap();
    assert_eq!(t.source, "t.toml");
    assert_eq!(t.cluster.name, "demo");
    assert_eq!(t.cluster.interval, Duration::from_secs(1));
    assert_eq!(t.cluster.schedule, Schedule::Successor);
    assert_eq!(t.cluster.peer_timeout, Duration::from_millis(500));
    assert_eq!(t.cluster.tombstone_lifetime, Duration::from_secs(7 * 86400));
    assert_eq!(t.cluster.max_value_size, 1 << 20);
    assert_eq!(t.cluster.cache_size, 32 << 20);
    assert_eq!(t.cluster.max_clock_drift, Duration::from_secs(30));
    assert_eq!(t.cluster.secret_file, None);
    assert_eq!(t.cluster.tokens_file, None);
    assert_eq!(t.cluster.request_timeout, Duration::from_secs(10));
    assert_eq!(t.cluster.failure_threshold, 3);
    assert!(t.cluster.relay);
    assert_eq!(t.cluster.sync_max_rounds, 64);
    let ids: Vec<&str> = t.nodes.iter().map(|n| n.id.as_str()).collect();
    assert_eq!(ids, ["a", "b", "c"]);
    assert_eq!(t.position("b"), Some(1));
    assert_eq!(t.position("z"), None);
    let (p, n) = t.node("c").unwrap();
    assert_eq!((p, n.addr.as_str()), (2, "127.0.0.1:7103"));
}

#[test]
fn every_key_is_read() {
    let text = r#"[cluster]
name = "x"
interval = "200ms"
schedule = "doubling"
peer_timeout = "50ms"
tombstone_lifetime = "1h"
max_value_size = 4096
max_clock_drift = "2s"
secret_file = "secret"
tokens_file = "tokens"
request_timeout = "3s"
failure_threshold = 5
relay = false
sync_max_rounds = 10

[[node]]
id = "z"
addr = "[::1]:7000"
data_dir = "/abs/z"
[[node]]
id = "y"
addr = "h:1"
data_dir = "rel/y"
"#;
    let t = Topology::parse(text, "f", Some(Path::new("/etc/rs"))).unwrap();
    let c = &t.cluster;
    assert_eq!(c.interval, Duration::from_millis(200));
    assert_eq!(c.schedule, Schedule::Doubling);
    assert_eq!(c.peer_timeout, Duration::from_millis(50));
    assert_eq!(c.tombstone_lifetime, Duration::from_secs(3600));
    assert_eq!(c.max_value_size, 4096);
    assert_eq!(c.max_clock_drift, Duration::from_secs(2));
    assert_eq!(c.secret_file.as_deref(), Some(Path::new("/etc/rs/secret")));
    assert_eq!(c.tokens_file.as_deref(), Some(Path::new("/etc/rs/tokens")));
    assert_eq!(c.request_timeout, Duration::from_secs(3));
    assert_eq!(c.failure_threshold, 5);
    assert!(!c.relay);
    assert_eq!(c.sync_max_rounds, 10);
    assert_eq!(t.nodes[0].data_dir.as_deref(), Some(Path::new("/abs/z")));
    assert_eq!(
        t.nodes[1].data_dir.as_deref(),
        Some(Path::new("/etc/rs/rel/y"))
    );
}

#[test]
fn peer_timeout_defaults_to_half_interval() {
    let t = parse(&VALID.replace("\"1s\"", "\"3s\"")).unwrap();
    assert_eq!(t.cluster.peer_timeout, Duration::from_millis(1500));
}

#[test]
fn display_has_file_and_line() {
    let e = TopologyError {
        source: "f.toml".into(),
        line: Some(3),
        message: "bad".into(),
    };
    assert_eq!(e.to_string(), "f.toml:3: bad");
    let e = TopologyError { line: None, ..e };
    assert_eq!(e.to_string(), "f.toml: bad");
}

#[test]
fn toml_syntax_error() {
    let text = VALID.replace("id = \"b\"", "id = b\"");
    let e = err(&text);
    assert_eq!(e.source, "t.toml");
    assert_eq!(e.line, Some(line_of(&text, "id = b\"")), "{e}");
    assert!(e.message.contains("fix the TOML syntax"), "{e}");
}

#[test]
fn unknown_key_in_cluster() {
    let text = VALID.replace("interval = \"1s\"", "interval = \"1s\"\nintervall = \"2s\"");
    let e = err(&text);
    assert_eq!(e.line, Some(line_of(&text, "intervall")), "{e}");
    assert!(e.message.contains("intervall"), "{e}");
    assert!(e.message.contains("remove or rename"), "{e}");
}

#[test]
fn unknown_key_in_node() {
    let text = VALID.replace("id = \"b\"", "id = \"b\"\nport = 7102");
    let e = err(&text);
    assert_eq!(e.line, Some(line_of(&text, "port = 7102")), "{e}");
    assert!(e.message.contains("port"), "{e}");
    assert!(e.message.contains("remove or rename"), "{e}");
}

#[test]
fn unknown_top_level_table() {
    let text = format!("{VALID}\n[nodes]\nid = \"q\"\n");
    let e = err(&text);
    assert!(e.message.contains("nodes"), "{e}");
    assert!(e.line.is_some(), "{e}");
}

#[test]
fn wrong_type_says_what_to_write() {
    let text = VALID.replace("interval = \"1s\"", "interval = 1");
    let e = err(&text);
    assert_eq!(e.line, Some(line_of(&text, "interval = 1")), "{e}");
    assert!(e.message.contains("quoted strings"), "{e}");
}

#[test]
fn missing_cluster() {
    let e = err(&nodes(3));
    assert!(e.message.contains("[cluster]"), "{e}");
    assert!(e.message.contains("add one"), "{e}");
    assert!(e.to_string().starts_with("t.toml: "), "{e}");
}

#[test]
fn missing_name() {
    let text = format!("# topology\n[cluster]\ninterval = \"1s\"\n\n{}", nodes(2));
    let e = err(&text);
    assert_eq!(
        e.line,
        Some(line_of(&text, "[cluster]")),
        "points at [cluster]: {e}"
    );
    assert!(e.message.contains("add name ="), "{e}");
}

#[test]
fn empty_name() {
    let text = VALID.replace("name = \"demo\"", "name = \"  \"");
    let e = err(&text);
    assert_eq!(e.line, Some(line_of(&text, "name =")), "{e}");
    assert!(e.message.contains("empty"), "{e}");
}

#[test]
fn duplicate_id_points_at_second() {
    let text = VALID.replace("id = \"c\"", "id = \"a\"");
    let e = err(&text);
    let first = line_of(&text, "id = \"a\"");
    let second = text
        .lines()
        .enumerate()
        .filter(|(_, l)| l.contains("id = \"a\""))
        .map(|(i, _)| i + 1)
        .nth(1)
        .unwrap();
    assert_eq!(e.line, Some(second), "{e}");
    assert!(e.message.contains(&format!("first on line {first}")), "{e}");
    assert!(e.message.contains("unique"), "{e}");
}

#[test]
fn duplicate_addr() {
    let text = VALID.replace("127.0.0.1:7103", "127.0.0.1:7101");
    let e = err(&text);
    let second = text
        .lines()
        .enumerate()
        .filter(|(_, l)| l.contains("127.0.0.1:7101"))
        .map(|(i, _)| i + 1)
        .nth(1)
        .unwrap();
    assert_eq!(e.line, Some(second), "{e}");
    assert!(
        e.message
            .contains(&format!("line {}", line_of(&text, "7101"))),
        "{e}"
    );
    assert!(e.message.contains("its own host:port"), "{e}");
}

#[test]
fn duplicate_addr_ignores_host_case() {
    let text = "[cluster]\nname = \"x\"\n[[node]]\nid = \"a\"\naddr = \"DB1:1\"\n[[node]]\nid = \"b\"\naddr = \"db1:1\"\n";
    assert!(err(text).message.contains("already used"));
}

#[test]
fn fewer_than_two_nodes() {
    let e = err("[cluster]\nname = \"x\"\n");
    assert!(e.message.contains("at least 2"), "{e}");
    let text = format!("[cluster]\nname = \"x\"\n{}", nodes(1));
    let e = err(&text);
    assert_eq!(e.line, Some(line_of(&text, "id =")), "{e}");
    assert!(e.message.contains("has 1 node"), "{e}");
    assert!(e.message.contains("add a [[node]]"), "{e}");
}

#[test]
fn bad_duration() {
    for key in [
        "interval",
        "peer_timeout",
        "tombstone_lifetime",
        "max_clock_drift",
        "request_timeout",
    ] {
        let text = VALID.replace(
            "interval = \"1s\"",
            &format!("interval = \"1s\"\n{key} = \"5 parsecs\""),
        );
        let text = if key == "interval" {
            VALID.replace("interval = \"1s\"", "interval = \"5 parsecs\"")
        } else {
            text
        };
        let e = err(&text);
        assert_eq!(e.line, Some(line_of(&text, "parsecs")), "{e}");
        assert!(e.message.contains(key), "{e}");
        assert!(e.message.contains(r#"like "500ms", "1s""#), "{e}");
        assert!(e.message.contains("7days"), "{e}");
    }
}

#[test]
fn interval_too_short_and_zero_timeout() {
    let text = VALID.replace("\"1s\"", "\"5ms\"");
    let e = err(&text);
    assert_eq!(e.line, Some(line_of(&text, "interval")), "{e}");
    assert!(e.message.contains("10ms"), "{e}");
    assert!(parse(&VALID.replace("\"1s\"", "\"10ms\"")).is_ok());

    let text = VALID.replace("interval = \"1s\"", "peer_timeout = \"0s\"");
    let e = err(&text);
    assert_eq!(e.line, Some(line_of(&text, "peer_timeout")), "{e}");
}

#[test]
fn bad_schedule() {
    let text = VALID.replace("interval = \"1s\"", "schedule = \"round-robin\"");
    let e = err(&text);
    assert_eq!(e.line, Some(line_of(&text, "schedule")), "{e}");
    assert!(e.message.contains("round-robin"), "{e}");
    assert!(e.message.contains("doubling"), "{e}");
    for s in ["successor", "doubling", "random"] {
        let t = parse(&VALID.replace("interval = \"1s\"", &format!("schedule = \"{s}\""))).unwrap();
        assert_eq!(t.cluster.schedule.name(), s);
    }
}

#[test]
fn cache_size_takes_bytes_or_a_unit_and_refuses_the_rest() {
    for (val, bytes) in [
        ("67108864", 64u64 << 20),
        ("\"64MiB\"", 64 << 20),
        ("\"2 GB\"", 2_000_000_000),
    ] {
        let text = VALID.replace("interval = \"1s\"", &format!("cache_size = {val}"));
        assert_eq!(parse(&text).unwrap().cluster.cache_size, bytes, "{val}");
    }
    for val in ["\"32 parsecs\"", "-1", "\"512KiB\""] {
        let text = VALID.replace("interval = \"1s\"", &format!("cache_size = {val}"));
        let e = err(&text);
        assert_eq!(e.line, Some(line_of(&text, "cache_size")), "{e}");
        assert!(
            e.message.contains("cache_size") && e.message.contains("32MiB"),
            "{e}"
        );
    }
}

#[test]
fn bad_integers() {
    for (key, val) in [
        ("max_value_size", "0"),
        ("failure_threshold", "0"),
        ("failure_threshold", "-3"),
        ("failure_threshold", "4294967296"),
        ("sync_max_rounds", "0"),
    ] {
        let text = VALID.replace("interval = \"1s\"", &format!("{key} = {val}"));
        let e = err(&text);
        assert_eq!(e.line, Some(line_of(&text, key)), "{e}");
        assert!(e.message.contains("whole number from 1"), "{e}");
    }
}

#[test]
fn invalid_id_characters() {
    for bad in ["a b", "a/b", "ä", "", &"x".repeat(65)] {
        let text = VALID.replace("id = \"b\"", &format!("id = \"{bad}\""));
        let e = err(&text);
        assert_eq!(
            e.line,
            Some(line_of(&text, "addr = \"127.0.0.1:7102\"") - 1),
            "{bad:?}: {e}"
        );
        assert!(e.message.contains("node id"), "{e}");
    }
    assert!(parse(&VALID.replace("id = \"b\"", "id = \"Node_1.x-y\"")).is_ok());
    let text = VALID.replace("id = \"b\"", "id = \"a/b\"");
    assert!(err(&text).message.contains("use only letters"));
}

#[test]
fn missing_id_or_addr() {
    let text = VALID.replace("id = \"b\"\n", "");
    let e = err(&text);
    assert!(e.message.contains("has no id"), "{e}");
    assert!(e.line.is_some());
    let text = VALID.replace("addr = \"127.0.0.1:7102\"\n", "");
    let e = err(&text);
    assert!(e.message.contains("no addr"), "{e}");
    assert!(e.line.is_some());
}

#[test]
fn bad_addr() {
    for (bad, says) in [
        ("127.0.0.1", "no port"),
        ("127.0.0.1:0", "1 to 65535"),
        ("127.0.0.1:http", "1 to 65535"),
        ("127.0.0.1:65536", "1 to 65535"),
        ("127.0.0.1:+80", "1 to 65535"),
        ("127.0.0.1:", "empty port"),
        (":7000", "no host"),
        ("::1:7000", "brackets"),
        ("[::1]", "no port"),
        ("[::1:7000", "closing"),
        ("[]:7000", "IPv6"),
        ("a b:7000", "whitespace"),
    ] {
        let text = VALID.replace("127.0.0.1:7102", bad);
        let e = err(&text);
        assert_eq!(
            e.line,
            Some(line_of(&text, "id = \"b\"") + 1),
            "{bad:?}: {e}"
        );
        assert!(e.message.contains(says), "{bad:?}: {e}");
    }
    for good in ["[::1]:7102", "db1.example.internal:7100", "localhost:65535"] {
        assert!(
            parse(&VALID.replace("127.0.0.1:7102", good)).is_ok(),
            "{good}"
        );
    }
}

#[test]
fn unknown_node_lists_ids() {
    let t = parse(VALID).unwrap();
    let e = t.node("x").unwrap_err();
    assert!(
        e.message
            .starts_with("node id \"x\" is not in t.toml; its ids are: a, b, c"),
        "{e}"
    );
}

#[test]
fn load_reports_missing_file() {
    let e = Topology::load(Path::new("/nonexistent/ringsync/topo.toml")).unwrap_err();
    assert_eq!(e.source, "/nonexistent/ringsync/topo.toml");
    assert!(
        e.to_string()
            .starts_with("/nonexistent/ringsync/topo.toml: cannot read"),
        "{e}"
    );
}

#[test]
fn fingerprint_covers_name_and_ring_only() {
    let base = parse(VALID).unwrap().fingerprint();
    assert_eq!(parse(VALID).unwrap().fingerprint(), base);
    // Timings and comments do not change it.
    let tuned = VALID.replace("interval = \"1s\"", "interval = \"2s\"\nrelay = false # x");
    assert_eq!(parse(&tuned).unwrap().fingerprint(), base);
    // Name, an id, an addr, or the order do.
    let swapped = VALID
        .replace("id = \"a\"\naddr = \"127.0.0.1:7101\"", "TMP")
        .replace(
            "id = \"b\"\naddr = \"127.0.0.1:7102\"",
            "id = \"a\"\naddr = \"127.0.0.1:7101\"",
        )
        .replace("TMP", "id = \"b\"\naddr = \"127.0.0.1:7102\"");
    for changed in [
        VALID.replace("demo", "demo2"),
        VALID.replace("id = \"c\"", "id = \"d\""),
        VALID.replace("7103", "7104"),
        swapped,
    ] {
        assert_ne!(parse(&changed).unwrap().fingerprint(), base, "{changed}");
    }
    // Length prefixes keep id/addr boundaries apart.
    let a = parse("[cluster]\nname=\"ab\"\n[[node]]\nid=\"c\"\naddr=\"h:1\"\n[[node]]\nid=\"d\"\naddr=\"h:2\"\n").unwrap();
    let b = parse("[cluster]\nname=\"a\"\n[[node]]\nid=\"bc\"\naddr=\"h:1\"\n[[node]]\nid=\"d\"\naddr=\"h:2\"\n").unwrap();
    assert_ne!(a.fingerprint(), b.fingerprint());
}

#[test]
fn describe_shows_the_ring() {
    let t = parse(VALID).unwrap();
    let d = t.describe();
    assert!(d.contains("demo"), "{d}");
    assert!(d.contains("successor"), "{d}");
    assert!(d.contains("1s"), "{d}");
    assert!(d.contains(&format!("{:016x}", t.fingerprint())), "{d}");
    assert!(d.contains("  0 a 127.0.0.1:7101 -> b\n"), "{d}");
    assert!(d.contains("  1 b 127.0.0.1:7102 -> c\n"), "{d}");
    assert!(d.contains("  2 c 127.0.0.1:7103 -> a\n"), "{d}");
}

#[test]
fn never_panics_on_truncated_or_mangled_text() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("topology/example-production.toml");
    let prod = std::fs::read_to_string(path).unwrap_or_default();
    let mut tried = 0usize;
    for text in [VALID, prod.as_str()] {
        for (i, _) in text
            .char_indices()
            .chain(std::iter::once((text.len(), ' ')))
        {
            let _ = parse(&text[..i]);
            let _ = parse(&text[i..]);
            tried += 2;
        }
        // Replace one character at a time with bytes TOML treats specially.
        for (k, (i, c)) in text.char_indices().enumerate() {
            let junk = ["\"", "[", "]", "=", "\n", "#", "ä", "0", ":", ""][k % 10];
            let mangled = format!("{}{junk}{}", &text[..i], &text[i + c.len_utf8()..]);
            let _ = parse(&mangled);
            tried += 1;
        }
    }
    for text in [
        "",
        "\0",
        "[[node]]\n",
        "[cluster]\n[cluster]\n",
        "node = 5\n",
        "cluster = 1\n",
    ] {
        let _ = parse(text);
    }
    assert!(tried > 300, "only {tried} variants");
}

#[test]
fn example_files_validate() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("topology");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    let names: Vec<String> = files
        .iter()
        .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .collect();
    for want in ["example-production.toml", "local-3.toml", "local-5.toml"] {
        assert!(
            names.iter().any(|n| n == want),
            "missing {want} in {names:?}"
        );
    }
    for f in &files {
        let t = Topology::load(f).unwrap_or_else(|e| panic!("{e}"));
        assert!(t.nodes.len() >= 2);
    }
    let l3 = Topology::load(&dir.join("local-3.toml")).unwrap();
    assert_eq!(l3.cluster.name, "local-3");
    assert_eq!(l3.nodes.len(), 3);
    let l5 = Topology::load(&dir.join("local-5.toml")).unwrap();
    assert_eq!(l5.nodes.len(), 5);
    assert_eq!(l5.nodes[4].addr, "127.0.0.1:7205");
    let prod = Topology::load(&dir.join("example-production.toml")).unwrap();
    assert_eq!(prod.nodes.len(), 5);
    assert_eq!(
        prod.cluster.secret_file.as_deref(),
        Some(Path::new("/etc/ringsync/secret"))
    );
}
