//! ReportService messages to domain types and back.
use crate::domain::report::{Band, By, ForecastRow, FunnelRow, PerformanceRow, Period};
use crate::domain::target::{Progress, Scope, Target, TargetMetric};
use crate::engine::{Engine, HistoryRow, ReportQuery};
use crate::error::Error;
use crate::grpc::pb;

pub fn query(engine: &Engine, r: &pb::ReportRequest) -> Result<ReportQuery, Error> {
    let period = match r.period.trim() {
        "" => Period::Month,
        p => Period::parse(p).ok_or_else(|| {
            Error::invalid(
                "period",
                format!("{p:?} is not day, week, month or quarter"),
            )
        })?,
    };
    let by = By::parse(&r.by).ok_or_else(|| {
        Error::invalid(
            "by",
            format!("{:?} is not rep, pool, segment or team", r.by),
        )
    })?;
    let day = |field: &str, s: &str, default: i32| match s.trim() {
        "" => Ok(default),
        s => engine.parse_report_day(field, s),
    };
    let from = day("from", &r.from, i32::MIN)?;
    let to = day("to", &r.to, i32::MAX)?;
    if from > to {
        return Err(Error::invalid("to", "is before from"));
    }
    Ok(ReportQuery {
        period,
        by,
        pool: Some(r.pool.trim().to_string()).filter(|p| !p.is_empty()),
        from,
        to,
    })
}

pub fn performance_row(r: PerformanceRow) -> pb::PerformanceRow {
    pb::PerformanceRow {
        group: r.group,
        period: r.period,
        assigned: r.assigned,
        won: r.won,
        lost: r.lost,
        disqualified: r.disqualified,
        returned: r.returned,
        open: r.open,
        win_rate: r.win_rate,
        won_value: r.won_value,
        expected_wins: r.expected_wins,
        wins_low: r.wins_low,
        wins_high: r.wins_high,
        index: r.index,
        index_low: r.index_low,
        index_high: r.index_high,
        flag: r.flag.to_string(),
    }
}

pub fn band(b: Band) -> pb::CalibrationBand {
    pb::CalibrationBand {
        low: b.low,
        high: b.high,
        leads: b.leads,
        won: b.won,
        mean_probability: b.mean_probability,
    }
}

pub fn forecast_row(r: ForecastRow) -> pb::ForecastRow {
    pb::ForecastRow {
        group: r.group,
        open: r.open,
        expected_wins: r.expected_wins,
        variance: r.variance,
        wins_low: r.wins_low,
        wins_high: r.wins_high,
        expected_value: r.expected_value,
    }
}

pub fn funnel_row(r: FunnelRow) -> pb::FunnelRow {
    pb::FunnelRow {
        group: r.group,
        period: r.period,
        steps: r
            .steps
            .into_iter()
            .map(|s| pb::FunnelStep {
                name: s.name.to_string(),
                count: s.count,
                drop_off: s.drop_off,
            })
            .collect(),
        leaks: r
            .leaks
            .into_iter()
            .map(|(name, count)| pb::Leak {
                name: name.to_string(),
                count,
            })
            .collect(),
        stages: r
            .stages
            .into_iter()
            .map(|s| pb::StageTimes {
                stage: s.stage.to_string(),
                count: s.count,
                p50_s: s.p50,
                p90_s: s.p90,
                p99_s: s.p99,
            })
            .collect(),
    }
}

pub fn target(t: Option<pb::Target>) -> Result<Target, Error> {
    let t = t.ok_or_else(|| Error::invalid("target", "is required"))?;
    let id = t.id.trim().to_string();
    if id.len() > crate::domain::lead::MAX_ID_LEN || id.contains('|') {
        return Err(Error::invalid(
            "target.id",
            "has at most 128 bytes and no '|'",
        ));
    }
    let scope = match t.scope.trim() {
        "rep" | "pool" if id.is_empty() => {
            return Err(Error::invalid(
                "target.id",
                "is required for a rep or pool target",
            ));
        }
        "rep" => Scope::Rep(id),
        "pool" => Scope::Pool(id),
        "team" | "" => Scope::Team,
        s => {
            return Err(Error::invalid(
                "target.scope",
                format!("{s:?} is not rep, pool or team"),
            ));
        }
    };
    let period = Period::parse(&t.period).ok_or_else(|| {
        Error::invalid(
            "target.period",
            format!("{:?} is not day, week, month or quarter", t.period),
        )
    })?;
    let metric = TargetMetric::parse(&t.metric).ok_or_else(|| {
        Error::invalid(
            "target.metric",
            format!("{:?} is not assignments, wins or won_value", t.metric),
        )
    })?;
    Ok(Target {
        scope,
        period,
        metric,
        value: t.value,
    })
}

pub fn target_to_pb(t: Target) -> pb::Target {
    let (scope, id) = match t.scope {
        Scope::Rep(id) => ("rep", id),
        Scope::Pool(p) => ("pool", p),
        Scope::Team => ("team", String::new()),
    };
    pb::Target {
        scope: scope.into(),
        id,
        period: t.period.name().into(),
        metric: t.metric.name().into(),
        value: t.value,
    }
}

pub fn progress(p: Progress) -> pb::TargetProgress {
    pb::TargetProgress {
        target: Some(target_to_pb(p.target)),
        period: p.period,
        actual: p.actual,
        progress: p.progress,
        projected: p.projected,
    }
}

pub fn history_row(i: usize, r: pb::HistoryRow) -> Result<HistoryRow, Error> {
    let lead = super::lead(Some(pb::Lead {
        id: r.lead_id,
        attributes: r.attributes.into_iter().collect(),
    }))
    .map_err(|e| e.within(&format!("rows[{i}]")))?;
    let outcome = match r.outcome {
        0 => None,
        o => Some(super::outcome(o).map_err(|e| e.within(&format!("rows[{i}]")))?),
    };
    Ok(HistoryRow {
        lead,
        rep: r.rep,
        assigned_at: r.assigned_at,
        closed_at: r.closed_at,
        outcome,
        value: r.value,
    })
}
