//! The request pipeline: validate -> features -> score -> segment -> route, over a store.
//!
//! The engine owns the live model (swapped atomically), the rules and the store. It knows
//! nothing of protobuf; grpc/ converts at the edge.
use std::cell::RefCell;
use std::path::PathBuf;
use std::sync::Arc;

use arc_swap::ArcSwapOption;
use jiff::Timestamp;

use crate::domain::assignment::LeadContext;
use crate::domain::assignment::{LeadState, Outcome};
use crate::domain::drift::{DriftReport, LiveDrift};
use crate::domain::features::Clipped;
use crate::domain::gate::GateReport;
use crate::domain::lead::{Lead, validate_id};
use crate::domain::model::{Model, Score, cold_start_score};
use crate::domain::rep::Rep;
use crate::domain::routing::{self, RoutingPolicy, UnknownPool};
use crate::domain::segment::SegmentRules;
use crate::domain::terms::SlaPolicy;
use crate::error::{Error, Result};
use crate::store::{ClaimRequest, Closed, Reassigned, Store};

mod after;
mod decision;
mod models;
pub mod recent;
mod registry;
mod report;
mod team;
pub use decision::{Decision, RoutingDecision, RoutingStatus};
use decision::{Prepared, finish, unroutable};
pub use models::{Evidence, ModelSource, NamedRows, read_artifact};
pub use report::{HistoryRow, ReportPolicy, ReportQuery, rep_id_of};

/// Where "now" comes from; tests pin it.
pub type Clock = Arc<dyn Fn() -> Timestamp + Send + Sync>;

/// A model together with the file it came from.
#[derive(Debug)]
pub struct LoadedModel {
    pub model: Model,
    pub path: PathBuf,
    /// Live feature and score distributions seen by this version.
    pub drift: LiveDrift,
    /// The file's modification time when loaded, for the file watch.
    pub modified: Option<std::time::SystemTime>,
}

impl LoadedModel {
    /// Counts a scored row in this version's drift statistics (when the artifact has a
    /// training reference).
    fn observe(&self, lead_id: &str, row: &[f64], p: f64) {
        let artifact = self.model.artifact();
        if let Some(reference) = &artifact.drift {
            self.drift
                .observe(&artifact.spec, reference, lead_id, row, p);
        }
    }
}

/// The result of a successful swap.
#[derive(Debug, Clone)]
pub struct Swap {
    pub previous: Option<String>,
    pub gate: GateReport,
    /// The gate refused and `force` overrode it.
    pub forced: bool,
    /// The artifact's bytes, as published to the registry.
    pub artifact: Vec<u8>,
}

pub struct EngineParts {
    pub segments: SegmentRules,
    pub routing: RoutingPolicy,
    pub store: Arc<dyn Store>,
    pub cold_start_base_rate: f64,
    pub clock: Clock,
    /// The configured artifact, reloaded by an empty ReloadModel.
    pub model_path: Option<PathBuf>,
    /// The promotion gate's margin and minimum rows.
    pub gate: crate::domain::gate::GatePolicy,
    /// Observations a feature needs before its drift can alert (`drift.min_observations`).
    pub drift_min_observations: u64,
    /// Model versions the registry keeps for rollbacks (`model.registry_keep`).
    pub registry_keep: usize,
    /// Where ReloadModel may read artifacts (None: only the live model's file).
    pub model_dir: Option<crate::model_dir::ModelDir>,
    /// First-touch SLA per segment.
    pub sla: SlaPolicy,
    /// `[report]`: zone, value attribute, currency.
    pub report: ReportPolicy,
    /// Counters of scored and routed leads.
    pub metrics: Arc<crate::observe::Metrics>,
    /// Decision records kept for the console's lead lookup (`admin.console_decisions`).
    pub recent_decisions: usize,
}

pub struct Engine {
    model: ArcSwapOption<LoadedModel>,
    parts: EngineParts,
    /// The registry generation this replica last loaded or published.
    registry_seen: std::sync::atomic::AtomicU64,
    recent: recent::Recent,
    /// The process's follower of the event logs (WatchAssignments, the console), made on
    /// first use.
    hub: std::sync::OnceLock<Arc<crate::watch::Hub>>,
}

thread_local! {
    /// Dense feature row reused across requests on this thread.
    static ROW: RefCell<Vec<f64>> = const { RefCell::new(Vec::new()) };
}

