//! Model lifecycle in the engine: loading an artifact, the promotion gate, the atomic swap,
//! and ReloadModel's sources (the live file, a file under model.dir, request bytes).
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::domain::drift::LiveDrift;
use crate::domain::gate::{self, Evaluation, GateReport};
use crate::domain::model::{Artifact, Model};
use crate::error::{Error, Result};
use crate::training::{self, EvalRows, Table};

use super::recent::ModelEvent;
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

/// Labelled rows a caller sends for the gate (ReloadModel `eval_csv`, `promote --eval-data`).
#[derive(Debug, Clone, PartialEq)]
pub struct NamedRows {
    pub csv: Vec<u8>,
    /// Label column and its positive value (None: yes/no, true/false, 1/0).
    pub label: String,
    pub positive: Option<String>,
}

/// The labelled rows the gate scores both models on, gathered before the (blocking) load.
pub enum Evidence {
    Rows {
        table: Table,
        label: String,
        positive: Option<String>,
        source: String,
    },
    /// The caller's CSV, parsed when the gate needs it.
    Named(NamedRows),
    /// Why there are none.
    Missing(String),
}

impl NamedRows {
    fn parse(&self) -> Result<Table> {
        let table = training::data::parse(&self.csv, None, "eval_csv")
            .map_err(|e| Error::invalid("eval_csv", e))?;
        if table.column(&self.label).is_none() {
            return Err(Error::invalid(
                "eval_label",
                format!("{:?} is not a column of eval_csv", self.label),
            ));
        }
        Ok(table)
    }
}

fn refuse_no_dir(field: &str) -> Error {
    Error::ModelRejected(format!("{field}: model.dir is not set on this server"))
}

/// Reads and validates a model artifact from disk.
pub fn read_artifact(path: &Path) -> Result<Artifact> {
    let bytes = crate::builtin::read(path)
        .map_err(|e| Error::ModelRejected(format!("cannot read {}: {e}", path.display())))?;
    Artifact::from_json(&bytes)
}

impl Engine {
    /// The gate's rows: the caller's labelled CSV when given, else the store's recorded
    /// outcomes (won = positive; the candidate's own training leads are skipped when scoring).
    pub async fn evidence(&self, named: Option<NamedRows>) -> Result<Evidence> {
        if let Some(n) = named {
            // Parsed with the artifact, off the async workers.
            return Ok(Evidence::Named(n));
        }
        if self.model.load().is_none() {
            return Ok(Evidence::Missing("cold start".into()));
        }
        Ok(match self.parts.store.outcomes().await {
            Ok(records) => {
                let table = crate::outcomes::table(&records, false);
                if table.rows.is_empty() {
                    Evidence::Missing("no outcomes are recorded yet".into())
                } else {
                    Evidence::Rows {
                        table,
                        label: "outcome".into(),
                        positive: Some("won".into()),
                        source: "recorded outcomes".into(),
                    }
                }
            }
            Err(e) => Evidence::Missing(format!("the recorded outcomes cannot be read: {e}")),
        })
    }

    /// Loads `path`, validates it, runs the promotion gate and swaps it in. In-flight requests
    /// finish on the model they started with. On any error the live model keeps serving.
    /// For paths the operator configured (start-up, SIGHUP, file watch); client-named
    /// artifacts go through `reload` and `model.dir`.
    pub fn load_model(&self, path: &Path, force: bool, evidence: &Evidence) -> Result<Swap> {
        let modified = std::fs::metadata(path).and_then(|m| m.modified()).ok();
        let bytes = crate::builtin::read(path)
            .map_err(|e| Error::ModelRejected(format!("cannot read {}: {e}", path.display())))?;
        let artifact = Artifact::from_json(&bytes)?;
        let gate = self.gate(&artifact, force, evidence)?;
        Ok(self.swap_in(artifact, bytes, path.to_path_buf(), modified, gate))
    }

