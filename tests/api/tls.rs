//! TLS on the gRPC port, with certificates made here (rcgen): a TLS client is served and a
//! plaintext one is not; a new certificate is picked up without dropping open connections;
//! with a client CA, only clients with a certificate it signed get in.
use std::path::Path;
use std::time::Duration;

use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

use crate::helpers::*;

pub(crate) struct Ca {
    cert: rcgen::Certificate,
    key: KeyPair,
}

impl Ca {
    pub(crate) fn new() -> Ca {
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        Ca {
            cert: p.self_signed(&key).unwrap(),
            key,
        }
    }

    /// A leaf for `name`: (certificate PEM, key PEM).
    pub(crate) fn issue(&self, name: &str) -> (String, String) {
        let key = KeyPair::generate().unwrap();
        let cert = CertificateParams::new(vec![name.to_string()])
            .unwrap()
            .signed_by(&key, &self.cert, &self.key)
            .unwrap();
        (cert.pem(), key.serialize_pem())
    }

    /// A leaf whose only name is its subject's common name (no SAN).
    fn issue_cn(&self, cn: &str) -> (String, String) {
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name = rcgen::DistinguishedName::new();
        p.distinguished_name
            .push(rcgen::DnType::OrganizationName, "Acme");
        p.distinguished_name.push(rcgen::DnType::CommonName, cn);
        let cert = p.signed_by(&key, &self.cert, &self.key).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    pub(crate) fn pem(&self) -> String {
        self.cert.pem()
    }
}

fn write_pair(dir: &Path, (cert, key): &(String, String)) {
    std::fs::write(dir.join("cert.pem"), cert).unwrap();
    std::fs::write(dir.join("key.pem"), key).unwrap();
}

async fn tls_channel(
    port: u16,
    ca: &str,
    identity: Option<&(String, String)>,
) -> Result<Channel, String> {
    let mut cfg = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(ca))
        .domain_name("localhost");
    if let Some((c, k)) = identity {
        cfg = cfg.identity(Identity::from_pem(c, k));
    }
    Endpoint::from_shared(format!("https://127.0.0.1:{port}"))
        .unwrap()
        .tls_config(cfg)
        .map_err(|e| e.to_string())?
        .connect_timeout(Duration::from_secs(3))
        .connect()
        .await
        .map_err(|e| format!("{e:?}"))
}

