//! Keys per role: who may call what, checked in front of every service.
//!
//! Clients send `authorization: Bearer <token>`. The keys file (`auth.keys_file`) holds, per
//! key, an id, a role and the hex SHA-256 of the token: the token itself is never stored. A
//! request's token is hashed and compared with every key in constant time. Roles:
//! `marketing` (LeadService), `crm` (RoutingService, reading reps and reports), `ops`
//! (ModelService, RepService, ReportService), `admin` (everything). Health, and reflection
//! unless `auth.open_reflection` is off, answer without a key. The file is re-read when it changes. The caller is put in the
//! request's extensions for the audit trail (`grpc/audit.rs`).
mod keys;
mod layer;
mod peers;

pub use keys::{Keys, new_key, read_keys, watch_keys};
pub use layer::{AuthLayer, AuthService};
pub use peers::{Peers, certificate_names};
use std::net::SocketAddr;
use std::sync::Arc;

use arc_swap::ArcSwap;
use serde::Deserialize;
use tonic::Status;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Marketing,
    Crm,
    Ops,
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Marketing => "marketing",
            Role::Crm => "crm",
            Role::Ops => "ops",
            Role::Admin => "admin",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        [Role::Marketing, Role::Crm, Role::Ops, Role::Admin]
            .into_iter()
            .find(|r| r.as_str() == s)
    }
}

/// Who made a request (in the request's extensions once authenticated).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub key_id: String,
    pub role: Role,
}

/// What a gRPC method needs: nothing (health, reflection when open), or one of some roles.
fn needs(path: &str, open_reflection: bool) -> Option<&'static [Role]> {
    use Role::*;
    let (service, method) = path
        .trim_start_matches('/')
        .split_once('/')
        .unwrap_or((path, ""));
    match service {
        "grpc.health.v1.Health" => None,
        s if s.starts_with("grpc.reflection.") && open_reflection => None,
        "leadrouter.v1.LeadService" => Some(&[Marketing, Admin]),
        "leadrouter.v1.RoutingService" => Some(&[Crm, Admin]),
        "leadrouter.v1.RepService" if matches!(method, "GetRep" | "ListReps") => {
            Some(&[Crm, Ops, Admin])
        }
        "leadrouter.v1.RepService" | "leadrouter.v1.ModelService" => Some(&[Ops, Admin]),
        "leadrouter.v1.ReportService" if method.starts_with("Get") => Some(&[Crm, Ops, Admin]),
        "leadrouter.v1.ReportService" => Some(&[Ops, Admin]),
        _ => Some(&[Marketing, Crm, Ops, Admin]),
    }
}

/// Requests per second (sustained) and burst allowed per key, by role; 0 = unlimited.
#[derive(Debug, Clone, Copy, PartialEq, Default, Deserialize, serde::Serialize)]
pub struct RoleRates {
    pub marketing: f64,
    pub crm: f64,
    pub ops: f64,
    pub admin: f64,
}

impl RoleRates {
    fn of(&self, r: Role) -> f64 {
        match r {
            Role::Marketing => self.marketing,
            Role::Crm => self.crm,
            Role::Ops => self.ops,
            Role::Admin => self.admin,
        }
    }
}

/// A token bucket: `rate` per second, holding at most `burst`.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: std::time::Instant,
}

/// The keys in force (None: open, loopback only), the reflection policy and the per-key
/// request rates.
pub struct Gate {
    keys: ArcSwap<Option<Keys>>,
    open_reflection: bool,
    rates: RoleRates,
    /// Burst = rate x this many seconds.
    burst_s: f64,
    buckets: std::sync::Mutex<std::collections::HashMap<String, Bucket>>,
    /// Names of the client certificates of open TLS connections, by peer address.
    pub peers: Arc<Peers>,
}

impl Gate {
    pub fn new(keys: Option<Keys>, open_reflection: bool) -> Arc<Gate> {
        Gate::with_rates(keys, open_reflection, RoleRates::default(), 1.0)
    }

    pub fn with_rates(
        keys: Option<Keys>,
        open_reflection: bool,
        rates: RoleRates,
        burst_s: f64,
    ) -> Arc<Gate> {
        Arc::new(Gate {
            keys: ArcSwap::from_pointee(keys),
            open_reflection,
            rates,
            burst_s: burst_s.max(0.001),
            buckets: Default::default(),
            peers: Arc::default(),
        })
    }

