//! Model lifecycle in the engine: loading an artifact, the promotion gate, the atomic swap,
//! and ReloadModel's sources (the live file, a file under model.dir, request bytes).
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::domain::drift::LiveDrift;
use crate::domain::gate::{self, GateReport};
use crate::domain::model::{Artifact, Model};
use crate::error::{Error, Result};

use super::{Engine, LoadedModel, Swap};

/// Where a ReloadModel artifact comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum ModelSource {
    /// The live model's file (at start, `model.path`).
    Live,
    /// A file under `model.dir`.
    Path(String),
    /// The artifact itself, sent in the request.
    Bytes(Vec<u8>),
}

fn refuse_no_dir(field: &str) -> Error {
    Error::ModelRejected(format!("{field}: model.dir is not set on this server"))
}

/// Reads and validates a model artifact from disk.
pub fn read_artifact(path: &Path) -> Result<Artifact> {
    let bytes = std::fs::read(path)
        .map_err(|e| Error::ModelRejected(format!("cannot read {}: {e}", path.display())))?;
    Artifact::from_json(&bytes)
}

impl Engine {
    /// Loads `path`, validates it, runs the promotion gate and swaps it in. In-flight requests
    /// finish on the model they started with. On any error the live model keeps serving.
    /// For paths the operator configured (start-up, SIGHUP, file watch); client-named
    /// artifacts go through `reload` and `model.dir`.
    pub fn load_model(&self, path: &Path, force: bool) -> Result<Swap> {
        let modified = std::fs::metadata(path).and_then(|m| m.modified()).ok();
        let artifact = read_artifact(path)?;
        let gate = self.gate(&artifact, force)?;
        Ok(self.swap_in(artifact, path.to_path_buf(), modified, gate))
    }

    /// ReloadModel: the live model's own file again, a file under `model.dir`, or an
    /// artifact sent in the request (kept in `model.dir` once the gate lets it through).
    pub fn reload(&self, source: ModelSource, force: bool) -> Result<Swap> {
        let dir = self.parts.model_dir.as_ref();
        match source {
            ModelSource::Live => {
                let path = self.model_path().ok_or_else(|| {
                    Error::invalid("path", "is required: no model path is configured")
                })?;
                self.load_model(&path, force)
            }
            ModelSource::Path(p) => {
                let dir = dir.ok_or_else(|| refuse_no_dir("path"))?;
                let (path, bytes) = dir.read(&p)?;
                let modified = std::fs::metadata(&path).and_then(|m| m.modified()).ok();
                let artifact = Artifact::from_json(&bytes)?;
                let gate = self.gate(&artifact, force)?;
                Ok(self.swap_in(artifact, path, modified, gate))
            }
            ModelSource::Bytes(bytes) => {
                let dir = dir.ok_or_else(|| refuse_no_dir("artifact"))?;
                if bytes.len() as u64 > dir.max_bytes() {
                    return Err(Error::ModelRejected(format!(
                        "artifact: larger than model.max_bytes ({})",
                        dir.max_bytes()
                    )));
                }
                let artifact = Artifact::from_json(&bytes)?;
                let gate = self.gate(&artifact, force)?;
                let path = dir.keep(&artifact.model_version, &bytes)?;
                let modified = std::fs::metadata(&path).and_then(|m| m.modified()).ok();
                Ok(self.swap_in(artifact, path, modified, gate))
            }
        }
    }

    /// The promotion gate's verdict on `artifact`; Err when it refuses and `force` is off.
    fn gate(&self, artifact: &Artifact, force: bool) -> Result<GateReport> {
        let live = self.model.load_full();
        let gate = gate::check(
            live.as_deref().map(|m| m.model.artifact()),
            artifact,
            self.parts.gate_margin,
        );
        if !gate.passed() && !force {
            return Err(Error::ModelRejected(format!(
                "{}; the live model keeps serving (force overrides)",
                gate.refusals.join("; ")
            )));
        }
        Ok(gate)
    }

    fn swap_in(
        &self,
        artifact: Artifact,
        path: PathBuf,
        modified: Option<std::time::SystemTime>,
        gate: GateReport,
    ) -> Swap {
        let new = Arc::new(LoadedModel {
            drift: LiveDrift::new(&artifact.spec),
            model: Model::new(artifact),
            path,
            modified,
        });
        let old = self.model.swap(Some(new));
        Swap {
            previous: old.map(|m| m.model.version().to_string()),
            forced: !gate.passed(),
            gate,
        }
    }
}
