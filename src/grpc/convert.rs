//! Conversions between protobuf messages and domain types; validation of wire-only details.
use crate::domain::assignment::{Assignment, AssignmentState, Outcome};
use crate::domain::drift::{Distribution, DriftReport, MIN_OBSERVATIONS, PSI_ALERT};
use crate::domain::event::{Event, EventKind};
use crate::domain::lead::{AttrValue, Lead};
use crate::domain::model::Factor;
use crate::domain::rep::{PERIODS, Rep, Shift, TimeOff};
use crate::domain::routing::{CandidateRecord, Explain, Omitted, Verdict};
use crate::engine::Swap;
use crate::engine::{Decision, LoadedModel, RoutingStatus};
use crate::error::Error;
use crate::grpc::pb;
use crate::store::{ListItem, Listed, RepStatus};

pub mod report;

pub fn lead(msg: Option<pb::Lead>) -> Result<Lead, Error> {
    let msg = msg.ok_or_else(|| Error::invalid("lead", "is required"))?;
    let max = crate::domain::lead::MAX_ATTRIBUTES;
    if msg.attributes.len() > max {
        let n = msg.attributes.len();
        return Err(Error::invalid(
            "lead.attributes",
            format!("has {n} entries, the limit is {max}"),
        ));
    }
    let mut attributes = crate::domain::lead::Attributes::with_capacity_and_hasher(
        msg.attributes.len(),
        Default::default(),
    );
    for (name, value) in msg.attributes {
        use pb::attribute_value::Kind;
        let v = match value.kind {
            Some(Kind::StringValue(s)) => AttrValue::String(s),
            Some(Kind::NumberValue(x)) => AttrValue::Number(x),
            Some(Kind::BoolValue(b)) => AttrValue::Bool(b),
            None => {
                return Err(Error::invalid(
                    format!("lead.attributes[{name}]"),
                    "has no value",
                ));
            }
        };
        attributes.insert(name, v);
    }
    Lead::parse(msg.id, attributes)
}

/// A domain lead as a client sends it (the load generator builds its requests this way).
pub fn lead_to_pb(lead: Lead) -> pb::Lead {
    use pb::attribute_value::Kind;
    let attributes = lead
        .attributes
        .into_iter()
        .map(|(name, v)| {
            let kind = match v {
                AttrValue::String(s) => Kind::StringValue(s),
                AttrValue::Number(x) => Kind::NumberValue(x),
                AttrValue::Bool(b) => Kind::BoolValue(b),
            };
            (name, pb::AttributeValue { kind: Some(kind) })
        })
        .collect();
    pb::Lead {
        id: lead.id,
        attributes,
    }
}

pub fn outcome(raw: i32) -> Result<Outcome, Error> {
    match pb::Outcome::try_from(raw) {
        Ok(pb::Outcome::Won) => Ok(Outcome::Won),
        Ok(pb::Outcome::Lost) => Ok(Outcome::Lost),
        Ok(pb::Outcome::Disqualified) => Ok(Outcome::Disqualified),
        Ok(pb::Outcome::Returned) => Ok(Outcome::Returned),
        Ok(pb::Outcome::Expired) => Err(Error::invalid(
            "outcome",
            "EXPIRED is set by the server when a queued lead outlives routing.queue_ttl_s",
        )),
        _ => Err(Error::invalid(
            "outcome",
            format!("{raw} is not one of WON, LOST, DISQUALIFIED, RETURNED"),
        )),
    }
}

fn outcome_pb(o: Outcome) -> pb::Outcome {
    match o {
        Outcome::Won => pb::Outcome::Won,
        Outcome::Lost => pb::Outcome::Lost,
        Outcome::Disqualified => pb::Outcome::Disqualified,
        Outcome::Returned => pb::Outcome::Returned,
        Outcome::Expired => pb::Outcome::Expired,
    }
}

pub fn assignment(a: Assignment) -> pb::Assignment {
    let (state, outcome) = match a.state {
        AssignmentState::Open => (pb::AssignmentState::Open, pb::Outcome::Unspecified),
        AssignmentState::Offered => (pb::AssignmentState::Offered, pb::Outcome::Unspecified),
        AssignmentState::Closed(o) => (pb::AssignmentState::Closed, outcome_pb(o)),
    };
    pb::Assignment {
        lead_id: a.lead_id,
        rep_id: a.rep_id,
        pool: a.pool,
        state: state.into(),
        outcome: outcome.into(),
        probability: a.probability,
        segment: a.segment,
        assigned_at_ms: a.assigned_at_ms,
        closed_at_ms: a.closed_at_ms.unwrap_or(0),
        deadline_ms: a.deadline_ms.unwrap_or(0),
        contacted_at_ms: a.contacted_at_ms.unwrap_or(0),
        sla_breached: a.sla_breached,
    }
}

