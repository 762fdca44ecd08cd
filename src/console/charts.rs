//! Server-rendered SVG charts: forecast bands against actual wins, the funnel as a leaky
//! bucket, a calibration plot and PSI bars. Plain shapes with classes (the stylesheet colours
//! them) and a <title> per mark, so a hover names the figure; no script, no chart library.
use maud::{Markup, html};

/// One row of a band chart: label, 80 % band, expected and actual.
pub struct BandRow {
    pub label: String,
    pub low: f64,
    pub expected: f64,
    pub high: f64,
    pub actual: f64,
}

/// A coordinate with one decimal: enough on screen, and the markup stays small.
fn px(v: f64) -> String {
    format!("{v:.1}")
}

const LABEL_W: f64 = 150.0;
const PLOT_W: f64 = 420.0;
const ROW_H: f64 = 22.0;

fn scale(max: f64) -> f64 {
    if max > 0.0 && max.is_finite() {
        PLOT_W / max
    } else {
        1.0
    }
}

/// Expected wins with their band (shaded), the expectation (a tick) and actual wins (a dot).
pub fn bands(rows: &[BandRow]) -> Markup {
    let max = rows
        .iter()
        .map(|r| r.high.max(r.actual).max(r.expected))
        .fold(0.0, f64::max)
        * 1.05;
    let k = scale(max);
    let h = ROW_H * rows.len() as f64 + 24.0;
    html! {
        svg.chart viewBox=(format!("0 0 {} {}", px(LABEL_W + PLOT_W + 60.0), px(h))) width=(px(LABEL_W + PLOT_W + 60.0)) role="img" aria-label="expected against actual wins" {
            @for (i, r) in rows.iter().enumerate() {
                @let y = ROW_H * i as f64 + 4.0;
                text x="0" y=(px(y + 13.0)) { (r.label) }
                rect.band x=(px(LABEL_W + r.low * k)) y=(px(y + 3.0)) width=(px(((r.high - r.low) * k).max(1.0))) height="12" {
                    title { (format!("80 % band {:.1} – {:.1}", r.low, r.high)) }
                }
                line.expected x1=(px(LABEL_W + r.expected * k)) x2=(px(LABEL_W + r.expected * k)) y1=(px(y + 1.0)) y2=(px(y + 17.0)) {
                    title { (format!("expected {:.1}", r.expected)) }
                }
                circle.actual cx=(px(LABEL_W + r.actual * k)) cy=(px(y + 9.0)) r="4.5" {
                    title { (format!("actual {}", r.actual)) }
                }
            }
            line.axis x1=(px(LABEL_W)) x2=(px(LABEL_W + PLOT_W)) y1=(px(h - 18.0)) y2=(px(h - 18.0)) {}
            text x=(px(LABEL_W)) y=(px(h - 4.0)) { "0" }
            text x=(px(LABEL_W + PLOT_W - 20.0)) y=(px(h - 4.0)) { (format!("{max:.0}")) }
        }
    }
}

/// The funnel as a leaky bucket: each step's bar, and beside it what leaked since the step
/// before (the drop-off share in words).
pub fn funnel(steps: &[(String, f64, Option<f64>)]) -> Markup {
    let max = steps.iter().map(|s| s.1).fold(0.0, f64::max);
    let k = scale(max);
    let h = 28.0 * steps.len() as f64 + 8.0;
    html! {
        svg.chart viewBox=(format!("0 0 {} {}", px(LABEL_W + PLOT_W + 160.0), px(h))) width=(px(LABEL_W + PLOT_W + 160.0)) role="img" aria-label="funnel" {
            @for (i, (name, count, drop)) in steps.iter().enumerate() {
                @let y = 28.0 * i as f64 + 4.0;
                @let prev = if i == 0 { *count } else { steps[i - 1].1 };
                text x="0" y=(px(y + 15.0)) { (name) }
                @if drop.is_some() {
                    rect.leak x=(px(LABEL_W)) y=(px(y)) width=(px((prev * k).max(0.0))) height="20" {
                        title { (format!("{:.0} leaked since the step before", prev - count)) }
                    }
                }
                rect.step x=(px(LABEL_W)) y=(px(y)) width=(px((count * k).max(1.0))) height="20" {
                    title { (format!("{name}: {count}")) }
                }
                text x=(px(LABEL_W + (count * k).max(1.0) + 6.0)) y=(px(y + 15.0)) {
                    (format!("{count:.0}"))
                    @if let Some(d) = drop { (format!("  (−{:.1} %)", d * 100.0)) }
                }
            }
        }
    }
}

