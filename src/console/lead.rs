//! Lead lookup: one lead's whole decision record. Its state and stored context (attributes,
//! probability, segment, model, needs, terms) come from the store, so any replica answers;
//! the candidates and their verdicts from this replica's recent decisions; factors from that
//! record, or recomputed when the model that scored the lead is still live; and its events
//! from its pool's log.
use std::collections::HashMap;

use maud::{Markup, html};

use super::Console;
use super::layout::{failed, num, when};
use crate::domain::assignment::{LeadContext, LeadState};
use crate::domain::event::Event;
use crate::domain::lead::AttrValue;
use crate::domain::model::Score;
use crate::engine::Decision;
use crate::error::Result;

/// Events read at most (the newest of the pool's log) when looking for a lead's.
const SCAN: u64 = 20_000;

async fn events_of(c: &Console, pool: &str, lead_id: &str) -> Result<(Vec<Event>, bool)> {
    const PAGE: usize = 512;
    let store = c.engine.store();
    let head = store.events_after(pool, 0, 1).await?;
    let mut after = head
        .oldest
        .saturating_sub(1)
        .max(head.last.saturating_sub(SCAN));
    let partial = after + 1 > head.oldest.max(1);
    let mut out = Vec::new();
    loop {
        let page = store.events_after(pool, after, PAGE).await?;
        let Some(last) = page.events.last().map(|e| e.cursor) else {
            break;
        };
        out.extend(page.events.into_iter().filter(|e| e.lead_id == lead_id));
        if last >= head.last || last <= after {
            break;
        }
        after = last;
    }
    Ok((out, partial))
}

fn value(v: &AttrValue) -> String {
    match v {
        AttrValue::Bool(b) => b.to_string(),
        AttrValue::Number(n) => n.to_string(),
        AttrValue::String(s) => s.clone(),
    }
}

/// "OverQuota" -> "over quota".
fn words(camel: &str) -> String {
    let mut out = String::new();
    for (i, ch) in camel.chars().enumerate() {
        if ch.is_uppercase() && i > 0 {
            out.push(' ');
        }
        out.extend(ch.to_lowercase());
    }
    out
}

fn terms(t: &crate::domain::assignment::Terms) -> String {
    let secs = |ms: i64| super::layout::ago(ms / 1000);
    let offer = if t.offer_ms > 0 {
        format!(
            "offered, {} to accept, {} offers at most",
            secs(t.offer_ms),
            t.max_offers
        )
    } else {
        "assigned directly".into()
    };
    let sla = match (t.sla_ms, t.sla_reassign) {
        (0, _) => "no first-touch SLA".to_string(),
        (ms, true) => format!("first touch within {}, else reassigned", secs(ms)),
        (ms, false) => format!("first touch within {}, else flagged", secs(ms)),
    };
    let ttl = if t.queue_ttl_ms > 0 {
        format!("expires after {} in the queue", secs(t.queue_ttl_ms))
    } else {
        "waits in the queue without limit".into()
    };
    format!("{offer}; {sla}; {ttl}")
}

fn factors(score: &Score) -> Markup {
    html! {
        table #factors {
            thead { tr { th { "Factor" } th { "Value" } th.n { "Contribution (log-odds)" } } }
            tbody {
                @for f in score.top_positive.iter().chain(&score.top_negative) {
                    tr data-attribute=(f.attribute) {
                        td { (f.attribute) } td { (f.text()) }
                        td.n data-k="contribution" { (format!("{:+.3}", f.contribution)) }
                    }
                }
            }
        }
        @if !score.clipped.is_empty() { p.muted { "Clipped to the training range: " (score.clipped.join(", ")) } }
    }
}

fn record(d: &Decision) -> Markup {
    let Some(r) = &d.routing else {
        return html! { p.muted { "Scored only (ScoreLead): no routing." } };
    };
    html! {
        dl.kv {
            dt { "pool" } dd { (r.pool) }
            dt { "required skills" } dd { (if d.required_skills.is_empty() { "none".to_string() } else { d.required_skills.join(", ") }) }
            @if !r.reason.is_empty() { dt { "reason" } dd data-k="reason" { (r.reason) } }
        }
        table #candidates {
            thead { tr { th { "Rep" } th { "Verdict" } th.n { "Match" } th.n { "Load" } th { "Why" } } }
            tbody {
                @for cand in &r.candidates {
                    tr data-rep=(cand.rep_id) {
                        td { (cand.rep_id) }
                        td data-k="verdict" { (words(&format!("{:?}", cand.verdict))) }
                        td.n { (num(Some(cand.match_score), 3)) }
                        td.n { (cand.load) " / " (cand.capacity) }
                        td { (cand.detail.to_string()) }
                    }
                }
            }
        }
        @if !r.omitted.is_empty() {
            p.muted { "Not listed: " (r.omitted.iter().map(|(v, n)| format!("{n} {}", words(&format!("{v:?}")))).collect::<Vec<_>>().join(", ")) "." }
        }
    }
}