    /// Takes one request from the caller's bucket; false when it is empty.
    fn admit(&self, c: &Caller) -> bool {
        let rate = self.rates.of(c.role);
        if rate <= 0.0 {
            return true;
        }
        let burst = (rate * self.burst_s).max(1.0);
        let now = std::time::Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        let b = buckets.entry(c.key_id.clone()).or_insert(Bucket {
            tokens: burst,
            at: now,
        });
        b.tokens = (b.tokens + now.duration_since(b.at).as_secs_f64() * rate).min(burst);
        b.at = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    pub fn is_open(&self) -> bool {
        self.keys.load().is_none()
    }

    /// The caller a bearer token names; None when keys are off or no key matches. (The web
    /// console checks its keys here, the same keys as the API.)
    pub fn caller(&self, token: &str) -> Option<Caller> {
        self.keys
            .load()
            .as_ref()
            .as_ref()
            .and_then(|k| k.find(token))
    }

    pub fn replace(&self, keys: Keys) {
        self.keys.store(Arc::new(Some(keys)));
    }

    /// Who may make this call; Err with the status to answer.
    pub fn check(
        &self,
        path: &str,
        headers: &http::HeaderMap,
        peer: Option<SocketAddr>,
    ) -> Result<Option<Caller>, Status> {
        let keys = self.keys.load();
        let Some(keys) = keys.as_ref() else {
            return Ok(None);
        };
        let Some(roles) = needs(path, self.open_reflection) else {
            return Ok(None);
        };
        let token = headers
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty());
        let caller = match token {
            Some(t) => keys
                .find(t)
                .ok_or_else(|| Status::unauthenticated("unknown API key"))?,
            None => peer
                .and_then(|p| self.peers.names(&p))
                .and_then(|names| keys.find_client(&names))
                .ok_or_else(|| {
                    Status::unauthenticated("send an API key: authorization: Bearer <token>")
                })?,
        };
        if !roles.contains(&caller.role) {
            let want: Vec<&str> = roles.iter().map(|r| r.as_str()).collect();
            return Err(Status::permission_denied(format!(
                "{path} needs role {} (this key is {})",
                want.join(" or "),
                caller.role.as_str()
            )));
        }
        if !self.admit(&caller) {
            return Err(Status::resource_exhausted(format!(
                "key {:?} is over its request rate (auth.rate_per_s.{}); retry later",
                caller.key_id,
                caller.role.as_str()
            )));
        }
        Ok(Some(caller))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(token: Option<&str>) -> http::HeaderMap {
        let mut h = http::HeaderMap::new();
        if let Some(t) = token {
            h.insert(
                http::header::AUTHORIZATION,
                format!("Bearer {t}").parse().unwrap(),
            );
        }
        h
    }

    #[test]
    fn roles_open_only_their_services() {
        let (crm_token, crm_line) = new_key("crm-1", Role::Crm).unwrap();
        let (mk_token, mk_line) = new_key("mk-1", Role::Marketing).unwrap();
        let keys = Keys::parse(&format!("{crm_line}\n{mk_line}")).unwrap();
        assert_eq!(keys.len(), 2);
        let gate = Gate::new(Some(keys), true);
        let call = |path: &str, t: Option<&str>| gate.check(path, &headers(t), None);
        assert!(
            call("/grpc.health.v1.Health/Check", None)
                .unwrap()
                .is_none()
        );
        assert!(
            call(
                "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
                None
            )
            .is_ok()
        );
        let e = call("/leadrouter.v1.LeadService/SubmitLead", None).unwrap_err();
        assert_eq!(e.code(), tonic::Code::Unauthenticated);
        let e = call("/leadrouter.v1.LeadService/SubmitLead", Some("lr_nope")).unwrap_err();
        assert_eq!(e.code(), tonic::Code::Unauthenticated);
        let ok = call("/leadrouter.v1.LeadService/SubmitLead", Some(&mk_token)).unwrap();
        assert_eq!(ok.unwrap().key_id, "mk-1");
        for path in [
            "/leadrouter.v1.ModelService/ReloadModel",
            "/leadrouter.v1.RepService/UpsertRep",
            "/leadrouter.v1.RoutingService/CloseAssignment",
        ] {
            let e = call(path, Some(&mk_token)).unwrap_err();
            assert_eq!(e.code(), tonic::Code::PermissionDenied, "{path}");
            assert!(!e.message().contains("crm-1"), "no other key named: {e:?}");
        }
        let e = call("/leadrouter.v1.ModelService/ReloadModel", Some(&mk_token)).unwrap_err();
        assert!(e.message().contains("needs role ops or admin"), "{e:?}");
        assert!(call("/leadrouter.v1.RepService/ListReps", Some(&crm_token)).is_ok());
        assert!(call("/leadrouter.v1.RepService/DeleteRep", Some(&crm_token)).is_err());
        // Sales managers read reports with a crm key; targets and imports need ops.
        assert!(
            call(
                "/leadrouter.v1.ReportService/GetPerformance",
                Some(&crm_token)
            )
            .is_ok()
        );
        for path in [
            "/leadrouter.v1.ReportService/SetTarget",
            "/leadrouter.v1.ReportService/ImportHistory",
        ] {
            let e = call(path, Some(&crm_token)).unwrap_err();
            assert_eq!(e.code(), tonic::Code::PermissionDenied, "{path}");
        }
        let e = call("/leadrouter.v1.ReportService/GetFunnel", Some(&mk_token)).unwrap_err();
        assert_eq!(e.code(), tonic::Code::PermissionDenied);
        let closed = Gate::new(Some(Keys::default()), false);
        let e = closed
            .check(
                "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
                &headers(None),
                None,
            )
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::Unauthenticated);
    }

    #[test]
    fn each_key_has_its_own_bucket() {
        let (a, la) = new_key("a", Role::Crm).unwrap();
        let (b, lb) = new_key("b", Role::Crm).unwrap();
        let rates = RoleRates {
            crm: 10.0,
            ..RoleRates::default()
        };
        let gate = Gate::with_rates(
            Some(Keys::parse(&format!("{la}{lb}")).unwrap()),
            true,
            rates,
            1.0,
        );
        let path = "/leadrouter.v1.RoutingService/GetAssignment";
        let ok = (0..30)
            .filter(|_| gate.check(path, &headers(Some(&a)), None).is_ok())
            .count();
        assert!((10..=11).contains(&ok), "burst of 10, got {ok}");
        let e = gate.check(path, &headers(Some(&a)), None).unwrap_err();
        assert_eq!(e.code(), tonic::Code::ResourceExhausted);
        assert!(e.message().contains("auth.rate_per_s.crm"), "{e:?}");
        // Another key is not slowed by the first.
        assert!(gate.check(path, &headers(Some(&b)), None).is_ok());
        std::thread::sleep(std::time::Duration::from_millis(250));
        assert!(
            gate.check(path, &headers(Some(&a)), None).is_ok(),
            "refills at 10/s"
        );
    }
}
