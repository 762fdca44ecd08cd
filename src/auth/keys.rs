//! The keys file: `[[key]]` lines (id, role, SHA-256 of the token) and `[[client]]` lines
//! (a client certificate name and its role), read, watched for changes, and made new.
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::{Caller, Gate, Role};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyLine {
    id: String,
    role: Role,
    sha256: String,
}

/// A client certificate name (a DNS name in its subject alternative names) and its role:
/// with mutual TLS, a client without a bearer token gets the role of its certificate.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct ClientLine {
    name: String,
    role: Role,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyFile {
    #[serde(default)]
    key: Vec<KeyLine>,
    #[serde(default)]
    client: Vec<ClientLine>,
}

/// The keys in force.
#[derive(Debug, Clone, Default)]
pub struct Keys {
    keys: Vec<(String, Role, [u8; 32])>,
    /// Client certificate name -> role.
    clients: Vec<(String, Role)>,
}

impl Keys {
    /// Parses a keys file's text; errors name the key (by position and id), never a hash.
    pub fn parse(text: &str) -> Result<Keys, String> {
        let file: KeyFile = toml::from_str(text).map_err(|e| {
            format!(
                "auth.keys_file: not a [[key]] list (line {})",
                e.span().map_or(0, |s| text[..s.start].lines().count())
            )
        })?;
        let mut keys = Vec::with_capacity(file.key.len());
        for (i, k) in file.key.into_iter().enumerate() {
            let hash = decode_hex(k.sha256.trim()).ok_or_else(|| {
                format!(
                    "auth.keys_file: key {} ({:?}): sha256 must be 64 hex digits",
                    i + 1,
                    k.id
                )
            })?;
            if k.id.trim().is_empty() {
                return Err(format!("auth.keys_file: key {} has no id", i + 1));
            }
            if keys.iter().any(|(id, _, _)| *id == k.id) {
                return Err(format!("auth.keys_file: key id {:?} appears twice", k.id));
            }
            keys.push((k.id, k.role, hash));
        }
        let clients = file
            .client
            .into_iter()
            .map(|c| (c.name.to_ascii_lowercase(), c.role))
            .collect();
        Ok(Keys { keys, clients })
    }

    /// The role a client certificate's names map to (the first `[[client]]` that matches).
    pub fn find_client(&self, names: &[String]) -> Option<Caller> {
        self.clients.iter().find_map(|(n, role)| {
            names
                .iter()
                .any(|m| m.eq_ignore_ascii_case(n))
                .then(|| Caller {
                    key_id: format!("cert:{n}"),
                    role: *role,
                })
        })
    }

    /// The key a token belongs to. Every key is compared, each in constant time.
    pub fn find(&self, token: &str) -> Option<Caller> {
        let h: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let mut found = None;
        for (id, role, k) in &self.keys {
            let diff = k.iter().zip(&h).fold(0u8, |acc, (a, b)| acc | (a ^ b));
            if diff == 0 {
                found = Some(Caller {
                    key_id: id.clone(),
                    role: *role,
                });
            }
        }
        found
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

fn decode_hex(s: &str) -> Option<[u8; 32]> {
    if s.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// Reads a keys file (a regular file, at most 1 MiB).
pub fn read_keys(path: &Path) -> Result<Keys, String> {
    let bytes = crate::model_dir::read_regular(path, 1 << 20)
        .map_err(|_| format!("auth.keys_file {}: cannot read it", path.display()))?;
    Keys::parse(&String::from_utf8_lossy(&bytes))
}

/// Re-reads the keys file whenever its modification time changes; a bad file keeps the keys
/// in force (and says so).
pub async fn watch_keys(
    gate: Arc<Gate>,
    path: PathBuf,
    every: Duration,
    mut hup: crate::app::Hangups,
) {
    let mtime = |p: &Path| -> Option<SystemTime> { std::fs::metadata(p).ok()?.modified().ok() };
    let mut seen = mtime(&path);
    loop {
        let hangup = crate::app::tick_or_hangup(every, &mut hup).await;
        if Arc::strong_count(&gate) == 1 {
            return;
        }
        let now = mtime(&path);
        if now == seen && !hangup {
            continue;
        }
        seen = now;
        match read_keys(&path) {
            Ok(k) => {
                tracing::info!(keys = k.len(), "auth keys reloaded");
                gate.replace(k);
            }
            Err(e) => tracing::error!(error = %e, "auth keys file refused; the old keys stay"),
        }
    }
}

/// A new random token and its keys-file line (`leadrouter keys new`).
pub fn new_key(id: &str, role: Role) -> Result<(String, String), String> {
    let mut raw = [0u8; 32];
    use std::io::Read;
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut raw))
        .map_err(|e| format!("cannot read /dev/urandom: {e}"))?;
    let hex: String = raw.iter().map(|b| format!("{b:02x}")).collect();
    let token = format!("lr_{hex}");
    let hash: String = Sha256::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let line = format!(
        "[[key]]\nid = {id:?}\nrole = \"{}\"\nsha256 = \"{hash}\"\n",
        role.as_str()
    );
    Ok((token, line))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_files_are_checked_without_echoing_hashes() {
        assert!(
            Keys::parse("[[key]]\nid = \"a\"\nrole = \"crm\"\nsha256 = \"xyz\"\n")
                .unwrap_err()
                .contains("64 hex digits")
        );
        let h = "ab".repeat(32);
        let twice = format!(
            "[[key]]\nid = \"a\"\nrole = \"crm\"\nsha256 = \"{h}\"\n[[key]]\nid = \"a\"\nrole = \"ops\"\nsha256 = \"{h}\"\n"
        );
        let e = Keys::parse(&twice).unwrap_err();
        assert!(e.contains("twice") && !e.contains(&h), "{e}");
        assert!(Keys::parse("[[key]]\nid = \"a\"\nrole = \"root\"\nsha256 = \"x\"\n").is_err());
        assert!(Keys::parse("").unwrap().is_empty());
    }
}