impl Engine {
    pub fn new(parts: EngineParts) -> Engine {
        Engine {
            model: ArcSwapOption::empty(),
            recent: recent::Recent::new(parts.recent_decisions),
            parts,
            registry_seen: std::sync::atomic::AtomicU64::new(0),
            hub: std::sync::OnceLock::new(),
        }
    }

    pub fn system_clock() -> Clock {
        Arc::new(Timestamp::now)
    }

    pub fn now(&self) -> Timestamp {
        (self.parts.clock)()
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.parts.store
    }

    /// What this replica saw lately (decisions, unroutable leads, model events).
    pub fn recent(&self) -> &recent::Recent {
        &self.recent
    }

    /// The process's one follower of the store's event logs.
    pub fn hub(&self) -> &Arc<crate::watch::Hub> {
        self.hub
            .get_or_init(|| crate::watch::Hub::new(self.parts.store.clone()))
    }

    /// The segment rules (the console shows a lead's rule).
    pub fn segments(&self) -> &SegmentRules {
        &self.parts.segments
    }

    /// The live model's file, else the configured one.
    /// Every recorded outcome (ExportOutcomes, the gate's default rows).
    pub async fn outcomes(&self) -> Result<Vec<crate::domain::assignment::OutcomeRecord>> {
        self.parts.store.outcomes().await
    }

    /// Largest artifact (or gate CSV) a request may carry: `model.max_bytes`.
    /// Candidates a decision record lists by default (`routing.record_candidates`).
    pub fn record_candidates(&self) -> usize {
        self.parts.routing.record_candidates
    }

    pub fn model_max_bytes(&self) -> u64 {
        self.parts
            .model_dir
            .as_ref()
            .map_or(16 << 20, |d| d.max_bytes())
    }

    pub fn model_path(&self) -> Option<PathBuf> {
        self.model()
            .map(|m| m.path.clone())
            .or_else(|| self.parts.model_path.clone())
    }

    pub fn model(&self) -> Option<Arc<LoadedModel>> {
        self.model.load_full()
    }

    /// The live model's drift statistics (None in cold start or for artifacts without a
    /// training reference).
    pub fn drift(&self) -> Option<(Arc<LoadedModel>, DriftReport)> {
        let m = self.model.load_full()?;
        let reference = m.model.artifact().drift.as_ref()?;
        let report = m.drift.report(&m.model.artifact().spec, reference);
        Some((m, report))
    }

    /// Scores and segments a lead; pure CPU, nothing stored.
    pub fn score(&self, lead: &Lead) -> Result<Decision> {
        // The grpc handler names the lead on the request's span before it is checked.
        self.score_observed(lead, true)
    }

    /// `score`; `observe` feeds the live model's drift counters (not for imported history,
    /// whose columns are another system's and whose time is past).
    pub(crate) fn score_observed(&self, lead: &Lead, observe: bool) -> Result<Decision> {
        let guard = self.model.load();
        let score = match guard.as_deref() {
            Some(m) => ROW.with_borrow_mut(|row| {
                let score = m.model.score_with(lead, row)?;
                if observe {
                    m.observe(&lead.id, row, score.probability);
                }
                Ok::<_, Error>(score)
            })?,
            None => cold_start_score(self.parts.cold_start_base_rate),
        };
        Ok(self.decide(lead, score, observe))
    }

    /// The decision of a scored lead before routing: its segment by the rules. `observe`:
    /// counted in the metrics (live traffic, not imported history).
    fn decide(&self, lead: &Lead, score: Score, observe: bool) -> Decision {
        let segment = self.parts.segments.classify(lead, score.probability);
        if observe {
            self.parts
                .metrics
                .scored(&segment.segment, score.probability);
        }
        Decision {
            lead_id: lead.id.clone(),
            required_skills: Vec::new(),
            score,
            segment,
            routing: None,
        }
    }

    /// Scores, segments and routes a lead; idempotent on the lead id.
    pub async fn submit(&self, lead: Lead) -> Result<Decision> {
        let decision = self.score(&lead)?;
        let reps = self.parts.store.reps().await?;
        let (decision, p) = self.prepare(lead, decision, &reps, self.now())?;
        if !self.claims(&p).await? {
            self.note_unroutable(&p).await;
            return Ok(self.routed(unroutable(decision, p)));
        }
        let claim = self.parts.store.claim(p.req.clone()).await?;
        Ok(self.routed(finish(decision, claim, p)))
    }

