//! Keys per role: who may call what, checked in front of every service.
//!
//! Clients send `authorization: Bearer <token>`. The keys file (`auth.keys_file`) holds, per
//! key, an id, a role and the hex SHA-256 of the token: the token itself is never stored. A
//! request's token is hashed and compared with every key in constant time. Roles:
//! `marketing` (LeadService), `crm` (RoutingService, reading reps), `ops` (ModelService,
//! RepService), `admin` (everything). Health, and reflection unless `auth.open_reflection` is
//! off, answer without a key. The file is re-read when it changes. The caller is put in the
//! request's extensions for the audit trail (`grpc/audit.rs`).
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use serde::Deserialize;
use sha2::{Digest, Sha256};
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

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyLine {
    id: String,
    role: Role,
    sha256: String,
}

/// A client certificate name (a DNS name in its subject alternative names) and its role:
/// with mutual TLS, a client without a bearer token gets the role of its certificate.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct ClientLine {
    name: String,
    role: Role,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyFile {
    #[serde(default)]
    key: Vec<KeyLine>,
    #[serde(default)]
    client: Vec<ClientLine>,
}

/// The keys in force.
#[derive(Debug, Clone, Default)]
pub struct Keys {
    keys: Vec<(String, Role, [u8; 32])>,
    /// Client certificate name -> role.
    clients: Vec<(String, Role)>,
}

impl Keys {
    /// Parses a keys file's text; errors name the key (by position and id), never a hash.
    pub fn parse(text: &str) -> Result<Keys, String> {
        let file: KeyFile = toml::from_str(text).map_err(|e| {
            format!(
                "auth.keys_file: not a [[key]] list (line {})",
                e.span().map_or(0, |s| text[..s.start].lines().count())
            )
        })?;
        let mut keys = Vec::with_capacity(file.key.len());
        for (i, k) in file.key.into_iter().enumerate() {
            let hash = decode_hex(k.sha256.trim()).ok_or_else(|| {
                format!(
                    "auth.keys_file: key {} ({:?}): sha256 must be 64 hex digits",
                    i + 1,
                    k.id
                )
            })?;
            if k.id.trim().is_empty() {
                return Err(format!("auth.keys_file: key {} has no id", i + 1));
            }
            if keys.iter().any(|(id, _, _)| *id == k.id) {
                return Err(format!("auth.keys_file: key id {:?} appears twice", k.id));
            }
            keys.push((k.id, k.role, hash));
        }
        let clients = file
            .client
            .into_iter()
            .map(|c| (c.name.to_ascii_lowercase(), c.role))
            .collect();
        Ok(Keys { keys, clients })
    }

    /// The role a client certificate's names map to (the first `[[client]]` that matches).
    pub fn find_client(&self, names: &[String]) -> Option<Caller> {
        self.clients.iter().find_map(|(n, role)| {
            names
                .iter()
                .any(|m| m.eq_ignore_ascii_case(n))
                .then(|| Caller {
                    key_id: format!("cert:{n}"),
                    role: *role,
                })
        })
    }

    /// The key a token belongs to. Every key is compared, each in constant time.
    pub fn find(&self, token: &str) -> Option<Caller> {
        let h: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let mut found = None;
        for (id, role, k) in &self.keys {
            let diff = k.iter().zip(&h).fold(0u8, |acc, (a, b)| acc | (a ^ b));
            if diff == 0 {
                found = Some(Caller {
                    key_id: id.clone(),
                    role: *role,
                });
            }
        }
        found
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

fn decode_hex(s: &str) -> Option<[u8; 32]> {
    if s.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
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
        _ => Some(&[Marketing, Crm, Ops, Admin]),
    }
}

/// Requests per second (sustained) and burst allowed per key, by role; 0 = unlimited.
#[derive(Debug, Clone, Copy, PartialEq, Default, Deserialize)]
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

/// Client certificate names per open connection (filled by the listener after a mutual-TLS
/// handshake, emptied when the connection closes).
#[derive(Debug, Default)]
pub struct Peers(std::sync::Mutex<std::collections::HashMap<SocketAddr, Vec<String>>>);

impl Peers {
    pub fn insert(&self, peer: SocketAddr, names: Vec<String>) {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(peer, names);
    }

    pub fn remove(&self, peer: &SocketAddr) {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(peer);
    }

    fn names(&self, peer: &SocketAddr) -> Option<Vec<String>> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(peer)
            .cloned()
    }
}

