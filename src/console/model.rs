//! The model board: the live version and how it was trained, its holdout metrics, a
//! calibration plot (holdout bins beside closed live leads), PSI per feature with the
//! observations behind it, and this replica's model history and gate verdicts.
use maud::{Markup, html};

use super::Console;
use super::charts;
use super::layout::{failed, num, start_back, when};
use crate::domain::drift::PSI_ALERT;
use crate::domain::report::{By, Period};
use crate::engine::ReportQuery;

pub async fn build(c: &Console) -> (Markup, Markup) {
    let e = &c.engine;
    let today = e.report_today();
    // Closed leads of the last four quarters, banded by probability.
    let from = start_back(Period::Quarter, today, 3);
    let closed = e
        .performance(&ReportQuery {
            period: Period::Quarter,
            by: By::Team,
            pool: None,
            from,
            to: today,
        })
        .await;
    let model = e.model();
    let drift = e.drift();
    let history = e.recent().models();
    let board = html! {
        div.grid {
            section {
                h2 { "Live model" }
                @match &model {
                    None => p data-k="version" { "cold start: no model loaded, base-rate scores" },
                    Some(m) => {
                        @let a = m.model.artifact();
                        @let t = &a.training;
                        dl.kv {
                            dt { "version" } dd data-k="version" { code { (a.model_version) } }
                            dt { "file" } dd { (m.path.display().to_string()) }
                            dt { "registry generation" } dd { (e.registry_generation()) }
                            dt { "trained on" } dd { (t.source) " · label " (t.label) " = " (t.positive) }
                            dt { "rows" } dd { (t.rows_train) " train · " (t.rows_holdout) " holdout" @if t.refit { " · refitted on all rows" } }
                            dt { "C" } dd { (num(Some(t.c), 4)) }
                            dt { "columns" } dd { (a.weights.len()) }
                            dt { "holdout AUC" } dd data-k="auc" { (num(Some(a.holdout.auc), 4)) }
                            dt { "holdout Brier" } dd data-k="brier" { (num(Some(a.holdout.brier), 4)) }
                            dt { "holdout log loss" } dd { (num(Some(a.holdout.log_loss), 4)) }
                            dt { "holdout base rate" } dd { (num(Some(a.holdout.base_rate * 100.0), 2)) " % of " (a.holdout.n) }
                        }
                    }
                }
            }
            section {
                h2 { "Calibration" }
                p.legend { "Blue: holdout bins at training; amber: leads closed won or lost in the last four quarters, banded by probability. On the dashed line, predicted equals observed." }
                @let holdout: Vec<(f64, f64, f64)> = model.as_ref().map(|m| m.model.artifact().holdout.calibration.iter().filter(|b| b.count > 0).map(|b| (b.mean_predicted, b.observed_rate, b.count as f64)).collect()).unwrap_or_default();
                @let live: Vec<(f64, f64, f64)> = match &closed { Ok((_, bands)) => bands.iter().filter(|b| b.leads > 0.0).map(|b| (b.mean_probability, b.won / b.leads, b.leads)).collect(), Err(_) => vec![] };
                @if let Err(err) = &closed { (failed("closed leads", err)) }
                (charts::calibration(&holdout, &live))
            }
        }
        section {
            h2 { "Drift: PSI per feature" }
            @match &drift {
                None => p.muted { "No drift reference (cold start, or an artifact trained without one)." },
                Some((_, r)) => {
                    p.muted {
                        (r.observed) " leads scored by this version on this replica; a feature alerts past PSI "
                        (PSI_ALERT) " with at least " (r.min_observations) " observations."
                    }
                    (charts::psi(&r.features.iter().chain([&r.score]).map(|f| (f.name.clone(), f.psi, f.observed, f.alert)).collect::<Vec<_>>(), PSI_ALERT))
                    table #psi {
                        thead { tr { th { "Feature" } th.n { "PSI" } th.n { "Observations" } th { "" } } }
                        tbody {
                            @for f in r.features.iter().chain([&r.score]) {
                                tr data-feature=(f.name) {
                                    td { (f.name) } td.n data-k="psi" { (num(Some(f.psi), 4)) } td.n data-k="observed" { (f.observed) }
                                    td { @if f.alert { span.pill.alert { "drift" } } }
                                }
                            }
                        }
                    }
                }
            }
        }
        section {
            h2 { "History and gate verdicts (this replica)" }
            @if history.is_empty() {
                p.muted { "No model events since this replica started." }
            } @else {
                table #history {
                    thead { tr { th { "When" } th { "What" } th { "Version" } th { "Detail" } } }
                    tbody {
                        @for h in &history {
                            tr data-what=(h.what) {
                                td { (when(h.at_ms)) }
                                td { span class=(if h.what == "refused" { "pill alert" } else { "pill" }) { (h.what) } }
                                td { code { (h.version) } }
                                td { (h.detail) }
                            }
                        }
                    }
                }
            }
        }
    };
    (html! {}, board)
}