pub fn assignments(v: Vec<Assignment>) -> Vec<pb::Assignment> {
    v.into_iter().map(assignment).collect()
}

fn verdict(v: Verdict) -> pb::CandidateVerdict {
    use pb::CandidateVerdict as P;
    match v {
        Verdict::Chosen => P::Chosen,
        Verdict::Inactive => P::Inactive,
        Verdict::OffShift => P::OffShift,
        Verdict::OnLeave => P::OnLeave,
        Verdict::MissingRequiredSkill => P::MissingRequiredSkill,
        Verdict::AtCapacity => P::AtCapacity,
        Verdict::OverQuota => P::OverQuota,
        Verdict::LowerMatch => P::LowerMatch,
        Verdict::HigherUtilisation => P::HigherUtilisation,
        Verdict::ShorterIdle => P::ShorterIdle,
        Verdict::Excluded => P::Excluded,
    }
}

/// A request's `explain`; an unknown number is INVALID_ARGUMENT.
pub fn explain(v: i32) -> Result<Explain, Error> {
    match pb::Explain::try_from(v) {
        Ok(pb::Explain::Unspecified | pb::Explain::Summary) => Ok(Explain::Summary),
        Ok(pb::Explain::Full) => Ok(Explain::Full),
        Err(_) => Err(Error::invalid("explain", format!("unknown value {v}"))),
    }
}

/// Omitted candidates per verdict, and their total.
pub fn omitted(v: Omitted) -> (u32, Vec<pb::VerdictCount>) {
    let total = v.iter().map(|(_, n)| n).sum();
    let counts = v
        .into_iter()
        .map(|(v, count)| pb::VerdictCount {
            verdict: verdict(v).into(),
            count,
        })
        .collect();
    (total, counts)
}

pub fn candidates(v: Vec<CandidateRecord>) -> Vec<pb::Candidate> {
    v.into_iter()
        .map(|c| pb::Candidate {
            rep_id: c.rep_id,
            match_score: c.match_score,
            verdict: verdict(c.verdict).into(),
            detail: c.detail.to_string(),
            load: c.load,
            capacity: c.capacity,
        })
        .collect()
}

fn contributions(v: Vec<Factor>) -> Vec<pb::Contribution> {
    v.into_iter()
        .map(|f| pb::Contribution {
            text: f.text(),
            attribute: f.attribute,
            contribution: f.contribution,
            value: f.value,
            level: f.level.unwrap_or_default(),
        })
        .collect()
}

pub fn decision(d: Decision) -> pb::DecisionRecord {
    let routing = d.routing.map(|r| {
        let (status, assignment, queue_position) = match r.status {
            RoutingStatus::Assigned(a) => (pb::RoutingStatus::Assigned, Some(assignment(a)), 0),
            RoutingStatus::Closed(a) => (pb::RoutingStatus::Closed, Some(assignment(a)), 0),
            RoutingStatus::Queued { position } => (pb::RoutingStatus::Queued, None, position),
            RoutingStatus::Unroutable => (pb::RoutingStatus::Unroutable, None, 0),
        };
        let (candidates_omitted, omitted_by_verdict) = omitted(r.omitted);
        pb::Routing {
            status: status.into(),
            assignment,
            queue_position,
            candidates: candidates(r.candidates),
            replayed: r.replayed,
            pool: r.pool,
            reason: r.reason,
            candidates_omitted,
            omitted_by_verdict,
        }
    });
    pb::DecisionRecord {
        lead_id: d.lead_id,
        score: Some(pb::Score {
            probability: d.score.probability,
            score: d.score.score,
            grade: d.score.grade.as_str().into(),
            top_positive: contributions(d.score.top_positive),
            top_negative: contributions(d.score.top_negative),
            model_version: d.score.model_version,
            cold_start: d.score.cold_start,
            clipped: d.score.clipped,
        }),
        segment: Some(pb::Segment {
            name: d.segment.segment,
            rule: d.segment.rule,
        }),
        routing,
        required_skills: d.required_skills,
    }
}

/// An optional non-negative limit, or INVALID_ARGUMENT naming `field`.
fn limit(field: &str, v: Option<i32>) -> Result<Option<u32>, Error> {
    v.map(|q| u32::try_from(q).map_err(|_| Error::invalid(field, format!("{q} is negative"))))
        .transpose()
}