/// Predicted against observed rates: holdout bins (blue) and closed live leads (amber),
/// each dot's area by its count, with the diagonal of perfect calibration.
pub fn calibration(holdout: &[(f64, f64, f64)], live: &[(f64, f64, f64)]) -> Markup {
    let (s, pad) = (260.0, 30.0);
    let biggest = holdout.iter().chain(live).map(|p| p.2).fold(1.0, f64::max);
    let r = |n: f64| 2.5 + 6.0 * (n / biggest).sqrt();
    html! {
        svg.chart viewBox=(format!("0 0 {} {}", px(s + pad * 2.0), px(s + pad * 2.0))) width=(px(s + pad * 2.0)) role="img" aria-label="calibration plot" {
            rect x=(px(pad)) y=(px(pad)) width=(px(s)) height=(px(s)) fill="none" class="axis" {}
            line.ideal x1=(px(pad)) y1=(px(pad + s)) x2=(px(pad + s)) y2=(px(pad)) {}
            text x=(px(pad)) y=(px(pad + s + 16.0)) { "0" }
            text x=(px(pad + s - 30.0)) y=(px(pad + s + 16.0)) { "predicted 1" }
            text x="2" y=(px(pad + 4.0)) { "1" }
            text x="2" y=(px(pad - 10.0)) { "observed" }
            @for (p, o, n) in holdout {
                circle.point cx=(px(pad + p * s)) cy=(px(pad + (1.0 - o) * s)) r=(px(r(*n))) {
                    title { (format!("holdout: predicted {p:.3}, observed {o:.3}, {n} leads")) }
                }
            }
            @for (p, o, n) in live {
                circle.live-point cx=(px(pad + p * s)) cy=(px(pad + (1.0 - o) * s)) r=(px(r(*n))) {
                    title { (format!("closed leads: predicted {p:.3}, won {o:.3}, {n} leads")) }
                }
            }
        }
    }
}

/// PSI per feature against the alert line.
pub fn psi(features: &[(String, f64, u64, bool)], alert: f64) -> Markup {
    let max = features.iter().map(|f| f.1).fold(alert * 1.5, f64::max);
    let k = scale(max);
    let h = 20.0 * features.len() as f64 + 10.0;
    html! {
        svg.chart viewBox=(format!("0 0 {} {}", px(LABEL_W + PLOT_W + 120.0), px(h))) width=(px(LABEL_W + PLOT_W + 120.0)) role="img" aria-label="population stability per feature" {
            @for (i, (name, v, n, bad)) in features.iter().enumerate() {
                @let y = 20.0 * i as f64 + 2.0;
                text x="0" y=(px(y + 12.0)) { (name) }
                rect class=(if *bad { "psi alert" } else { "psi" }) x=(px(LABEL_W)) y=(px(y + 2.0)) width=(px((v * k).max(1.0))) height="12" {
                    title { (format!("{name}: PSI {v:.3} over {n} leads")) }
                }
                text x=(px(LABEL_W + (v * k).max(1.0) + 6.0)) y=(px(y + 12.0)) { (format!("{v:.3} · n={n}")) }
            }
            line.threshold x1=(px(LABEL_W + alert * k)) x2=(px(LABEL_W + alert * k)) y1="0" y2=(px(h)) {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charts_place_marks_on_their_scale() {
        let svg = bands(&[BandRow {
            label: "ana".into(),
            low: 2.0,
            expected: 4.0,
            high: 6.0,
            actual: 5.0,
        }])
        .into_string();
        // max = 6 x 1.05 = 6.3; the band starts at 150 + 2 x 420 / 6.3.
        assert!(svg.contains("x=\"283.3\""), "{svg}");
        assert!(svg.contains("actual 5"));
        let f = funnel(&[
            ("assigned".into(), 10.0, None),
            ("won".into(), 4.0, Some(0.6)),
        ])
        .into_string();
        assert!(f.contains("(−60.0 %)"), "{f}");
        let p = psi(&[("age".into(), 0.3, 120, true)], 0.2).into_string();
        assert!(p.contains("psi alert") && p.contains("n=120"), "{p}");
    }
}