    /// ReloadModel: the live model's own file again, a file under `model.dir`, or an
    /// artifact sent in the request (kept in `model.dir` once the gate lets it through).
    pub fn reload(&self, source: ModelSource, force: bool, evidence: &Evidence) -> Result<Swap> {
        let dir = self.parts.model_dir.as_ref();
        match source {
            ModelSource::Live => {
                let path = self.model_path().ok_or_else(|| {
                    Error::invalid("path", "is required: no model path is configured")
                })?;
                self.load_model(&path, force, evidence)
            }
            ModelSource::Path(p) => {
                let dir = dir.ok_or_else(|| refuse_no_dir("path"))?;
                let (path, bytes) = dir.read(&p)?;
                let modified = std::fs::metadata(&path).and_then(|m| m.modified()).ok();
                let artifact = Artifact::from_json(&bytes)?;
                let gate = self.gate(&artifact, force, evidence)?;
                Ok(self.swap_in(artifact, bytes, path, modified, gate))
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
                let gate = self.gate(&artifact, force, evidence)?;
                let path = dir.keep(&artifact.model_version, &bytes)?;
                let modified = std::fs::metadata(&path).and_then(|m| m.modified()).ok();
                Ok(self.swap_in(artifact, bytes, path, modified, gate))
            }
        }
    }

    /// The promotion gate's verdict on `artifact`, both models scored on `evidence`'s rows;
    /// Err when it refuses and `force` is off.
    fn gate(&self, artifact: &Artifact, force: bool, evidence: &Evidence) -> Result<GateReport> {
        let live = self.model.load_full();
        let live = live.as_deref().map(|m| m.model.artifact());
        let parsed;
        let evidence = match evidence {
            Evidence::Named(n) => {
                parsed = Evidence::Rows {
                    table: n.parse()?,
                    label: n.label.clone(),
                    positive: n.positive.clone(),
                    source: "the caller's rows".into(),
                };
                &parsed
            }
            other => other,
        };
        let rows = match (live, evidence) {
            (_, Evidence::Missing(why)) => Err(why.clone()),
            (_, Evidence::Named(_)) => Err("unparsed rows".into()),
            (None, _) => Err("cold start".into()),
            (
                Some(live),
                Evidence::Rows {
                    table,
                    label,
                    positive,
                    source,
                },
            ) => training::evaluate_table(
                &[artifact, live],
                table,
                label,
                positive.as_deref(),
                EvalRows::Auto,
                false,
            )
            .map(|e| Evaluation {
                source: format!("{source}, {}", e.used),
                rows: e.rows,
                positives: e.positives,
                candidate: e.metrics[0].clone(),
                live: e.metrics[1].clone(),
            })
            .map_err(|e| e.to_string()),
        };
        let gate = gate::judge(live, artifact, rows, self.parts.gate);
        let what = match (gate.passed(), force) {
            (true, _) => "passed",
            (false, true) => "forced",
            (false, false) => "refused",
        };
        self.recent.model(ModelEvent {
            at_ms: self.now().as_millisecond(),
            what,
            version: artifact.model_version.clone(),
            detail: gate.summary(),
        });
        if !gate.passed() && !force {
            return Err(Error::ModelRejected(format!(
                "{}; the live model keeps serving (force overrides)",
                gate.summary()
            )));
        }
        Ok(gate)
    }

    pub(super) fn swap_in(
        &self,
        artifact: Artifact,
        bytes: Vec<u8>,
        path: PathBuf,
        modified: Option<std::time::SystemTime>,
        gate: GateReport,
    ) -> Swap {
        let mut drift = LiveDrift::new(&artifact.spec, self.parts.drift_min_observations);
        if let Some(live) = self.model.load_full() {
            // Features binned the same way keep their counts (all of them when the same
            // version is reloaded).
            drift.carry_over(&artifact.spec, &live.drift, &live.model.artifact().spec);
        }
        let new = Arc::new(LoadedModel {
            drift,
            model: Model::new(artifact),
            path,
            modified,
        });
        let old = self.model.swap(Some(new));
        self.recent.model(ModelEvent {
            at_ms: self.now().as_millisecond(),
            what: "live",
            version: gate.candidate_version.clone(),
            detail: match &old {
                Some(o) => format!("replaced {}", o.model.version()),
                None => "first model of this replica".into(),
            },
        });
        Swap {
            previous: old.map(|m| m.model.version().to_string()),
            forced: !gate.passed(),
            gate,
            artifact: bytes,
        }
    }
}