/// The DNS names in a certificate's subject alternative names.
pub fn certificate_names(der: &rustls::pki_types::CertificateDer<'_>) -> Vec<String> {
    webpki::EndEntityCert::try_from(der)
        .map(|c| c.valid_dns_names().map(str::to_string).collect())
        .unwrap_or_default()
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

/// Reads a keys file (a regular file, at most 1 MiB).
pub fn read_keys(path: &Path) -> Result<Keys, String> {
    let bytes = crate::model_dir::read_regular(path, 1 << 20)
        .map_err(|_| format!("auth.keys_file {}: cannot read it", path.display()))?;
    Keys::parse(&String::from_utf8_lossy(&bytes))
}

/// Re-reads the keys file whenever its modification time changes; a bad file keeps the keys
/// in force (and says so).
pub async fn watch_keys(gate: Arc<Gate>, path: PathBuf, every: Duration) {
    let mtime = |p: &Path| -> Option<SystemTime> { std::fs::metadata(p).ok()?.modified().ok() };
    let mut seen = mtime(&path);
    loop {
        tokio::time::sleep(every).await;
        if Arc::strong_count(&gate) == 1 {
            return;
        }
        let now = mtime(&path);
        if now == seen {
            continue;
        }
        seen = now;
        match read_keys(&path) {
            Ok(k) => {
                tracing::info!(keys = k.len(), "auth keys reloaded");
                gate.replace(k);
            }
            Err(e) => tracing::error!(error = %e, "auth keys file refused; the old keys stay"),
        }
    }
}

/// The tower layer that applies the gate to every request.
#[derive(Clone)]
pub struct AuthLayer {
    pub gate: Arc<Gate>,
}

impl<S> tower::Layer<S> for AuthLayer {
    type Service = AuthService<S>;

    fn layer(&self, inner: S) -> AuthService<S> {
        AuthService {
            inner,
            gate: self.gate.clone(),
        }
    }
}

#[derive(Clone)]
pub struct AuthService<S> {
    inner: S,
    gate: Arc<Gate>,
}

impl<S, B> tower::Service<http::Request<B>> for AuthService<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<tonic::body::Body>>,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = S::Error;
    type Future =
        futures::future::Either<S::Future, std::future::Ready<Result<Self::Response, Self::Error>>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: http::Request<B>) -> Self::Future {
        let peer = req
            .extensions()
            .get::<tonic::transport::server::TcpConnectInfo>()
            .and_then(|c| c.remote_addr());
        match self.gate.check(req.uri().path(), req.headers(), peer) {
            Ok(caller) => {
                if let Some(c) = caller {
                    req.extensions_mut().insert(c);
                }
                futures::future::Either::Left(self.inner.call(req))
            }
            Err(status) => {
                futures::future::Either::Right(std::future::ready(Ok(status.into_http())))
            }
        }
    }
}

/// A new random token and its keys-file line (`leadrouter keys new`).
pub fn new_key(id: &str, role: Role) -> Result<(String, String), String> {
    let mut raw = [0u8; 32];
    use std::io::Read;
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut raw))
        .map_err(|e| format!("cannot read /dev/urandom: {e}"))?;
    let hex: String = raw.iter().map(|b| format!("{b:02x}")).collect();
    let token = format!("lr_{hex}");
    let hash: String = Sha256::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let line = format!(
        "[[key]]\nid = {id:?}\nrole = \"{}\"\nsha256 = \"{hash}\"\n",
        role.as_str()
    );
    Ok((token, line))
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

    #[test]
    fn key_files_are_checked_without_echoing_hashes() {
        assert!(
            Keys::parse("[[key]]\nid = \"a\"\nrole = \"crm\"\nsha256 = \"xyz\"\n")
                .unwrap_err()
                .contains("64 hex digits")
        );
        let h = "ab".repeat(32);
        let twice = format!(
            "[[key]]\nid = \"a\"\nrole = \"crm\"\nsha256 = \"{h}\"\n[[key]]\nid = \"a\"\nrole = \"ops\"\nsha256 = \"{h}\"\n"
        );
        let e = Keys::parse(&twice).unwrap_err();
        assert!(e.contains("twice") && !e.contains(&h), "{e}");
        assert!(Keys::parse("[[key]]\nid = \"a\"\nrole = \"root\"\nsha256 = \"x\"\n").is_err());
        assert!(Keys::parse("").unwrap().is_empty());
    }
}
