//! The team board: every rep's availability, load against capacity, quota use per period,
//! SLA breaches today and the performance index with its interval; then the targets.
use std::collections::{BTreeMap, HashMap};

use maud::{Markup, html};

use super::Console;
use super::layout::{failed, num};
use crate::domain::report::{By, PerformanceRow, Period};
use crate::engine::ReportQuery;
use crate::store::RepStatus;

/// The period control shared by the team and forecast boards.
pub fn period_of(q: &HashMap<String, String>) -> Period {
    q.get("period")
        .and_then(|p| Period::parse(p))
        .unwrap_or(Period::Month)
}

/// The report day the boards end on: `?at=YYYY-MM-DD` (to look back at history), else
/// today in `report.timezone`; with the query string that keeps it.
pub fn day_of(c: &Console, q: &HashMap<String, String>) -> (i32, String) {
    let at = q.get("at").map(|s| s.trim()).filter(|s| !s.is_empty());
    match at.and_then(|s| c.engine.parse_report_day("at", s).ok().map(|d| (d, s))) {
        Some((day, s)) => (day, format!("&at={}", super::layout::urlencode(s))),
        None => (c.engine.report_today(), String::new()),
    }
}

/// Period links, and an "as of" date that keeps the other choices (`keep`: hidden fields).
pub fn period_links(
    path: &str,
    chosen: Period,
    extra: &str,
    day: i32,
    keep: &[(&str, &str)],
) -> Markup {
    let date = crate::domain::report::date_of(day).to_string();
    html! {
        div.controls {
            span.muted { "Period:" }
            @for p in [Period::Day, Period::Week, Period::Month, Period::Quarter] {
                a href=(format!("{path}?period={}{extra}", p.name())) class=[(p == chosen).then_some("here")] { (p.name()) }
            }
            form method="get" action=(path) {
                span.muted { "as of " }
                input type="date" name="at" value=(date) aria-label="as of";
                input type="hidden" name="period" value=(chosen.name());
                @for (k, v) in keep { input type="hidden" name=(k) value=(v); }
                button type="submit" { "Show" }
            }
        }
    }
}

fn status(s: &RepStatus) -> (&'static str, &'static str) {
    if !s.rep.active {
        ("inactive", "inactive")
    } else if s.on_leave {
        ("on leave", "leave")
    } else if s.on_shift {
        ("on shift", "on")
    } else {
        ("off shift", "off")
    }
}

fn quotas(s: &RepStatus) -> Vec<(&'static str, u32, u32)> {
    let r = &s.rep;
    [
        ("day", r.daily_quota),
        ("week", r.weekly_quota),
        ("month", r.monthly_quota),
        ("quarter", r.quarterly_quota),
    ]
    .into_iter()
    .zip(s.counts)
    .filter_map(|((name, q), used)| q.map(|q| (name, used, q)))
    .collect()
}

/// A fill bar as SVG (attributes, not inline styles: the console's CSP allows none).
fn bar(used: f64, of: f64) -> Markup {
    let share = if of > 0.0 {
        (used / of).clamp(0.0, 1.0)
    } else {
        1.0
    };
    html! {
        svg class=(if share >= 1.0 { "bar full" } else { "bar" }) width="140" height="12" role="img" aria-label=(format!("{:.0} %", share * 100.0)) {
            rect.track width="140" height="12" rx="6" {}
            rect.fill width=(format!("{:.1}", 140.0 * share)) height="12" rx="6" {}
        }
    }
}

