//! Gauges read at scrape time from the engine and the store (queue depth, rep load, the live
//! model, drift), written straight as Prometheus text: they describe the present, so a rep or
//! model version that is gone leaves no stale series behind.
use std::collections::BTreeMap;
use std::fmt::Write;

use metrics_exporter_prometheus::formatting::sanitize_label_value;

use crate::engine::Engine;

/// One gauge family: HELP, TYPE and its samples.
struct Family<'a> {
    out: &'a mut String,
}

impl Family<'_> {
    fn begin<'a>(out: &'a mut String, name: &str, help: &str) -> Family<'a> {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} gauge");
        Family { out }
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                let _ = write!(self.out, "{k}=\"{}\"", sanitize_label_value(v));
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {}", number(value));
    }
}

fn number(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        }
    } else {
        format!("{v}")
    }
}

/// Per pool: (depth, oldest queued-at ms). A read that fails keeps what it counted.
async fn queues(engine: &Engine, pools: &[String]) -> BTreeMap<String, (usize, Option<i64>)> {
    let mut out = BTreeMap::new();
    for pool in pools {
        let (mut depth, mut oldest) = (0usize, None::<i64>);
        let _ = engine
            .each_queued(pool, |i| {
                depth += 1;
                let at = i.assignment.assigned_at_ms;
                oldest = Some(oldest.map_or(at, |o| o.min(at)));
            })
            .await;
        out.insert(pool.clone(), (depth, oldest));
    }
    out
}

/// The scrape-time gauges. Per-rep series only for pools of at most `per_rep_max` reps, so a
/// 5,000-rep pool costs a handful of series, not 20,000.
pub async fn render(engine: &Engine, per_rep_max: usize, ready: bool) -> String {
    let mut out = String::new();
    let now = engine.now();
    let now_ms = now.as_millisecond();
    let mut f = Family::begin(
        &mut out,
        "leadrouter_ready",
        "1 while this replica serves (model loaded, store reachable, not draining).",
    );
    f.sample("leadrouter_ready", &[], if ready { 1.0 } else { 0.0 });

    if let Some(m) = engine.model() {
        let mut f = Family::begin(
            &mut out,
            "leadrouter_model_info",
            "The live model version (value always 1).",
        );
        let version = m.model.version().to_string();
        f.sample("leadrouter_model_info", &[("version", &version)], 1.0);
    }
    if let Some((_, report)) = engine.drift() {
        let mut f = Family::begin(
            &mut out,
            "leadrouter_feature_psi",
            "Population stability index of each feature's live distribution against training (alert above 0.2).",
        );
        for d in &report.features {
            f.sample("leadrouter_feature_psi", &[("feature", &d.name)], d.psi);
        }
        let mut f = Family::begin(
            &mut out,
            "leadrouter_score_psi",
            "Population stability index of live scores against the training scores.",
        );
        f.sample("leadrouter_score_psi", &[], report.score.psi);
        let mut f = Family::begin(
            &mut out,
            "leadrouter_drift_observed_leads",
            "Distinct leads the live model's drift statistics count.",
        );
        f.sample(
            "leadrouter_drift_observed_leads",
            &[],
            report.observed as f64,
        );
    }

    let Ok(pools) = engine.store().pools().await else {
        return out;
    };
    let queues = queues(engine, &pools).await;
    let mut f = Family::begin(
        &mut out,
        "leadrouter_queue_depth",
        "Leads waiting in the pool's queue.",
    );
    for (pool, (depth, _)) in &queues {
        f.sample("leadrouter_queue_depth", &[("pool", pool)], *depth as f64);
    }
    let mut f = Family::begin(
        &mut out,
        "leadrouter_queue_oldest_wait_seconds",
        "How long the pool's longest-waiting queued lead has waited (0 when the queue is empty).",
    );
    for (pool, (_, oldest)) in &queues {
        let wait = oldest.map_or(0.0, |at| (now_ms - at).max(0) as f64 / 1000.0);
        f.sample(
            "leadrouter_queue_oldest_wait_seconds",
            &[("pool", pool)],
            wait,
        );
    }

    let Ok(statuses) = engine.store().rep_statuses(None, now).await else {
        return out;
    };
    let mut by_pool: BTreeMap<&str, Vec<&crate::store::RepStatus>> = BTreeMap::new();
    for s in &statuses {
        by_pool.entry(s.rep.pool.as_str()).or_default().push(s);
    }
    type Pick = fn(&crate::store::RepStatus) -> f64;
    let pool_gauges: [(&str, &str, Pick); 4] = [
        (
            "leadrouter_pool_reps_available",
            "Reps of the pool that can take a lead now (active, on shift, not on leave).",
            |s| f64::from(u8::from(s.rep.active && s.on_shift && !s.on_leave)),
        ),
        (
            "leadrouter_pool_load",
            "Open assignments held by the pool's reps.",
            |s| f64::from(s.load),
        ),
        (
            "leadrouter_pool_capacity",
            "Capacity of the pool's available reps (after return ramps).",
            |s| {
                if s.rep.active && s.on_shift && !s.on_leave {
                    f64::from(s.effective_capacity)
                } else {
                    0.0
                }
            },
        ),
        (
            "leadrouter_pool_sla_breaches",
            "First-touch SLA breaches counted against the pool's reps.",
            |s| f64::from(s.sla_breaches),
        ),
    ];
    for (name, help, pick) in pool_gauges {
        let mut f = Family::begin(&mut out, name, help);
        for (pool, reps) in &by_pool {
            f.sample(name, &[("pool", pool)], reps.iter().map(|s| pick(s)).sum());
        }
    }
    let small: Vec<&crate::store::RepStatus> = by_pool
        .values()
        .filter(|reps| reps.len() <= per_rep_max)
        .flatten()
        .copied()
        .collect();
    if small.is_empty() {
        return out;
    }
    let mut f = Family::begin(
        &mut out,
        "leadrouter_rep_load",
        "Open assignments a rep holds (pools of at most admin.per_rep_max_reps reps).",
    );
    for s in &small {
        f.sample(
            "leadrouter_rep_load",
            &[("pool", &s.rep.pool), ("rep", &s.rep.id)],
            f64::from(s.load),
        );
    }
    let mut f = Family::begin(
        &mut out,
        "leadrouter_rep_capacity",
        "A rep's capacity now (after a return ramp).",
    );
    for s in &small {
        f.sample(
            "leadrouter_rep_capacity",
            &[("pool", &s.rep.pool), ("rep", &s.rep.id)],
            f64::from(s.effective_capacity),
        );
    }
    let mut f = Family::begin(
        &mut out,
        "leadrouter_rep_quota_used_ratio",
        "New assignments over the rep's quota, per quota period it has (day, week, month, quarter).",
    );
    for s in &small {
        for ((period, quota), count) in crate::domain::rep::PERIODS
            .iter()
            .zip(s.rep.quotas())
            .zip(s.counts)
        {
            if let Some(q) = quota.filter(|q| *q > 0) {
                let period = format!("{period:?}").to_lowercase();
                f.sample(
                    "leadrouter_rep_quota_used_ratio",
                    &[
                        ("pool", &s.rep.pool),
                        ("rep", &s.rep.id),
                        ("period", &period),
                    ],
                    f64::from(count) / f64::from(q),
                );
            }
        }
    }
    out
}