pub fn rep(msg: Option<pb::Rep>) -> Result<Rep, Error> {
    let r = msg.ok_or_else(|| Error::invalid("rep", "is required"))?;
    let capacity = u32::try_from(r.capacity)
        .map_err(|_| Error::invalid("rep.capacity", format!("{} is negative", r.capacity)))?;
    Ok(Rep {
        name: r.name,
        pool: r.pool,
        skills: r.skills.into_iter().collect(),
        daily_quota: limit("rep.daily_quota", r.daily_quota)?,
        weekly_quota: limit("rep.weekly_quota", r.weekly_quota)?,
        monthly_quota: limit("rep.monthly_quota", r.monthly_quota)?,
        quarterly_quota: limit("rep.quarterly_quota", r.quarterly_quota)?,
        active: r.active,
        shift: r.shift.map(|s| Shift {
            timezone: s.timezone,
            start: s.start,
            end: s.end,
            days: s.days,
        }),
        time_off: r
            .time_off
            .into_iter()
            .map(|t| TimeOff {
                from: t.from,
                to: t.to,
            })
            .collect(),
        return_ramp_days: r.return_ramp_days,
        ..Rep::new(&r.id, capacity)
    })
}

pub fn rep_status(s: RepStatus) -> pb::RepStatus {
    let r = s.rep;
    let active = r.active;
    let to_i32 = |q: Option<u32>| q.map(|q| i32::try_from(q).unwrap_or(i32::MAX));
    let periods = PERIODS
        .iter()
        .zip(r.quotas())
        .zip(s.counts)
        .map(|((p, limit), count)| pb::PeriodCount {
            period: p.name().into(),
            count,
            limit,
        })
        .collect();
    pb::RepStatus {
        rep: Some(pb::Rep {
            id: r.id,
            name: r.name,
            pool: r.pool,
            skills: r.skills.into_iter().collect(),
            capacity: i32::try_from(r.capacity).unwrap_or(i32::MAX),
            daily_quota: to_i32(r.daily_quota),
            weekly_quota: to_i32(r.weekly_quota),
            monthly_quota: to_i32(r.monthly_quota),
            quarterly_quota: to_i32(r.quarterly_quota),
            active: r.active,
            shift: r.shift.map(|s| pb::Shift {
                timezone: s.timezone,
                start: s.start,
                end: s.end,
                days: s.days,
            }),
            time_off: r
                .time_off
                .into_iter()
                .map(|t| pb::TimeOff {
                    from: t.from,
                    to: t.to,
                })
                .collect(),
            return_ramp_days: r.return_ramp_days,
        }),
        load: s.load,
        assigned_today: s.assigned_today,
        last_assigned_at_ms: s.last_assigned_ms.unwrap_or(0),
        periods,
        on_shift: s.on_shift,
        on_leave: s.on_leave,
        effective_capacity: s.effective_capacity,
        sla_breaches: s.sla_breaches,
        active: Some(active),
    }
}

pub fn model_info(m: Option<&LoadedModel>) -> pb::ModelInfo {
    let Some(m) = m else {
        return pb::ModelInfo {
            loaded: false,
            cold_start: Some(true),
            model_version: "cold-start".into(),
            ..Default::default()
        };
    };
    let a = m.model.artifact();
    let spec = &a.spec;
    pb::ModelInfo {
        loaded: true,
        cold_start: Some(false),
        model_version: a.model_version.clone(),
        format_version: a.format_version,
        created_at: a.created_at.clone().unwrap_or_default(),
        label: a.training.label.clone(),
        data_fingerprint: a.data_fingerprint.clone(),
        holdout: Some(pb::Metrics {
            auc: a.holdout.auc,
            log_loss: a.holdout.log_loss,
            brier: a.holdout.brier,
            n: a.holdout.n,
            base_rate: a.holdout.base_rate,
            calibration: a
                .holdout
                .calibration
                .iter()
                .map(|b| pb::CalibrationBin {
                    lower: b.lower,
                    upper: b.upper,
                    count: b.count,
                    mean_predicted: b.mean_predicted,
                    observed_rate: b.observed_rate,
                })
                .collect(),
        }),
        features: spec
            .features()
            .iter()
            .map(|f| pb::Feature {
                attribute: f.name.clone(),
                kind: f.kind_name().into(),
                columns: f.columns() as u32,
            })
            .collect(),
        grade_thresholds: a.grade_thresholds.to_vec(),
        refit: a.training.refit,
        path: m.path.display().to_string(),
    }
}

pub fn gate_result(s: &Swap) -> pb::GateResult {
    let g = &s.gate;
    let e = g.evaluation.as_ref();
    pb::GateResult {
        live_version: g.live_version.clone().unwrap_or_default(),
        live_auc: e.map(|e| e.live.auc),
        candidate_version: g.candidate_version.clone(),
        candidate_auc: e.map(|e| e.candidate.auc),
        margin: g.policy.margin,
        forced: Some(s.forced),
        overridden: g.refusals.clone(),
        rows: e.map(|e| e.rows),
        positives: e.map(|e| e.positives),
        source: e.map(|e| e.source.clone()).unwrap_or_default(),
        live_log_loss: e.map(|e| e.live.log_loss),
        candidate_log_loss: e.map(|e| e.candidate.log_loss),
        live_brier: e.map(|e| e.live.brier),
        candidate_brier: e.map(|e| e.candidate.brier),
        min_rows: g.policy.min_rows,
        min_positives: g.policy.min_positives,
        summary: g.summary(),
    }
}