pub async fn build(c: &Console, q: &HashMap<String, String>) -> (Markup, Markup) {
    let e = &c.engine;
    let period = period_of(q);
    let (today, at) = day_of(c, q);
    let (from, _) = period.bounds(today);
    let query = |period, from| ReportQuery {
        period,
        by: By::Rep,
        pool: None,
        from,
        to: today,
    };
    let reps = e.reps(None).await;
    let perf = e.performance(&query(period, from)).await;
    let breaches: BTreeMap<String, f64> = match e.funnel(&query(Period::Day, today)).await {
        Ok(rows) => rows
            .into_iter()
            .map(|r| {
                let n = r
                    .leaks
                    .iter()
                    .filter(|l| l.0 == "sla_breached")
                    .map(|l| l.1)
                    .sum();
                (r.group, n)
            })
            .collect(),
        Err(_) => BTreeMap::new(),
    };
    let targets = e.target_progress().await;
    let controls = period_links("/ui", period, &at, today, &[]);
    let board = html! {
        @match (&reps, &perf) {
            (Err(err), _) => (failed("the team", err)),
            (_, Err(err)) => (failed("performance", err)),
            (Ok(reps), Ok((rows, _))) => {
                @let by_rep: HashMap<&str, &PerformanceRow> = rows.iter().map(|r| (r.group.as_str(), r)).collect();
                p.muted {
                    (reps.len()) " reps · "
                    (reps.iter().filter(|s| s.rep.active && s.on_shift && !s.on_leave).count()) " on shift · "
                    "load " (reps.iter().map(|s| s.load).sum::<u32>()) " of "
                    (reps.iter().map(|s| s.effective_capacity).sum::<u32>())
                    " · performance this " (period.name())
                }
                table #team {
                    thead { tr {
                        th { "Rep" } th { "Pool" } th { "Status" } th { "Load" } th.n { "Load" }
                        th { "Quota use" } th.n { "SLA breaches today" } th.n { "Assigned" }
                        th.n { "Won" } th.n { "Win rate" } th.n { "Expected wins (80 %)" }
                        th.n { "Performance index (80 %)" }
                    } }
                    tbody {
                        @for s in reps {
                            @let (label, class) = status(s);
                            @let row = by_rep.get(s.rep.id.as_str());
                            tr data-rep=(s.rep.id) {
                                td.name { b { (s.rep.id) } @if !s.rep.name.is_empty() && s.rep.name != s.rep.id { br; span.muted { (s.rep.name) } } }
                                td { (s.rep.pool) }
                                td { span class=(format!("pill {class}")) data-k="status" { (label) } }
                                td { (bar(f64::from(s.load), f64::from(s.effective_capacity))) }
                                td.n { span data-k="load" { (s.load) } " / " span data-k="capacity" { (s.effective_capacity) } }
                                td {
                                    @let q = quotas(s);
                                    @for (name, used, of) in &q {
                                        div { span.muted { (name) " " } (used) " / " (of) " " (bar(f64::from(*used), f64::from(*of))) }
                                    }
                                    @if q.is_empty() { span.muted { "none" } }
                                }
                                td.n data-k="breaches" { (breaches.get(&s.rep.id).copied().unwrap_or(0.0)) }
                                td.n data-k="assigned" { (row.map_or(0.0, |r| r.assigned)) }
                                td.n data-k="won" { (row.map_or(0.0, |r| r.won)) }
                                td.n { (num(row.and_then(|r| r.win_rate).map(|w| w * 100.0), 1)) @if row.and_then(|r| r.win_rate).is_some() { " %" } }
                                td.n { @if let Some(r) = row { (num(Some(r.expected_wins), 1)) " " span.muted { "[" (num(Some(r.wins_low.max(0.0)), 0)) "–" (num(Some(r.wins_high), 0)) "]" } } }
                                td.n {
                                    @if let Some(r) = row {
                                        span data-k="index" { (num(r.index, 2)) } " " span.muted { "[" (num(Some(r.index_low), 2)) "–" (num(Some(r.index_high), 2)) "]" }
                                        @if !r.flag.is_empty() { " " span.pill.alert { (r.flag) } }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        h2 { "Targets" }
        @match &targets {
            Err(err) => (failed("targets", err)),
            Ok(t) if t.is_empty() => p.muted { "No targets set (SetTarget, `leadrouter set-target`, or [rep.targets] in the team file)." },
            Ok(t) => table #targets {
                thead { tr { th { "Scope" } th { "Period" } th { "Metric" } th.n { "Target" } th.n { "Actual" } th { "Progress" } th.n { "Projected" } } }
                tbody {
                    @for p in t {
                        tr {
                            td { (scope(&p.target.scope)) }
                            td { (p.period) }
                            td { (p.target.metric.name()) }
                            td.n { (num(Some(p.target.value), 0)) }
                            td.n { (num(Some(p.actual), 0)) }
                            td { (bar(p.progress, 1.0)) " " (num(Some(p.progress * 100.0), 0)) " %" }
                            td.n { (num(Some(p.projected), 1)) }
                        }
                    }
                }
            },
        }
    };
    (controls, board)
}

fn scope(s: &crate::domain::target::Scope) -> String {
    use crate::domain::target::Scope;
    match s {
        Scope::Rep(id) => format!("rep {id}"),
        Scope::Pool(p) => format!("pool {p}"),
        Scope::Team => "team".into(),
    }
}
