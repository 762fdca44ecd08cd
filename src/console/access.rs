//! Who may see the console: the API's keys (crm, ops or admin) as a bearer token, or a session
//! cookie set by the login form or a first visit with `?token=`. Without keys configured the
//! console serves only on a loopback admin listener, as the gRPC server does.
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};

use super::Console;
use crate::auth::{Caller, Role};

/// The session cookie's name.
pub const COOKIE: &str = "lr_console";
/// How long a session lasts without a new login.
const SESSION_TTL: Duration = Duration::from_secs(12 * 3600);
/// Sessions held at most; past it the oldest go first.
const MAX_SESSIONS: usize = 10_000;

struct Session {
    /// The key's token: every request checks it again, so a key removed from the keys file
    /// ends its sessions at the next reload.
    token: String,
    until: Instant,
}

/// Logged-in browsers, by a random session id (never the token itself in the cookie).
#[derive(Default)]
pub struct Sessions {
    map: Mutex<HashMap<String, Session>>,
}

impl Sessions {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Session>> {
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A new session for `token`; None only when the system's random source fails.
    pub fn open(&self, token: &str) -> Option<String> {
        let mut bytes = [0u8; 24];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes).ok()?;
        let id: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        let now = Instant::now();
        let mut map = self.lock();
        map.retain(|_, s| s.until > now);
        if map.len() >= MAX_SESSIONS {
            let oldest = map
                .iter()
                .min_by_key(|(_, s)| s.until)
                .map(|(k, _)| k.clone());
            if let Some(k) = oldest {
                map.remove(&k);
            }
        }
        map.insert(
            id.clone(),
            Session {
                token: token.to_string(),
                until: now + SESSION_TTL,
            },
        );
        Some(id)
    }

    fn token(&self, id: &str) -> Option<String> {
        let map = self.lock();
        map.get(id)
            .filter(|s| s.until > Instant::now())
            .map(|s| s.token.clone())
    }

    pub fn close(&self, id: &str) {
        self.lock().remove(id);
    }
}

/// A redirect to `to` setting (or, with an empty id, clearing) the session cookie.
pub fn redirect_with_cookie(to: &str, id: &str) -> Response {
    let mut r = Redirect::to(to).into_response();
    if let Ok(v) = header::HeaderValue::from_str(&cookie(id)) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r
}

/// The `Set-Cookie` value for a session (or, with an empty id, one that clears it).
fn cookie(id: &str) -> String {
    let age = if id.is_empty() {
        0
    } else {
        SESSION_TTL.as_secs()
    };
    format!("{COOKIE}={id}; Path=/ui; HttpOnly; SameSite=Strict; Max-Age={age}")
}

/// The session id in a request's cookies.
pub fn session_id(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v)
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty())
}

/// `?token=` in a query string, and the query without it.
fn query_token(query: &str) -> Option<(String, String)> {
    let mut token = None;
    let mut rest = Vec::new();
    let pairs = serde_urlencoded::from_str::<Vec<(String, String)>>(query).unwrap_or_default();
    for (k, v) in pairs {
        if k == "token" {
            token = Some(v);
        } else {
            rest.push((k, v));
        }
    }
    let rest = serde_urlencoded::to_string(&rest).unwrap_or_default();
    token.filter(|t| !t.is_empty()).map(|t| (t, rest))
}

/// Whether a key of this role may see the console: it shows routing (crm) and operations
/// (ops) data; marketing keys only push leads.
pub fn allowed(role: Role) -> bool {
    matches!(role, Role::Crm | Role::Ops | Role::Admin)
}

pub enum Verdict {
    Caller(Option<Caller>),
    Refused(StatusCode, &'static str),
}

impl Console {
    /// Checks a token: the caller, or why not.
    pub fn check_token(&self, token: &str) -> Verdict {
        match self.gate.caller(token) {
            Some(c) if allowed(c.role) => Verdict::Caller(Some(c)),
            Some(_) => Verdict::Refused(
                StatusCode::FORBIDDEN,
                "this key's role may not see the console (it needs crm, ops or admin)",
            ),
            None => Verdict::Refused(StatusCode::UNAUTHORIZED, "unknown key"),
        }
    }
}

fn wants_html(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("text/html"))
}

fn refuse(headers: &HeaderMap, path: &str, status: StatusCode, why: &str) -> Response {
    if status == StatusCode::UNAUTHORIZED && wants_html(headers) {
        let next = serde_urlencoded::to_string([("next", path)]).unwrap_or_default();
        return Redirect::to(&format!("/ui/login?{next}")).into_response();
    }
    let mut r = (status, format!("{why}\n")).into_response();
    if status == StatusCode::UNAUTHORIZED {
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Bearer realm=\"leadrouter console\""),
        );
    }
    r
}

/// The console's gate, in front of every page but the login and the static files.
pub async fn require(
    State(c): State<std::sync::Arc<Console>>,
    req: Request,
    next: Next,
) -> Response {
    let headers = req.headers().clone();
    let path = req.uri().path().to_string();
    if c.gate.is_open() {
        if c.loopback {
            return next.run(req).await;
        }
        return refuse(
            &headers,
            &path,
            StatusCode::FORBIDDEN,
            "the console needs keys (auth.keys_file) when the admin listener is not on loopback",
        );
    }
    // A first visit with ?token=: a session, then the same page without the token in its URL.
    if let Some((token, rest)) = req.uri().query().and_then(query_token) {
        return match c.check_token(&token) {
            Verdict::Caller(_) => match c.sessions.open(&token) {
                Some(id) => {
                    let to = if rest.is_empty() {
                        path
                    } else {
                        format!("{path}?{rest}")
                    };
                    let mut r = Redirect::to(&to).into_response();
                    if let Ok(v) = header::HeaderValue::from_str(&cookie(&id)) {
                        r.headers_mut().insert(header::SET_COOKIE, v);
                    }
                    r
                }
                None => (StatusCode::INTERNAL_SERVER_ERROR, "no random source\n").into_response(),
            },
            Verdict::Refused(s, why) => refuse(&headers, &path, s, why),
        };
    }
    let token = bearer(&headers)
        .map(str::to_string)
        .or_else(|| session_id(&headers).and_then(|id| c.sessions.token(id)));
    match token {
        None => refuse(
            &headers,
            &path,
            StatusCode::UNAUTHORIZED,
            "send a key: authorization: Bearer <token>",
        ),
        Some(t) => match c.check_token(&t) {
            Verdict::Caller(_) => next.run(req).await,
            Verdict::Refused(s, why) => refuse(&headers, &path, s, why),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_leaves_the_query_and_the_cookie_is_found() {
        let (t, rest) = query_token("token=abc&period=week").unwrap();
        assert_eq!((t.as_str(), rest.as_str()), ("abc", "period=week"));
        assert!(query_token("period=week").is_none());
        let mut h = HeaderMap::new();
        h.insert(header::COOKIE, "a=1; lr_console=xyz; b=2".parse().unwrap());
        assert_eq!(session_id(&h), Some("xyz"));
    }

    #[test]
    fn sessions_hold_their_token() {
        let s = Sessions::default();
        let id = s.open("tok").unwrap();
        assert_eq!(id.len(), 48);
        assert_eq!(s.token(&id).as_deref(), Some("tok"));
        s.close(&id);
        assert_eq!(s.token(&id), None);
    }
}
