//! README.md tells the truth: its walkthrough runs as written against real
//! nodes, and its command-line section lists exactly the commands, flags,
//! environment variables and exit codes `ringsync --help` does.

mod common;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use common::{free_ports, BIN};

/// How long one step may keep failing its `expect` before the test fails:
/// the slowest step waits for a node to be judged failed (a few cycles of
/// 1 s) in a debug build on a busy machine.
const STEP_DEADLINE: Duration = Duration::from_secs(45);
/// How long one command may run: a sync with a node down is seconds.
const COMMAND_DEADLINE: Duration = Duration::from_secs(60);

fn readme() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md");
    std::fs::read_to_string(&path).expect("read README.md")
}

/// The text between `<!-- NAME:begin -->` and `<!-- NAME:end -->`.
fn section(text: &str, name: &str) -> String {
    let begin = format!("<!-- {name}:begin -->");
    let end = format!("<!-- {name}:end -->");
    let from = text
        .find(&begin)
        .unwrap_or_else(|| panic!("README.md has no {begin}"));
    let to = text[from..]
        .find(&end)
        .unwrap_or_else(|| panic!("README.md has no {end} after {begin}"));
    text[from + begin.len()..from + to].to_string()
}

/// One line of the walkthrough: the command, the text its output must
/// hold (retried until it does), and the exit code it must end with.
#[derive(Debug)]
struct Step {
    command: String,
    expect: Option<String>,
    exit: i32,
}

/// The walkthrough's lines. A comment may say `expect "TEXT"` (the output
/// holds TEXT, perhaps only after a while: the step is retried) and `exits
/// N` (the exit code; 0 when unsaid).
fn steps(text: &str) -> Vec<Step> {
    let block = section(text, "walkthrough");
    let mut out = Vec::new();
    let mut in_code = false;
    for line in block.lines() {
        if line.starts_with("```") {
            in_code = !in_code;
            continue;
        }
        let line = line.trim();
        if !in_code || line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (command, comment) = match line.find(" # ") {
            Some(i) => (line[..i].trim(), &line[i + 3..]),
            None => (line, ""),
        };
        let expect = comment.find("expect \"").map(|i| {
            let rest = &comment[i + 8..];
            rest[..rest.find('"').expect("a closing quote after expect \"")].to_string()
        });
        let exit = comment.find("exits ").map_or(0, |i| {
            comment[i + 6..]
                .split(|c: char| !c.is_ascii_digit())
                .next()
                .and_then(|n| n.parse().ok())
                .expect("a number after `exits `")
        });
        out.push(Step {
            command: command.to_string(),
            expect,
            exit,
        });
    }
    assert!(!in_code, "the walkthrough's code block is not closed");
    out
}

/// A bash that the steps are typed into, as a user pastes them, in its own
/// process group: dropping it kills the group, so every node the
/// walkthrough started goes with it, whatever failed.
struct Shell {
    child: Child,
    stdin: ChildStdin,
    lines: Receiver<String>,
    transcript: String,
}

const DONE: &str = "@@walkthrough-step-done ";

impl Shell {
    fn start(cwd: &Path, path: &str) -> Shell {
        let mut child = Command::new("bash")
            .args(["--noprofile", "--norc"])
            .current_dir(cwd)
            .env("PATH", path)
            .env_remove("RINGSYNC_NODE")
            .env_remove("RINGSYNC_TOKEN_FILE")
            .env_remove("RINGSYNC_SECRET_FILE")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .expect("start bash");
        let stdin = child.stdin.take().expect("bash's stdin");
        let stdout = child.stdout.take().expect("bash's stdout");
        let (tx, lines) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut shell = Shell {
            child,
            stdin,
            lines,
            transcript: String::new(),
        };
        // Commands' errors belong in the transcript with their output.
        shell.run("exec 2>&1");
        shell
    }