/// The segment rule that matched: the kept decision's, else the rules applied again to the
/// stored lead and probability (the same inputs give the same first match).
fn context(c: &Console, ctx: &LeadContext, kept: Option<&Decision>) -> Markup {
    let rules = c.engine.segments();
    let name = kept.map_or_else(
        || rules.classify(&ctx.lead, ctx.probability).rule,
        |d| d.segment.rule.clone(),
    );
    let rule = rules
        .rules
        .iter()
        .find(|r| r.name == name)
        .and_then(|r| serde_json::to_string(r).ok());
    let mut attrs: Vec<(&String, &AttrValue)> = ctx.lead.attributes.iter().collect();
    attrs.sort_by(|a, b| a.0.cmp(b.0));
    html! {
        dl.kv {
            dt { "probability" } dd data-k="probability" { (num(Some(ctx.probability), 4)) }
            dt { "segment" } dd data-k="segment" { (ctx.segment) }
            dt { "segment rule" } dd { code { (rule.unwrap_or_else(|| "the default segment (no rule matched)".into())) } }
            dt { "model" } dd data-k="model" { code { (ctx.model_version) } }
            dt { "pool" } dd { (ctx.needs.pool) }
            dt { "terms" } dd { (terms(&ctx.terms)) }
            @if ctx.expected_value > 0.0 { dt { "expected value" } dd { (num(Some(ctx.expected_value), 2)) } }
        }
        h2 { "Attributes" }
        table #attributes {
            tbody { @for (k, v) in attrs { tr { td { (k) } td { (value(v)) } } } }
        }
    }
}

pub async fn build(c: &Console, q: &HashMap<String, String>) -> (Markup, Markup) {
    let id = q
        .get("id")
        .map(|s| s.trim())
        .unwrap_or_default()
        .to_string();
    let controls = html! {
        form.controls method="get" action="/ui/lead" {
            input type="text" name="id" value=(id) placeholder="lead id" aria-label="lead id";
            button type="submit" { "Look up" }
        }
    };
    if id.is_empty() {
        return (controls, html! { p.muted { "Enter a lead id." } });
    }
    if let Err(e) = crate::domain::lead::validate_id("id", &id) {
        return (controls, failed("the lead", &e));
    }
    let store = c.engine.store();
    let (state, ctx) = (store.lookup(&id).await, store.context(&id).await);
    let kept = c.engine.recent().decision_of(&id);
    let ctx = match ctx {
        Ok(ctx) => ctx,
        Err(e) => return (controls, failed("the lead", &e)),
    };
    let pool = ctx.as_ref().map(|x| x.needs.pool.clone()).or_else(|| {
        kept.as_ref()
            .and_then(|d| d.routing.as_ref().map(|r| r.pool.clone()))
    });
    let events = match &pool {
        Some(p) => Some(events_of(c, p, &id).await),
        None => None,
    };
    // Factors: the kept record, else recomputed when the scoring model is still live.
    let live = c.engine.model().map(|m| m.model.version().to_string());
    let score = kept.as_ref().map(|d| d.score.clone()).or_else(|| {
        let x = ctx.as_ref()?;
        (live.as_deref() == Some(x.model_version.as_str()))
            .then(|| {
                c.engine
                    .score_observed(&x.lead, false)
                    .ok()
                    .map(|d| d.score)
            })
            .flatten()
    });
    let board = html! {
        @if ctx.is_none() && kept.is_none() {
            p.error data-k="missing" { "No lead " (id) " is stored, and this replica has no recent decision for it." }
        }
        div.grid {
            section {
                h2 { "Where it stands" }
                @match &state {
                    Err(e) => (failed("the lead's state", e)),
                    Ok(None) => p.muted data-k="state" { "not stored (unroutable, or forgotten)" },
                    Ok(Some(LeadState::Queued { pool, position, .. })) => p data-k="state" { "queued in " (pool) ", place " (position) },
                    Ok(Some(LeadState::Assigned(a))) => dl.kv {
                        dt { "state" } dd data-k="state" { (format!("{:?}", a.state).to_lowercase()) }
                        dt { "rep" } dd data-k="rep" { (a.rep_id) }
                        dt { "since" } dd { (when(a.assigned_at_ms)) }
                        @if let Some(d) = a.deadline_ms { dt { "deadline" } dd { (when(d)) } }
                        @if let Some(t) = a.contacted_at_ms { dt { "contacted" } dd { (when(t)) } }
                        @if a.sla_breached { dt { "SLA" } dd { span.pill.alert { "breached" } } }
                        @if let Some(t) = a.closed_at_ms { dt { "closed" } dd { (when(t)) } }
                    },
                }
                @if let Some(x) = &ctx { (context(c, x, kept.as_ref())) }
            }
            section {
                h2 { "Score and factors" }
                @match (&score, &kept) {
                    (Some(s), _) => {
                        p { "score " b data-k="score" { (s.score) } " · grade " b { (s.grade.as_str()) } " · probability " (num(Some(s.probability), 4)) }
                        (factors(s))
                    }
                    _ => p.muted { "The model that scored this lead is no longer live; its factors cannot be recomputed." },
                }
            }
        }
        section {
            h2 { "Candidates and verdicts" }
            @match &kept {
                Some(d) => (record(d)),
                None => p.muted { "This replica keeps the newest admin.console_decisions decision records (each with up to 100 candidates); this lead's is not among them: it was decided on another replica, before a restart, or longer ago." },
            }
        }
        section {
            h2 { "Events" }
            @match &events {
                None => p.muted { "No pool known for this lead." },
                Some(Err(e)) => (failed("the events", e)),
                Some(Ok((list, partial))) => {
                    table #lead-events {
                        thead { tr { th.n { "#" } th { "When" } th { "Event" } th { "Rep" } th { "Reason" } } }
                        tbody {
                            @for ev in list {
                                tr data-kind=(ev.kind.as_str()) {
                                    td.n { (ev.cursor) } td { (when(ev.at_ms)) } td { (ev.kind.as_str()) }
                                    td { (ev.assignment.as_ref().map_or(ev.rep_id.as_str(), |a| a.rep_id.as_str())) } td { (ev.reason) }
                                }
                            }
                        }
                    }
                    @if *partial { p.muted { "Searched the pool's newest " (SCAN) " events." } }
                }
            }
        }
    };
    (controls, board)
}
