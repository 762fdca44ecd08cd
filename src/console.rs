//! The web console on the admin listener (`/ui`): boards for sales managers (team, queue,
//! forecast against actual, funnel) and ops (model, calibration, drift, gate verdicts, a
//! lead's decision record), server-rendered HTML with SVG charts, kept live by server-sent
//! assignment events. Read-only; it shows what the API returns and asks for the API's keys.
use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use maud::Markup;

use crate::auth::Gate;
use crate::engine::Engine;

pub mod access;
mod charts;
mod forecast;
mod layout;
mod lead;
mod live;
mod model;
mod queue;
mod team;

/// What the console reads: the engine, the API's keys, its sessions.
pub struct Console {
    pub engine: Arc<Engine>,
    pub gate: Arc<Gate>,
    pub sessions: access::Sessions,
    /// The admin listener is on loopback: without keys the console may serve.
    pub loopback: bool,
}

impl Console {
    pub fn new(engine: Arc<Engine>, gate: Arc<Gate>, loopback: bool) -> Arc<Console> {
        Arc::new(Console {
            engine,
            gate,
            sessions: access::Sessions::default(),
            loopback,
        })
    }
}

type Params = Query<HashMap<String, String>>;

/// The console's routes (merged into the admin listener's router).
pub fn router(c: Arc<Console>) -> axum::Router {
    let pages = axum::Router::new()
        .route("/ui", get(team_page))
        .route("/ui/", get(team_page))
        .route("/ui/queue", get(queue_page))
        .route("/ui/forecast", get(forecast_page))
        .route("/ui/model", get(model_page))
        .route("/ui/lead", get(lead_page))
        .route("/ui/events", get(live::events))
        .route_layer(axum::middleware::from_fn_with_state(
            c.clone(),
            access::require,
        ));
    axum::Router::new()
        .merge(pages)
        .route("/ui/login", get(login_form).post(login))
        .route("/ui/logout", get(logout))
        .route("/ui/static/console.css", get(css))
        .route("/ui/static/console.js", get(js))
        .with_state(c)
}

/// A page, or only its board when the live script asks (`x-console-part: board`).
fn respond(headers: &HeaderMap, path: &str, title: &str, parts: (Markup, Markup)) -> Response {
    let (controls, board) = parts;
    let body = if headers.get("x-console-part").is_some() {
        board.into_string()
    } else {
        layout::page(path, title, controls, board).into_string()
    };
    (
        [
            (header::CACHE_CONTROL, "no-store"),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; frame-ancestors 'none'",
            ),
        ],
        Html(body),
    )
        .into_response()
}

async fn team_page(State(c): State<Arc<Console>>, h: HeaderMap, Query(q): Params) -> Response {
    respond(&h, "/ui", "Team", team::build(&c, &q).await)
}

async fn queue_page(State(c): State<Arc<Console>>, h: HeaderMap, Query(q): Params) -> Response {
    respond(&h, "/ui/queue", "Queue", queue::build(&c, &q).await)
}

async fn forecast_page(State(c): State<Arc<Console>>, h: HeaderMap, Query(q): Params) -> Response {
    respond(
        &h,
        "/ui/forecast",
        "Forecast",
        forecast::build(&c, &q).await,
    )
}

async fn model_page(State(c): State<Arc<Console>>, h: HeaderMap) -> Response {
    respond(&h, "/ui/model", "Model", model::build(&c).await)
}

async fn lead_page(State(c): State<Arc<Console>>, h: HeaderMap, Query(q): Params) -> Response {
    respond(&h, "/ui/lead", "Lead lookup", lead::build(&c, &q).await)
}

/// Only a path inside the console: the login never redirects elsewhere.
fn safe_next(next: Option<&String>) -> String {
    match next {
        Some(n) if n.starts_with("/ui") && !n.contains("//") && !n.contains('\\') => n.clone(),
        _ => "/ui".into(),
    }
}

async fn login_form(Query(q): Params) -> Html<String> {
    Html(layout::login(&safe_next(q.get("next")), None).into_string())
}

async fn login(
    State(c): State<Arc<Console>>,
    axum::Form(form): axum::Form<HashMap<String, String>>,
) -> Response {
    let next = safe_next(form.get("next"));
    let token = form.get("token").map(|t| t.trim()).unwrap_or_default();
    let why = match c.check_token(token) {
        access::Verdict::Caller(_) => match c.sessions.open(token) {
            Some(id) => return access::redirect_with_cookie(&next, &id),
            None => "no random source for a session",
        },
        access::Verdict::Refused(_, why) => why,
    };
    let page = layout::login(&next, Some(why)).into_string();
    (StatusCode::UNAUTHORIZED, Html(page)).into_response()
}

async fn logout(State(c): State<Arc<Console>>, h: HeaderMap) -> Response {
    if let Some(id) = access::session_id(&h) {
        c.sessions.close(id);
    }
    access::redirect_with_cookie("/ui/login", "")
}

async fn css() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        include_str!("console/static/console.css"),
    )
}

async fn js() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        include_str!("console/static/console.js"),
    )
}