    /// Types `command`, returns its exit code and output.
    fn run(&mut self, command: &str) -> (i32, String) {
        self.transcript.push_str(&format!("$ {command}\n"));
        let typed = format!("{command}\nprintf '\\n{DONE}%d\\n' \"$?\"\n");
        if let Err(e) = self.stdin.write_all(typed.as_bytes()) {
            panic!("bash took no input ({e}):\n{}", self.transcript);
        }
        let _ = self.stdin.flush();
        let deadline = Instant::now() + COMMAND_DEADLINE;
        let mut output = String::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => match line.strip_prefix(DONE) {
                    Some(code) => {
                        let code = code.trim().parse().expect("an exit code");
                        let output = output.trim_end().to_string();
                        self.transcript.push_str(&format!("{output}\n[exit {code}]\n"));
                        return (code, output);
                    }
                    None => {
                        output.push_str(&line);
                        output.push('\n');
                    }
                },
                Err(RecvTimeoutError::Timeout) => panic!(
                    "`{command}` did not end within {COMMAND_DEADLINE:?}; output:\n{output}\ntranscript:\n{}",
                    self.transcript
                ),
                Err(RecvTimeoutError::Disconnected) => {
                    panic!("bash exited; transcript:\n{}{output}", self.transcript)
                }
            }
        }
    }
}

impl Drop for Shell {
    fn drop(&mut self) {
        // The group's id is bash's pid (process_group(0)).
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.child.id())])
            .stderr(Stdio::null())
            .status();
        let _ = self.child.wait();
    }
}