    /// Scores a batch of leads with one matrix-vector product (drift counted per lead).
    pub fn score_batch(&self, leads: &[Lead]) -> Vec<Result<Decision>> {
        let guard = self.model.load();
        let Some(m) = guard.as_deref() else {
            return leads.iter().map(|l| self.score(l)).collect();
        };
        let artifact = m.model.artifact();
        let k = artifact.spec.n_columns();
        let mut rows = vec![0.0; k * leads.len()];
        let extracted: Vec<Result<Clipped>> = leads
            .iter()
            .zip(rows.chunks_mut(k.max(1)))
            .map(|(l, row)| artifact.spec.extract_into(l, row))
            .collect();
        let mut p = vec![0.0; leads.len()];
        m.model.predict_batch(&rows, &mut p);
        leads
            .iter()
            .zip(extracted)
            .enumerate()
            .map(|(i, (lead, clipped))| {
                let clipped = clipped?;
                let row = &rows[i * k..(i + 1) * k];
                m.observe(&lead.id, row, p[i]);
                Ok(self.decide(lead, m.model.explain(lead, row, p[i], clipped), true))
            })
            .collect()
    }

    /// SubmitLead for a batch: one scoring pass, one directory read and one store round trip
    /// for all claims (each claim still atomic on its own). Results are in input order.
    pub async fn submit_batch(&self, leads: Vec<Lead>) -> Vec<Result<Decision>> {
        let scored = self.score_batch(&leads);
        let reps = match self.parts.store.reps().await {
            Ok(r) => r,
            Err(e) => return leads.iter().map(|_| Err(e.clone())).collect(),
        };
        let now = self.now();
        let mut out: Vec<Option<Result<Decision>>> = Vec::with_capacity(leads.len());
        let mut pending = Vec::new();
        let mut requests = Vec::new();
        for (i, (lead, scored)) in leads.into_iter().zip(scored).enumerate() {
            match scored.and_then(|d| self.prepare(lead, d, &reps, now)) {
                Ok((decision, p)) => match self.claims(&p).await {
                    Ok(true) => {
                        requests.push(p.req.clone());
                        pending.push((i, decision, p));
                        out.push(None);
                    }
                    Ok(false) => {
                        self.note_unroutable(&p).await;
                        out.push(Some(Ok(self.routed(unroutable(decision, p)))))
                    }
                    Err(e) => out.push(Some(Err(e))),
                },
                Err(e) => out.push(Some(Err(e))),
            }
        }
        let claims = self.parts.store.claim_many(requests).await;
        for ((i, decision, p), claim) in pending.into_iter().zip(claims) {
            out[i] = Some(claim.map(|c| self.routed(finish(decision, c, p))));
        }
        out.into_iter()
            .map(|o| o.unwrap_or_else(|| Err(Error::Internal("lost a batch result".into()))))
            .collect()
    }

    /// Counts an unroutable lead in the funnel. Best effort: the lead's answer does not
    /// depend on the count.
    async fn note_unroutable(&self, p: &Prepared) {
        let ctx = &p.req.context;
        let r = self
            .parts
            .store
            .note_unroutable(&ctx.needs.pool, &ctx.segment, p.req.now);
        if let Err(e) = r.await {
            tracing::warn!(error = %e, "could not count an unroutable lead");
        }
    }

    /// Whether a prepared lead goes to the store: always when some rep could take it or
    /// `routing.queue_unroutable` is set; else only to replay an earlier decision (a lead
    /// stored before its pool lost the skill it needs).
    async fn claims(&self, p: &Prepared) -> Result<bool> {
        if p.unroutable.is_none() || self.parts.routing.queue_unroutable {
            return Ok(true);
        }
        Ok(self
            .parts
            .store
            .lookup(&p.req.context.lead.id)
            .await?
            .is_some())
    }