fn drift(d: &Distribution) -> pb::Drift {
    pb::Drift {
        name: d.name.clone(),
        psi: d.psi,
        alert: Some(d.alert),
        observed: d.observed,
        bins: d
            .labels
            .iter()
            .zip(&d.expected)
            .zip(&d.counts)
            .map(|((label, expected), count)| pb::DriftBin {
                label: label.clone(),
                expected: *expected,
                count: *count,
            })
            .collect(),
    }
}

/// GetModelHealth's answer; `report` is None in cold start or for artifacts without drift data.
pub fn model_health(m: Option<&LoadedModel>, report: Option<&DriftReport>) -> pb::ModelHealth {
    pb::ModelHealth {
        loaded: m.is_some(),
        cold_start: Some(m.is_none()),
        model_version: m
            .map(|m| m.model.version().to_string())
            .unwrap_or_else(|| "cold-start".into()),
        observed: report.map(|r| r.observed).unwrap_or_default(),
        psi_alert: PSI_ALERT,
        min_observations: report.map_or(MIN_OBSERVATIONS, |r| r.min_observations),
        features: report
            .map(|r| r.features.iter().map(drift).collect())
            .unwrap_or_default(),
        score: report.map(|r| drift(&r.score)),
    }
}

pub fn event_kind(k: EventKind) -> pb::AssignmentEventKind {
    use pb::AssignmentEventKind as P;
    match k {
        EventKind::Assigned => P::Assigned,
        EventKind::Queued => P::Queued,
        EventKind::Offered => P::Offered,
        EventKind::Accepted => P::Accepted,
        EventKind::Declined => P::Declined,
        EventKind::Expired => P::Expired,
        EventKind::Reassigned => P::Reassigned,
        EventKind::Closed => P::Closed,
        EventKind::SlaBreached => P::SlaBreached,
        EventKind::Contacted => P::Contacted,
    }
}

pub fn event(e: Event) -> pb::AssignmentEvent {
    pb::AssignmentEvent {
        cursor: e.cursor,
        pool: e.pool,
        kind: event_kind(e.kind).into(),
        lead_id: e.lead_id,
        rep_id: e.rep_id,
        assignment: e.assignment.map(assignment),
        reason: e.reason,
        at_ms: e.at_ms,
    }
}

/// List states from the request (UNSPECIFIED and unknown values are refused).
pub fn list_states(states: &[i32]) -> Result<Vec<Listed>, Error> {
    states
        .iter()
        .map(|s| match pb::ListState::try_from(*s) {
            Ok(pb::ListState::Queued) => Ok(Listed::Queued),
            Ok(pb::ListState::Offered) => Ok(Listed::Offered),
            Ok(pb::ListState::Open) => Ok(Listed::Open),
            _ => Err(Error::invalid("states", format!("{s} is not a list state"))),
        })
        .collect()
}

pub fn listed(item: ListItem, now_ms: i64) -> pb::ListedAssignment {
    let state = match item.listed {
        Listed::Queued => pb::ListState::Queued,
        Listed::Offered => pb::ListState::Offered,
        Listed::Open => pb::ListState::Open,
    };
    pb::ListedAssignment {
        state: state.into(),
        waiting_ms: (now_ms - item.assignment.assigned_at_ms).max(0),
        queue_position: item.position,
        assignment: Some(assignment(item.assignment)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::training::data::Table;

    /// A table row becomes a typed lead, and the lead survives the trip to protobuf and back.
    #[test]
    fn a_row_becomes_a_typed_lead_that_round_trips_through_protobuf() {
        let table = Table {
            headers: vec!["age".into(), "job".into(), "y".into(), "odd".into()],
            rows: vec![vec![
                "41".into(),
                "admin.".into(),
                "no".into(),
                "inf".into(),
            ]],
        };
        let l = table.lead(0, "l0".into(), &["y"]).unwrap();
        assert_eq!(l.attributes.len(), 3);
        assert_eq!(l.attributes["age"], AttrValue::Number(41.0));
        assert_eq!(l.attributes["job"], AttrValue::String("admin.".into()));
        assert_eq!(l.attributes["odd"], AttrValue::String("inf".into()));
        assert!(table.lead(1, "none".into(), &[]).is_none());
        assert_eq!(lead(Some(lead_to_pb(l.clone()))).unwrap(), l);
    }
}