async fn healthy(ch: Channel) -> bool {
    HealthClient::new(ch)
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .is_ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_serves_tls_clients_and_reloads_its_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let (ca1, ca2) = (Ca::new(), Ca::new());
    write_pair(dir.path(), &ca1.issue("localhost"));
    let mut s = test_settings();
    s.server.tls_cert = dir.path().join("cert.pem").display().to_string();
    s.server.tls_key = dir.path().join("key.pem").display().to_string();
    let app = spawn_with_tls(s).await;
    let port = app.port();

    let old = tls_channel(port, &ca1.pem(), None).await.unwrap();
    assert!(healthy(old.clone()).await);
    // Plaintext to the TLS port gets nowhere.
    let plain = Endpoint::from_shared(format!("http://127.0.0.1:{port}"))
        .unwrap()
        .connect_timeout(Duration::from_secs(3))
        .timeout(Duration::from_secs(3))
        .connect()
        .await;
    if let Ok(ch) = plain {
        assert!(!healthy(ch).await, "plaintext was served on the TLS port");
    }
    // A client that trusts only CA 2 is refused until the server's certificate is CA 2's.
    assert!(tls_channel(port, &ca2.pem(), None).await.is_err());
    std::thread::sleep(Duration::from_millis(1100)); // a new mtime second on coarse clocks
    write_pair(dir.path(), &ca2.issue("localhost"));
    let started = std::time::Instant::now();
    loop {
        if let Ok(ch) = tls_channel(port, &ca2.pem(), None).await
            && healthy(ch).await
        {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "certificate not reloaded"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The connection opened before the reload is still served.
    assert!(healthy(old).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_client_ca_only_its_clients_get_in() {
    let dir = tempfile::tempdir().unwrap();
    let (server_ca, client_ca, stranger) = (Ca::new(), Ca::new(), Ca::new());
    write_pair(dir.path(), &server_ca.issue("localhost"));
    std::fs::write(dir.path().join("clients.pem"), client_ca.pem()).unwrap();
    let mut s = test_settings();
    s.server.tls_cert = dir.path().join("cert.pem").display().to_string();
    s.server.tls_key = dir.path().join("key.pem").display().to_string();
    s.server.tls_client_ca = dir.path().join("clients.pem").display().to_string();
    let app = spawn_with_tls(s).await;
    let port = app.port();
    let ours = client_ca.issue("crm.internal");
    let theirs = stranger.issue("crm.internal");
    let ok = tls_channel(port, &server_ca.pem(), Some(&ours))
        .await
        .unwrap();
    assert!(healthy(ok).await);
    for who in [None, Some(&theirs)] {
        let refused = match tls_channel(port, &server_ca.pem(), who).await {
            Err(_) => true,
            Ok(ch) => !healthy(ch).await,
        };
        assert!(refused, "a client without our certificate got in");
    }
}

#[tokio::test]
async fn half_a_tls_configuration_is_refused_at_start() {
    let mut s = test_settings();
    s.server.tls_cert = "/nonexistent/cert.pem".into();
    let e = leadrouter::app::App::build(s)
        .await
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("tls_key"), "{e}");
}

/// With mutual TLS, a `[[client]]` line in the keys file gives a client certificate's name a
/// role: such a client needs no bearer token, and gets only its role's services.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_certificate_name_maps_to_a_role() {
    use leadrouter::grpc::pb;
    let dir = tempfile::tempdir().unwrap();
    let (server_ca, client_ca) = (Ca::new(), Ca::new());
    write_pair(dir.path(), &server_ca.issue("localhost"));
    std::fs::write(dir.path().join("clients.pem"), client_ca.pem()).unwrap();
    let keys = dir.path().join("keys.toml");
    std::fs::write(
        &keys,
        "[[client]]\nname = \"crm.internal\"\nrole = \"crm\"\n\
         [[client]]\nname = \"crm-robot\"\nrole = \"crm\"\n",
    )
    .unwrap();
    let mut s = test_settings();
    s.server.tls_cert = dir.path().join("cert.pem").display().to_string();
    s.server.tls_key = dir.path().join("key.pem").display().to_string();
    s.server.tls_client_ca = dir.path().join("clients.pem").display().to_string();
    s.auth.keys_file = keys.display().to_string();
    let app = spawn_with_tls(s).await;
    let port = app.port();
    let crm = tls_channel(
        port,
        &server_ca.pem(),
        Some(&client_ca.issue("crm.internal")),
    )
    .await
    .unwrap();
    // The crm role reaches RoutingService (NOT_FOUND: the key check let it through) ...
    let e = pb::routing_service_client::RoutingServiceClient::new(crm.clone())
        .get_assignment(pb::GetAssignmentRequest {
            lead_id: "nope".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::NotFound, "{e:?}");
    // ... but not LeadService.
    let e = pb::lead_service_client::LeadServiceClient::new(crm)
        .score_lead(pb::ScoreLeadRequest {
            lead: Some(good_lead("x")),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::PermissionDenied, "{e:?}");
    // A certificate named only by its subject's common name maps too.
    let robot = tls_channel(
        port,
        &server_ca.pem(),
        Some(&client_ca.issue_cn("crm-robot")),
    )
    .await
    .unwrap();
    let e = pb::routing_service_client::RoutingServiceClient::new(robot)
        .get_assignment(pb::GetAssignmentRequest {
            lead_id: "nope".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::NotFound, "{e:?}");
    // A certificate of the same CA with a name the keys file does not list gets no role.
    let other = tls_channel(
        port,
        &server_ca.pem(),
        Some(&client_ca.issue("other.internal")),
    )
    .await
    .unwrap();
    let e = pb::routing_service_client::RoutingServiceClient::new(other)
        .get_assignment(pb::GetAssignmentRequest {
            lead_id: "nope".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::Unauthenticated, "{e:?}");
}