    /// Needs, pool check and static ranking of a scored lead: the claim to make.
    fn prepare(
        &self,
        lead: Lead,
        mut decision: Decision,
        reps: &[Rep],
        now: Timestamp,
    ) -> Result<(Decision, Prepared)> {
        let seg_skills = self.parts.segments.skills_for(&decision.segment.segment);
        let policy = &self.parts.routing;
        let mut needs = policy.needs(&lead, &decision.segment.segment, seg_skills);
        decision.required_skills = needs.required_skills.clone();
        let field = || format!("lead.attributes[{}]", policy.pool_attribute);
        if needs.pool.contains(['{', '}']) || needs.pool.len() > crate::domain::lead::MAX_ID_LEN {
            return Err(Error::invalid(
                field(),
                "a pool name has at most 128 bytes and no braces",
            ));
        }
        let mut note = None;
        if !policy.is_declared(&needs.pool, reps) {
            match policy.unknown_pool {
                UnknownPool::Refuse => {
                    return Err(Error::invalid(
                        field(),
                        format!(
                            "pool {:?} is not declared (no rep and no [routing.pools] entry names it)",
                            needs.pool
                        ),
                    ));
                }
                UnknownPool::Default => {
                    note = Some(format!(
                        "pool {:?} is not declared; routed to {:?}",
                        needs.pool, policy.default_pool
                    ));
                    needs.pool = policy.default_pool.clone();
                }
            }
        }
        let ranking = routing::rank(reps, &needs, now, &[]);
        let unroutable = routing::unroutable_reason(reps, &needs);
        let terms =
            self.parts
                .routing
                .terms(&needs.pool, &decision.segment.segment, &self.parts.sla);
        let context = LeadContext {
            terms,
            lead,
            needs,
            probability: decision.score.probability,
            segment: decision.segment.segment.clone(),
            model_version: decision.score.model_version.clone(),
            expected_value: 0.0,
        };
        let mut context = context;
        context.expected_value = self.expected_value(&context.lead);
        let req = ClaimRequest {
            context,
            candidates: ranking.candidates,
            now,
        };
        Ok((
            decision,
            Prepared {
                req,
                rejected: ranking.rejected,
                unroutable,
                note,
            },
        ))
    }

    pub async fn lookup(&self, lead_id: &str) -> Result<LeadState> {
        validate_id("lead_id", lead_id)?;
        crate::observe::annotate(lead_id, None, None);
        self.parts
            .store
            .lookup(lead_id)
            .await?
            .ok_or_else(|| Error::not_found("lead", lead_id))
    }

    /// Closes with the deal's value, if given (finite, >= 0).
    pub async fn close(
        &self,
        lead_id: &str,
        outcome: Outcome,
        value: Option<f64>,
    ) -> Result<Closed> {
        validate_id("lead_id", lead_id)?;
        crate::observe::annotate(lead_id, None, None);
        if let Some(v) = value
            && (!v.is_finite() || v < 0.0)
        {
            return Err(Error::invalid("value", "must be a finite number >= 0"));
        }
        let now = self.now();
        self.parts
            .store
            .close_valued(lead_id, outcome, value, now)
            .await
    }

    /// Moves an open assignment to `target` (or the best other rep); nothing changes on error.
    pub async fn reassign(&self, lead_id: &str, target: Option<&str>) -> Result<Reassigned> {
        validate_id("lead_id", lead_id)?;
        if let Some(t) = target {
            validate_id("rep_id", t)?;
        }
        let current = match self.lookup(lead_id).await? {
            LeadState::Assigned(a) if a.is_open() => a,
            LeadState::Assigned(a) if a.is_held() => {
                return Err(Error::FailedPrecondition(format!(
                    "lead {lead_id:?} is offered to {:?}; it moves on when declined or expired",
                    a.rep_id
                )));
            }
            LeadState::Assigned(_) => {
                return Err(Error::FailedPrecondition(format!(
                    "lead {lead_id:?} is closed"
                )));
            }
            LeadState::Queued { .. } => {
                return Err(Error::FailedPrecondition(format!(
                    "lead {lead_id:?} is queued, not assigned"
                )));
            }
        };
        let ctx = self
            .parts
            .store
            .context(lead_id)
            .await?
            .ok_or_else(|| Error::not_found("lead", lead_id))?;
        let now = self.now();
        let reps = self.parts.store.reps().await?;
        let mut ranking = routing::rank(
            &reps,
            &ctx.needs,
            now,
            std::slice::from_ref(&current.rep_id),
        );
        if let Some(t) = target {
            if t == current.rep_id {
                return Err(Error::invalid("rep_id", "is the current assignee"));
            }
            if !reps.iter().any(|r| r.id == t) {
                return Err(Error::invalid("rep_id", format!("unknown rep {t:?}")));
            }
            if let Some(why) = ranking.rejected.iter().find(|r| r.rep_id == t) {
                return Err(Error::FailedPrecondition(format!(
                    "rep {t:?} cannot take the lead: {}",
                    why.detail
                )));
            }
            ranking.candidates.retain(|c| c.rep_id == t);
            if ranking.candidates.is_empty() {
                return Err(Error::FailedPrecondition(format!(
                    "rep {t:?} is not in pool {:?}",
                    ctx.needs.pool
                )));
            }
        }
        let mut moved = self
            .parts
            .store
            .reassign(lead_id, &current.rep_id, ranking.candidates, now)
            .await?;
        moved.records.extend(ranking.rejected);
        Ok(moved)
    }
}
