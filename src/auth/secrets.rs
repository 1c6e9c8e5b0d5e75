//! The secrets a node holds: the cluster keyring, where it and the client
//! tokens are read from (systemd credentials first, then the topology's
//! files), and `ringsync secret new`.

use std::path::{Path, PathBuf};

use super::crypto::{ct_eq, hex, hmac_sha256, random_bytes};
use super::tokens::Tokens;
use crate::topology::Cluster;

/// Shortest key accepted in a keyring: 128 bits of secret as text.
pub const MIN_KEY_BYTES: usize = 16;

/// Random bytes in a fresh secret: 256 bits, as 64 hex digits.
const SECRET_BYTES: usize = 32;

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

    /// The key new signatures are made with: the first.
    pub(super) fn signing_key(&self) -> &[u8] {
        &self.keys[0]
    }

    /// Whether `mac` is the MAC of `text` under any key. Every key is
    /// tried, each compared in constant time.
    pub(super) fn accepts(&self, text: &str, mac: &[u8]) -> bool {
        self.keys.iter().fold(false, |ok, k| {
            ct_eq(&hmac_sha256(k, text.as_bytes()), mac) | ok
        })
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
        Secrets::load_all(cluster, credentials).map_err(|e| e.join("; "))
    }

    /// As [`Secrets::load`], with the problems of both files, not the first.
    pub fn load_all(cluster: &Cluster, credentials: Option<&Path>) -> Result<Secrets, Vec<String>> {
        let keyring = read_secret_file(
            credentials,
            "secret",
            cluster.secret_file.as_deref(),
            "secret_file",
            Keyring::parse,
        );
        let tokens = read_secret_file(
            credentials,
            "tokens",
            cluster.tokens_file.as_deref(),
            "tokens_file",
            Tokens::parse,
        );
        match (keyring, tokens) {
            (Ok((keyring, keyring_from)), Ok((tokens, tokens_from))) => Ok(Secrets {
                keyring,
                tokens,
                keyring_from,
                tokens_from,
            }),
            (k, t) => Err([k.err(), t.err()].into_iter().flatten().collect()),
        }
    }

    /// `$CREDENTIALS_DIRECTORY`, if systemd set it.
    pub fn credentials_dir() -> Option<PathBuf> {
        std::env::var_os("CREDENTIALS_DIRECTORY")
            .filter(|d| !d.is_empty())
            .map(PathBuf::from)
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
