//! Where ReloadModel may read artifacts from: regular files under `model.dir`, of bounded
//! size, opened so that a FIFO or a device can never block or flood the server.
//!
//! Every refusal says only "not under model.dir", "no artifact ... under model.dir", "not a
//! regular file" or "larger than model.max_bytes": never a file's content, and never whether
//! a path outside the directory exists (that check is lexical, before the filesystem is asked).
use std::io::Read;
use std::path::{Component, Path, PathBuf};

use crate::error::{Error, Result};

pub struct ModelDir {
    /// Canonical.
    root: PathBuf,
    max_bytes: u64,
}

fn refuse(m: impl Into<String>) -> Error {
    Error::ModelRejected(m.into())
}

impl ModelDir {
    /// `dir` must exist (relative to the working directory unless absolute).
    pub fn new(dir: &Path, max_bytes: u64) -> Result<ModelDir, String> {
        let root =
            std::fs::canonicalize(dir).map_err(|e| format!("model.dir {}: {e}", dir.display()))?;
        if !root.is_dir() {
            return Err(format!("model.dir {} is not a directory", dir.display()));
        }
        Ok(ModelDir { root, max_bytes })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn max_bytes(&self) -> u64 {
        self.max_bytes
    }

    /// The canonical path of an artifact a client named, if it is a file under the directory.
    /// Relative names are taken from the working directory, then from the model directory.
    pub fn resolve(&self, requested: &str) -> Result<PathBuf> {
        let p = Path::new(requested);
        if requested.is_empty() || requested.contains('\0') {
            return Err(refuse("path: not under model.dir"));
        }
        if p.components().any(|c| matches!(c, Component::ParentDir)) {
            return Err(refuse(
                "path: `..` is not allowed; name a file under model.dir",
            ));
        }
        let candidates: Vec<PathBuf> = if p.is_absolute() {
            vec![p.to_path_buf()]
        } else {
            let cwd = std::env::current_dir().unwrap_or_default();
            vec![cwd.join(p), self.root.join(p)]
        };
        // Lexical first: a path outside is refused without touching the filesystem, so the
        // answer cannot tell whether it exists.
        let Some(inside) = candidates.into_iter().find(|c| c.starts_with(&self.root)) else {
            return Err(refuse("path: not under model.dir"));
        };
        let canonical = std::fs::canonicalize(&inside)
            .map_err(|_| refuse("path: no artifact at that path under model.dir"))?;
        // A symlink inside that leads outside is outside.
        if !canonical.starts_with(&self.root) {
            return Err(refuse("path: not under model.dir"));
        }
        Ok(canonical)
    }

    /// Reads an artifact a client named (see `resolve`).
    pub fn read(&self, requested: &str) -> Result<(PathBuf, Vec<u8>)> {
        let path = self.resolve(requested)?;
        let bytes = read_regular(&path, self.max_bytes)?;
        Ok((path, bytes))
    }

    /// Keeps an artifact sent in a request as `<model_version>.json` in the directory (so the
    /// file watch and a restart find it), written atomically.
    pub fn keep(&self, model_version: &str, bytes: &[u8]) -> Result<PathBuf> {
        if model_version.is_empty()
            || !model_version
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
            || model_version.starts_with('.')
        {
            return Err(refuse("artifact: model_version is not a safe file name"));
        }
        let path = self.root.join(format!("{model_version}.json"));
        let tmp = self.root.join(format!(".{model_version}.json.tmp"));
        std::fs::write(&tmp, bytes)
            .and_then(|()| std::fs::rename(&tmp, &path))
            .map_err(|e| Error::Internal(format!("cannot keep the artifact in model.dir: {e}")))?;
        Ok(path)
    }
}

/// Reads a regular file of at most `max` bytes. The open does not block (O_NONBLOCK) and the
/// type is checked on the opened descriptor, so a FIFO, socket or device swapped in after a
/// check is refused, not read.
pub fn read_regular(path: &Path, max: u64) -> Result<Vec<u8>> {
    use std::os::unix::fs::OpenOptionsExt;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .map_err(|_| refuse("path: cannot open the artifact under model.dir"))?;
    let meta = f
        .metadata()
        .map_err(|_| refuse("path: cannot read the artifact under model.dir"))?;
    if !meta.is_file() {
        return Err(refuse("path: not a regular file"));
    }
    if meta.len() > max {
        return Err(refuse(format!(
            "path: the artifact is larger than model.max_bytes ({max})"
        )));
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    f.take(max + 1)
        .read_to_end(&mut bytes)
        .map_err(|_| refuse("path: cannot read the artifact under model.dir"))?;
    if bytes.len() as u64 > max {
        return Err(refuse(format!(
            "path: the artifact is larger than model.max_bytes ({max})"
        )));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir() -> (tempfile::TempDir, ModelDir) {
        let t = tempfile::tempdir().unwrap();
        let d = ModelDir::new(t.path(), 1_000).unwrap();
        (t, d)
    }

    #[test]
    fn only_regular_files_under_the_directory_are_read() {
        let (t, d) = dir();
        std::fs::write(t.path().join("a.json"), b"{}").unwrap();
        let (p, bytes) = d.read(t.path().join("a.json").to_str().unwrap()).unwrap();
        assert_eq!(bytes, b"{}");
        assert!(p.starts_with(d.root()));
        // A bare name is looked up in the directory too.
        assert_eq!(d.read("a.json").unwrap().1, b"{}");
        let msg = |r: Result<(PathBuf, Vec<u8>)>| r.unwrap_err().to_string();
        for outside in ["/etc/passwd", "/etc/does-not-exist", "/proc/self/environ"] {
            assert!(
                msg(d.read(outside)).contains("not under model.dir"),
                "{outside}"
            );
        }
        let up = format!("{}/../../etc/passwd", t.path().display());
        assert!(msg(d.read(&up)).contains("`..`"));
        assert!(msg(d.read("../etc/passwd")).contains("`..`"));
        // A symlink leaving the directory is outside.
        std::os::unix::fs::symlink("/etc/passwd", t.path().join("link.json")).unwrap();
        assert!(msg(d.read("link.json")).contains("not under model.dir"));
        // Size limit, and nothing of the content in any message.
        std::fs::write(t.path().join("big.json"), vec![b'x'; 2_000]).unwrap();
        assert!(msg(d.read("big.json")).contains("model.max_bytes"));
        assert!(msg(d.read("missing.json")).contains("no artifact"));
    }

    #[test]
    fn fifos_and_devices_are_refused_without_blocking() {
        let (t, d) = dir();
        let fifo = t.path().join("pipe.json");
        let ok = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success();
        assert!(ok);
        let started = std::time::Instant::now();
        let e = d.read("pipe.json").unwrap_err().to_string();
        assert!(e.contains("not a regular file"), "{e}");
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
        let e = read_regular(Path::new("/dev/zero"), 1_000)
            .unwrap_err()
            .to_string();
        assert!(e.contains("not a regular file"), "{e}");
    }

    #[test]
    fn kept_artifacts_get_safe_names() {
        let (t, d) = dir();
        let p = d.keep("abc123", b"{}").unwrap();
        assert_eq!(p, d.root().join("abc123.json"));
        assert!(d.keep("../x", b"{}").is_err());
        assert!(d.keep(".hidden", b"{}").is_err());
        drop(t);
    }
}
