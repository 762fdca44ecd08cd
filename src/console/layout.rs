//! The page shell every console page shares (navigation, stylesheet, live script) and small
//! formatting helpers. maud escapes every interpolated value, so lead ids, rep names and
//! attribute values from the network cannot inject markup.
use maud::{DOCTYPE, Markup, html};

/// The pages, in navigation order: (path, title).
pub const PAGES: [(&str, &str); 5] = [
    ("/ui", "Team"),
    ("/ui/queue", "Queue"),
    ("/ui/forecast", "Forecast"),
    ("/ui/model", "Model"),
    ("/ui/lead", "Lead lookup"),
];

/// A whole page: `board` is the part the live script reloads (`id="board"`).
pub fn page(path: &str, title: &str, controls: Markup, board: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · leadrouter" }
                link rel="icon" href="data:,";
                link rel="stylesheet" href="/ui/static/console.css";
                script src="/ui/static/console.js" defer {}
            }
            body data-live="off" {
                header {
                    span.brand { "leadrouter" }
                    nav {
                        @for (href, name) in PAGES {
                            a href=(href) class=[(href == path).then_some("here")] { (name) }
                        }
                    }
                    span #live-state title="live updates from the assignment events" { "connecting" }
                    a.logout href="/ui/logout" { "log out" }
                }
                main {
                    h1 { (title) }
                    (controls)
                    section #board { (board) }
                    section #events-box {
                        h2 { "Live assignment events" }
                        ol #events {}
                    }
                }
            }
        }
    }
}

/// The login form (a browser's first visit).
pub fn login(next: &str, error: Option<&str>) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                title { "Log in · leadrouter" }
                link rel="icon" href="data:,";
                link rel="stylesheet" href="/ui/static/console.css";
            }
            body.login {
                form method="post" action="/ui/login" {
                    h1 { "leadrouter console" }
                    p { "Paste an API key of role crm, ops or admin." }
                    @if let Some(e) = error { p.error role="alert" { (e) } }
                    input type="hidden" name="next" value=(next);
                    input type="password" name="token" placeholder="API key" autocomplete="off" required autofocus;
                    button type="submit" { "Log in" }
                }
            }
        }
    }
}

/// A number with `d` decimals, or "–" when there is none.
pub fn num(v: Option<f64>, d: usize) -> String {
    match v {
        Some(v) if v.is_finite() => format!("{v:.d$}"),
        _ => "–".into(),
    }
}

/// Milliseconds since the epoch as "2026-12-02 14:05:09 UTC".
pub fn when(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms)
        .map(|t| t.strftime("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_else(|_| ms.to_string())
}

/// A duration in seconds as "3 h 05 min", "4 min 10 s" or "12 s".
pub fn ago(seconds: i64) -> String {
    let s = seconds.max(0);
    match s {
        s if s >= 86_400 => format!("{} d {} h", s / 86_400, s % 86_400 / 3600),
        s if s >= 3600 => format!("{} h {:02} min", s / 3600, s % 3600 / 60),
        s if s >= 60 => format!("{} min {:02} s", s / 60, s % 60),
        s => format!("{s} s"),
    }
}

/// A value for a query string.
pub fn urlencode(s: &str) -> String {
    serde_urlencoded::to_string([("", s)])
        .map(|v| v.trim_start_matches('=').to_string())
        .unwrap_or_default()
}

/// The first day of the period `n` periods before the one holding `day`.
pub fn start_back(period: crate::domain::report::Period, day: i32, n: usize) -> i32 {
    (0..n).fold(period.bounds(day).0, |first, _| period.bounds(first - 1).0)
}

/// A message in place of a board whose data could not be read.
pub fn failed(what: &str, e: &crate::error::Error) -> Markup {
    html! { p.error role="alert" { "Cannot read " (what) ": " (e.to_string()) } }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_from_the_network_are_escaped() {
        let m = login("/ui\"><script>alert(1)</script>", Some("<b>"));
        let s = m.into_string();
        assert!(!s.contains("<script>alert"), "{s}");
        assert!(s.contains("&lt;b&gt;"));
    }

    #[test]
    fn durations_read_as_words() {
        assert_eq!(ago(12), "12 s");
        assert_eq!(ago(250), "4 min 10 s");
        assert_eq!(ago(3 * 3600 + 300), "3 h 05 min");
        assert_eq!(num(None, 2), "–");
        assert_eq!(num(Some(0.5), 2), "0.50");
    }
}
