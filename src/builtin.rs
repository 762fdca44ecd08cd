//! The shipped model and example team, compiled into the binary: `leadrouter serve` works
//! from any directory, and `cargo install --path .` gives a tool that needs no repository.
//! Settings name them as `builtin:<name>` where a file path would go.
use std::path::Path;

/// `model.path` default: models/bank-default.json as trained by `make-model` (models/README.md).
pub const MODEL: &str = "builtin:bank-default";
/// `reps.file` default: deploy/reps.example.toml (35 reps of the CRM pipeline data set).
pub const TEAM: &str = "builtin:example-team";

const MODEL_BYTES: &[u8] = include_bytes!("../models/bank-default.json");
const TEAM_TEXT: &str = include_str!("../deploy/reps.example.toml");

/// Whether a path setting names a compiled-in file rather than one on disk.
pub fn is_builtin(path: &str) -> bool {
    path.starts_with("builtin:")
}

/// The bytes of a compiled-in file, if `path` names one.
pub fn bytes(path: &Path) -> Option<&'static [u8]> {
    match path.to_str()? {
        MODEL => Some(MODEL_BYTES),
        TEAM => Some(TEAM_TEXT.as_bytes()),
        _ => None,
    }
}

/// A file's bytes: compiled in, or read from disk. An unknown `builtin:` name is an error that
/// lists the known ones.
pub fn read(path: &Path) -> std::io::Result<Vec<u8>> {
    if let Some(b) = bytes(path) {
        return Ok(b.to_vec());
    }
    if path.to_str().is_some_and(is_builtin) {
        return Err(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            format!("no such built-in file (there are {MODEL} and {TEAM})"),
        ));
    }
    std::fs::read(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_compiled_in_files_are_the_shipped_ones() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let model = std::fs::read(root.join("models/bank-default.json")).unwrap();
        assert_eq!(read(Path::new(MODEL)).unwrap(), model);
        let team = std::fs::read(root.join("deploy/reps.example.toml")).unwrap();
        assert_eq!(read(Path::new(TEAM)).unwrap(), team);
        let err = read(Path::new("builtin:nope")).unwrap_err().to_string();
        assert!(err.contains(MODEL), "{err}");
        assert!(read(Path::new("/no/such/file")).is_err());
    }
}