/// The walkthrough, in a temp dir that holds a copy of the topology file
/// with its ports moved to free ones (other tests, or a user's own nodes,
/// may hold 7101-7103); the commands' URLs move with them. `cargo install
/// --locked --path .` is the one line not run: the binary under test goes
/// first on the PATH instead, which is what the line achieves.
#[test]
fn the_walkthrough_runs_as_written() {
    let text = readme();
    let steps = steps(&text);
    assert_eq!(
        steps.first().map(|s| s.command.as_str()),
        Some("cargo install --locked --path ."),
        "the walkthrough starts by installing the binary"
    );
    for word in ["kill $B", "mode fallback", "ringsync sync", "ringsync list"] {
        assert!(
            steps
                .iter()
                .any(|s| s.command.contains(word) || s.expect.as_deref() == Some(word)),
            "the walkthrough has no step with {word:?}"
        );
    }

    let tmp = tempfile::tempdir().expect("a temp dir");
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let topology = std::fs::read_to_string(manifest.join("topology/local-3.toml"))
        .expect("read topology/local-3.toml");
    let moves: Vec<(String, String)> = [7101, 7102, 7103]
        .iter()
        .zip(free_ports(3))
        .map(|(fixed, free)| (format!("127.0.0.1:{fixed}"), format!("127.0.0.1:{free}")))
        .collect();
    let moved = |s: &str| {
        moves
            .iter()
            .fold(s.to_string(), |s, (from, to)| s.replace(from, to))
    };
    for (from, _) in &moves {
        assert!(topology.contains(from), "local-3.toml has no {from}");
    }
    std::fs::create_dir(tmp.path().join("topology")).expect("mkdir topology");
    std::fs::write(tmp.path().join("topology/local-3.toml"), moved(&topology))
        .expect("write the topology copy");

    let bin_dir = Path::new(BIN).parent().expect("the binary's folder");
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut shell = Shell::start(tmp.path(), &path);
    for step in &steps[1..] {
        let command = moved(&step.command);
        let started = Instant::now();
        loop {
            let (code, output) = shell.run(&command);
            let holds = step.expect.as_ref().is_none_or(|e| output.contains(e));
            if code == step.exit && holds {
                break;
            }
            let may_retry = step.expect.is_some() && started.elapsed() < STEP_DEADLINE;
            assert!(
                may_retry,
                "`{command}` should exit {} and print {:?}; transcript:\n{}\nnode a's log:\n{}",
                step.exit,
                step.expect,
                shell.transcript,
                std::fs::read_to_string(tmp.path().join("data/local-3/a.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }
    // The last line stopped every node: each exits 0 on SIGTERM.
    let (code, output) = shell.run("wait $A $B $C; echo \"exits: $?\"");
    assert_eq!(code, 0, "{output}");
    assert!(
        output.contains("exits: 0"),
        "a node did not stop cleanly: {output}\ntranscript:\n{}",
        shell.transcript
    );
}

fn help(args: &[&str]) -> String {
    let out = Command::new(BIN)
        .args(args)
        .arg("--help")
        .output()
        .expect("run ringsync --help");
    assert!(out.status.success(), "ringsync {args:?} --help failed");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The lines of a help section (`Commands:`, `Options:`), up to a blank line.
fn help_section<'a>(text: &'a str, title: &str) -> Vec<&'a str> {
    text.lines()
        .skip_while(|l| *l != title)
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .collect()
}

/// Every leaf command (`["topology", "check"]`) with its long flags.
fn commands_in_help(prefix: &[&str]) -> Vec<(String, BTreeSet<String>)> {
    let text = help(prefix);
    let subcommands: Vec<String> = help_section(&text, "Commands:")
        .iter()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .map(str::to_string)
        .collect();
    if subcommands.is_empty() {
        let flags = help_section(&text, "Options:")
            .iter()
            .filter_map(|l| {
                let l = l.trim_start();
                // `-o, --output <FILE>`: the long name after the short one.
                let short = l.len() > 4 && l.starts_with('-') && &l[2..4] == ", ";
                let l = if short { &l[4..] } else { l };
                l.strip_prefix("--")
                    .and_then(|f| f.split([' ', '<', '[']).next())
                    .map(|f| format!("--{f}"))
            })
            .filter(|f| f != "--help" && f != "--version")
            .collect();
        return vec![(prefix.join(" "), flags)];
    }
    subcommands
        .iter()
        .flat_map(|c| {
            let mut p = prefix.to_vec();
            p.push(c);
            commands_in_help(&p)
        })
        .collect()
}

/// Every command of README's table (`ringsync topology check FILE` is
/// `topology check`) with the long flags its row names.
fn commands_in_readme(reference: &str) -> Vec<(String, BTreeSet<String>)> {
    reference
        .lines()
        .filter(|l| l.starts_with("| `ringsync "))
        .map(|row| {
            let cells: Vec<&str> = row.split('|').map(str::trim).collect();
            let usage = cells[1].trim_matches('`').trim_start_matches("ringsync ");
            let name: Vec<&str> = usage
                .split_whitespace()
                .take_while(|w| w.chars().all(|c| c.is_ascii_lowercase()))
                .collect();
            let flags = cells[2]
                .split(['`', ' '])
                .filter(|w| w.starts_with("--"))
                .map(str::to_string)
                .collect();
            (name.join(" "), flags)
        })
        .collect()
}

#[test]
fn readme_and_help_agree_on_every_command_and_flag() {
    let reference = section(&readme(), "cli-reference");
    let from_help = commands_in_help(&[]);
    let from_readme = commands_in_readme(&reference);
    let names = |v: &[(String, BTreeSet<String>)]| -> BTreeSet<String> {
        v.iter().map(|(n, _)| n.clone()).collect()
    };
    assert_eq!(
        names(&from_readme),
        names(&from_help),
        "README's command table and `ringsync --help` list different commands"
    );
    for (name, flags) in &from_help {
        let (_, documented) = from_readme
            .iter()
            .find(|(n, _)| n == name)
            .expect("a row for every command");
        assert_eq!(
            documented, flags,
            "README's row for `ringsync {name}` and `ringsync {name} --help` list different flags"
        );
    }
}

#[test]
fn readme_and_help_agree_on_environment_and_exit_codes() {
    let reference = section(&readme(), "cli-reference");
    let top = help(&[]);
    let env_in = |text: &str| -> BTreeSet<String> {
        text.split(|c: char| !(c.is_ascii_uppercase() || c == '_'))
            .filter(|w| w.starts_with("RINGSYNC_") || *w == "RUST_LOG")
            .map(str::to_string)
            .collect()
    };
    let help_env: Vec<String> = help_section(&top, "Environment:")
        .iter()
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .collect();
    assert!(!help_env.is_empty(), "--help names no environment variable");
    assert_eq!(
        env_in(&reference),
        help_env.iter().cloned().collect::<BTreeSet<_>>(),
        "README's command-line section and --help name different environment variables"
    );
    // Nor does any subcommand's help name a variable the top help does not.
    for (name, _) in commands_in_help(&[]) {
        let args: Vec<&str> = name.split(' ').collect();
        for var in env_in(&help(&args)) {
            assert!(
                help_env.contains(&var),
                "`ringsync {name} --help` names {var}"
            );
        }
    }

    let help_codes: Vec<String> = help_section(&top, "Exit codes:")
        .iter()
        .map(|l| l.trim().to_string())
        .collect();
    assert!(help_codes.len() >= 7, "--help lists no exit codes: {top}");
    let readme_codes: Vec<String> = reference
        .lines()
        .map(str::trim)
        .filter(|l| l.split(' ').next().is_some_and(|w| w.parse::<u8>().is_ok()))
        .map(str::to_string)
        .collect();
    assert_eq!(
        readme_codes, help_codes,
        "README's exit codes and --help's differ"
    );
}

fn repo_file(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {name}: {e}"))
}

#[test]
fn the_license_file_holds_the_license_cargo_toml_names() {
    let manifest = repo_file("Cargo.toml");
    assert!(
        manifest
            .lines()
            .any(|l| l.trim() == "license = \"Apache-2.0\""),
        "Cargo.toml names another license: update LICENSE with it"
    );
    let license = repo_file("LICENSE");
    assert!(license.contains("Apache License"), "LICENSE is not Apache");
    assert!(license.contains("Version 2.0, January 2004"));
    assert!(
        license.contains("END OF TERMS AND CONDITIONS"),
        "LICENSE is cut short"
    );
    let changelog = repo_file("CHANGELOG.md");
    let version = manifest
        .lines()
        .find_map(|l| l.strip_prefix("version = \""))
        .and_then(|v| v.strip_suffix('"'))
        .expect("Cargo.toml's version");
    assert!(
        changelog.contains(&format!("## [{version}]")),
        "CHANGELOG.md has no section for version {version}"
    );
}

/// Repository paths named in the documents and manifests (`src/...`,
/// `docs/...`, `topology/...`): each names a file or folder that is in the
/// repository, and none climbs out of it with `../`.
#[test]
fn paths_the_documents_name_are_in_the_repository() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let tops = [
        "src/",
        "docs/",
        "tests/",
        "topology/",
        "systemd/",
        "bench/",
        ".ci/",
        "debian/",
    ];
    for doc in [
        "Cargo.toml",
        "deny.toml",
        "README.md",
        "CHANGELOG.md",
        "docs/DESIGN.md",
        "systemd/README.md",
        "topology/local-3.toml",
    ] {
        let text = repo_file(doc);
        for word in text.split(|c: char| c.is_whitespace() || "`()[]\"',;:*".contains(c)) {
            let word = word.trim_end_matches(['.', '!', '?']);
            assert!(
                !word.starts_with("../..") && !word.contains("/../.."),
                "{doc} points outside the repository: {word}"
            );
            let named = tops.iter().any(|t| word.starts_with(t));
            // Placeholders (<stamp>), globs and URLs' paths are not files.
            if !named || word.contains(['<', '{', '$']) || word.ends_with('/') && word.len() < 4 {
                continue;
            }
            assert!(
                root.join(word).exists(),
                "{doc} names {word}, which is not in the repository"
            );
        }
    }
}
