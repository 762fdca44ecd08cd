//! Forecast against actual: expected wins (the sum of probabilities) with the 80 % band
//! against actual wins, per period for the team and per rep, segment or pool for one period;
//! the open pipeline's forecast; and the funnel as a leaky bucket with its drop-offs.
use std::collections::HashMap;

use maud::{Markup, html};

use super::Console;
use super::charts::{self, BandRow};
use super::layout::{ago, failed, num, start_back};
use super::team::{period_links, period_of};

use crate::domain::report::By;
use crate::engine::ReportQuery;

/// Periods the team chart goes back (the current one included).
const PERIODS_BACK: usize = 6;

/// Queued leads have no rep: their group is empty.
fn group(g: &str) -> &str {
    if g.is_empty() { "(queued, no rep)" } else { g }
}

fn by_of(q: &HashMap<String, String>) -> By {
    q.get("by")
        .and_then(|b| By::parse(b))
        .filter(|b| *b != By::Team)
        .unwrap_or(By::Rep)
}

pub async fn build(c: &Console, q: &HashMap<String, String>) -> (Markup, Markup) {
    let e = &c.engine;
    let (period, by) = (period_of(q), by_of(q));
    let (today, at) = super::team::day_of(c, q);
    let this = period.bounds(today).0;
    let query = |by, from| ReportQuery {
        period,
        by,
        pool: None,
        from,
        to: today,
    };
    let team = e
        .performance(&query(
            By::Team,
            start_back(period, today, PERIODS_BACK - 1),
        ))
        .await;
    let groups = e.performance(&query(by, this)).await;
    let open = e.forecast(by, None).await;
    let funnel = e.funnel(&query(By::Team, this)).await;
    let controls = html! {
        (period_links("/ui/forecast", period, &format!("&by={}{at}", by.name()), today, &[("by", by.name())]))
        div.controls {
            span.muted { "By:" }
            @for b in [By::Rep, By::Segment, By::Pool] {
                a href=(format!("/ui/forecast?period={}&by={}{at}", period.name(), b.name())) class=[(b == by).then_some("here")] { (b.name()) }
            }
        }
    };
    let board = html! {
        div.grid {
            section {
                h2 { "Team, by " (period.name()) }
                p.legend { "Shaded: the 80 % band of wins the closed leads' probabilities predict; tick: expected wins; dot: actual wins." }
                @match &team {
                    Err(err) => (failed("performance", err)),
                    Ok((rows, _)) if rows.is_empty() => p.muted { "No closed leads in these periods." },
                    Ok((rows, _)) => (charts::bands(&rows.iter().map(|r| BandRow { label: r.period.clone(), low: r.wins_low, expected: r.expected_wins, high: r.wins_high, actual: r.won }).collect::<Vec<_>>())),
                }
            }
            section {
                h2 { "Funnel this " (period.name()) }
                @match &funnel {
                    Err(err) => (failed("the funnel", err)),
                    Ok(rows) if rows.is_empty() => p.muted { "No leads this period." },
                    Ok(rows) => {
                        @for r in rows {
                            (charts::funnel(&r.steps.iter().map(|s| (s.name.to_string(), s.count, s.drop_off)).collect::<Vec<_>>()))
                            table #leaks {
                                thead { tr { th { "Leak" } th.n { "Leads" } } }
                                tbody { @for (name, n) in &r.leaks { tr data-leak=(name) { td { (name) } td.n { (n) } } } }
                            }
                            table {
                                thead { tr { th { "Stage" } th.n { "Leads" } th.n { "p50" } th.n { "p90" } th.n { "p99" } } }
                                tbody {
                                    @for s in &r.stages {
                                        tr { td { (s.stage) } td.n { (s.count) }
                                            @for v in [s.p50, s.p90, s.p99] { td.n { (v.map_or("–".into(), |v| ago(v as i64))) } } }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        section {
            h2 { "By " (by.name()) ", this " (period.name()) }
            @match &groups {
                Err(err) => (failed("performance", err)),
                Ok((rows, _)) if rows.is_empty() => p.muted { "No leads this period." },
                Ok((rows, _)) => {
                    (charts::bands(&rows.iter().map(|r| BandRow { label: group(&r.group).to_string(), low: r.wins_low, expected: r.expected_wins, high: r.wins_high, actual: r.won }).collect::<Vec<_>>()))
                    table #performance {
                        thead { tr { th { (by.name()) } th.n { "Assigned" } th.n { "Open" } th.n { "Won" } th.n { "Lost" } th.n { "Expected wins" } th.n { "80 % band" } th.n { "Index" } th { "" } } }
                        tbody {
                            @for r in rows {
                                tr data-group=(r.group) {
                                    td { (group(&r.group)) } td.n data-k="assigned" { (r.assigned) } td.n { (r.open) }
                                    td.n data-k="won" { (r.won) } td.n { (r.lost) }
                                    td.n data-k="expected" { (num(Some(r.expected_wins), 2)) }
                                    td.n { (num(Some(r.wins_low.max(0.0)), 0)) "–" (num(Some(r.wins_high), 0)) }
                                    td.n { (num(r.index, 2)) }
                                    td { @if !r.flag.is_empty() { span.pill.alert { (r.flag) } } }
                                }
                            }
                        }
                    }
                }
            }
        }
        section {
            h2 { "Open pipeline, by " (by.name()) }
            @match &open {
                Err(err) => (failed("the forecast", err)),
                Ok(rows) if rows.is_empty() => p.muted { "No open leads." },
                Ok(rows) => table #open {
                    thead { tr { th { (by.name()) } th.n { "Open" } th.n { "Expected wins" } th.n { "80 % band" } th.n { "Expected value" } } }
                    tbody {
                        @for r in rows {
                            tr data-group=(r.group) {
                                td { (group(&r.group)) } td.n data-k="open" { (r.open) }
                                td.n data-k="expected" { (num(Some(r.expected_wins), 2)) }
                                td.n { (num(Some(r.wins_low.max(0.0)), 0)) "–" (num(Some(r.wins_high), 0)) }
                                td.n { (num(Some(r.expected_value), 0)) }
                            }
                        }
                    }
                },
            }
        }
    };
    (controls, board)
}
